// The Hopper (sm_90a) forward path of the transposed conv + ReLU: TMA im2col loads
// of channels-last activations, TMA tiled loads of prepacked weights, an mbarrier ring
// feeding two wgmma consumer warpgroups, persistent grid.
//
// A transposed conv whose kernel is a multiple of its stride becomes GEMMs in one of three forms
// (common/gemm_forms.h): one stride-1 correlation per output phase (stride 1 is one phase: the
// flipped kernel); the W sub-pixel form for stride 2 along W (the two W-phases as row pairs); or,
// for stride 1 with few output channels, the W-rows form (the W taps as rows, summed in the
// epilogue). Tile: 128 rows x 256 positions of one (sample, phase), or 240 / 192 / 128 positions
// where the grid's rounds make that cheaper (choose_tile_width); the epilogue stores NCDHW
// directly (bias, ReLU, and optional GroupNorm partial statistics).
// fp32 with TF32 off runs 3xTF32: big/small operand pairs, three TF32 passes over each K-block.
#pragma once

#include <functional>

#include "common/conv_args.h"
#include "common/math_mode.cuh"
#include "group_norm.h"

namespace convt3d {

// Whether the Hopper kernel handles this problem on this device (else: portable path).
bool hopper_supports(const ConvTransposeGeometry& geo, MathMode mode, int device_index);

// out: contiguous (N, Cout, Do, Ho, Wo), created by allocate_outputs() (with norm's tensors) once
// the pack kernel is launched (conv_transpose.h: ForwardOutputs). The packed operands become slices
// of ws, which is allocated here together with the slices the caller reserved. With num_groups > 0 the epilogue
// also writes GroupNorm partial statistics of relu(out) for num_groups groups into a slice of ws,
// returned with their chunk count per (sample, group) for group_norm_finalize; nothing otherwise.
// With norm too, the kernel applies the GroupNorm itself where that measured faster (fp32 at stride 1
// with 8 samples or more and 4 tiles per CTA or more: ForwardStats::normalized).
std::optional<ForwardStats> hopper_conv_transpose_relu(const ConvTransposeGeometry& geo, const Tensor& x,
                                                       const Tensor& weight, const std::optional<Tensor>& bias,
                                                       Tensor& out, const std::function<void()>& allocate_outputs,
                                                       MathMode mode, cudaStream_t stream, Workspace& ws,
                                                       int64_t num_groups = 0, const GroupNormRequest* norm = nullptr);

}  // namespace convt3d
