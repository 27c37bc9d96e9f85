// Weight gradient of a transposed conv as a split-K tensor-core GEMM:
//   grad_w[g*Cin_g + ci, co, t] = sum_{n, i} x[n, ci, i] * grad_out[n, co, i*stride - pad + t*dil]
// M = input channels, N = (tap, output channel), K = batch x input positions.
// Each split writes its partial tile to a float32 workspace; a second kernel
// sums the splits in a fixed order (deterministic, no atomics).
#pragma once

#include "common/conv_args.h"
#include "common/math_mode.cuh"

namespace convt3d {

// x_packed: [N][S_in][G][Cpx], gout_packed: [N][S_out][G][Cpo] (pack.h);
// grad_w: (Cin, Cout_g, kD, kH, kW) written through its strides.
void launch_weight_grad(const ConvTransposeGeometry& geo, const void* x_packed, int64_t Cpx, const void* gout_packed,
                        int64_t Cpo, Tensor& grad_w, MathMode mode, cudaStream_t stream);

}  // namespace convt3d
