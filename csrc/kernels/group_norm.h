// GroupNorm on a contiguous (N, C, *spatial) tensor: per-chunk Welford partials, merged
// per group in double in a fixed order (so results are deterministic), then a
// normalize+affine pass at memory bandwidth.
#pragma once

#include "common/host_utils.h"

namespace convt3d {

// Statistics of one chunk of one (sample, group): element count, mean, sum of squared
// deviations.
struct WelfordPartial {
  float count, mean, m2;
};

// Chan's merge of two partials (a first: the order is part of the result).
__host__ __device__ inline WelfordPartial welford_merge(const WelfordPartial& a, const WelfordPartial& b) {
  const float n = a.count + b.count;
  if (n == 0.f) return a;
  const float delta = b.mean - a.mean;
  const float wb = b.count / n;
  return {n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

// GroupNorm partial statistics that a forward kernel produced on the side (the Hopper conv
// epilogue), for group_norm_finalize.
struct ForwardStats {
  const WelfordPartial* partial;  // [(n * G + g) * chunks + i], a slice of the call's workspace
  int64_t chunks;
  bool normalized;  // the kernel also applied the GroupNorm of a GroupNormRequest: nothing is left to do
};

// Asks the forward kernel to apply the GroupNorm too where it does so (the Hopper kernel, fp32 at
// stride 1: hopper_conv.h): y receives the normalized output (the conv's output itself, in place,
// or another contiguous tensor of its shape), mean and rstd (N, G) float32 the statistics.
struct GroupNormRequest {
  Tensor* y;
  const std::optional<Tensor>* weight;
  const std::optional<Tensor>* bias;
  double eps;
  Tensor* mean;
  Tensor* rstd;
};

// mean, rstd: (N, G) float32. scale, shift: N * C floats each (device memory) with
// y = x * scale[n, c] + shift[n, c]  (the normalization and the affine folded).
void group_norm_statistics(const Tensor& x, int64_t num_groups, double eps, const std::optional<Tensor>& weight,
                           const std::optional<Tensor>& bias, Tensor& mean, Tensor& rstd, float* scale, float* shift,
                           cudaStream_t stream);

// The second half of group_norm_statistics, for statistics produced elsewhere (the
// Hopper conv epilogue): partial[(n * G + g) * chunks + i], merged in order i = 0, 1, ...
void group_norm_finalize(const WelfordPartial* partial, int64_t chunks, int64_t N, int64_t C, int64_t num_groups,
                         double eps, const std::optional<Tensor>& weight, const std::optional<Tensor>& bias,
                         ScalarType dtype, Tensor& mean, Tensor& rstd, float* scale, float* shift,
                         cudaStream_t stream);

// y = x * scale + shift per (n, c); y may be x itself (in place).
void group_norm_apply(const Tensor& x, const float* scale, const float* shift, Tensor& y, cudaStream_t stream);

// Gradients; grad_x / grad_weight / grad_bias are written when defined (non-empty).
// relu_input: also multiply grad_x by (x > 0), the gradient of the ReLU that produced x.
void group_norm_backward_impl(const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                              const std::optional<Tensor>& weight, int64_t num_groups, bool relu_input,
                              Tensor* grad_x, Tensor* grad_weight, Tensor* grad_bias, cudaStream_t stream);

}  // namespace convt3d
