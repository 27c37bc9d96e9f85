// GroupNorm on a contiguous (N, C, *spatial) tensor: two-pass Welford statistics
// (per-chunk partials merged with Chan's formula in a fixed order, so results
// are deterministic), then a normalize+affine pass at memory bandwidth.
#pragma once

#include "common/host_utils.h"
#include "common/math_mode.cuh"

namespace convt3d {

// Statistics of one chunk of one (sample, group): element count, mean, sum of squared
// deviations. Chunks of a group are merged with Chan's formula in a fixed order.
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

// One warp merges the chunk partials of one (sample, group) in double (lanes strided over the
// chunks, then a fixed xor tree, lane 0's result broadcast: the order never varies) and writes the
// group's mean / rstd and its channels' scale / shift, with y = x * scale[c] + shift[c] folding the
// normalization and the affine. partial: the group's chunks; scale, shift: the sample's C rows.
// All 32 lanes call it.
template <typename T>
__device__ __forceinline__ void finalize_group_warp(const WelfordPartial* partial, int chunks, int g, int cpg,
                                                    double eps, const T* gamma, const T* beta, float* mean_out,
                                                    float* rstd_out, float* scale, float* shift, int lane) {
  double n = 0, mean = 0, m2 = 0;
  auto merge = [&](double nb, double mb, double m2b) {
    const double nn = n + nb;
    if (nn > 0) {
      const double delta = mb - mean;
      mean += delta * nb / nn;
      m2 += m2b + delta * delta * n * nb / nn;
      n = nn;
    }
  };
  for (int i = lane; i < chunks; i += 32) {
    const WelfordPartial w = partial[i];
    merge(w.count, w.mean, w.m2);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
    merge(__shfl_xor_sync(0xffffffffu, n, off), __shfl_xor_sync(0xffffffffu, mean, off),
          __shfl_xor_sync(0xffffffffu, m2, off));
  n = __shfl_sync(0xffffffffu, n, 0);
  mean = __shfl_sync(0xffffffffu, mean, 0);
  m2 = __shfl_sync(0xffffffffu, m2, 0);
  const double var = n > 0 ? m2 / n : 0.0;
  const float mean_f = static_cast<float>(mean);
  const float rstd_f = static_cast<float>(1.0 / sqrt((var > 0 ? var : 0.0) + eps));
  if (lane == 0) {
    *mean_out = mean_f;
    *rstd_out = rstd_f;
  }
  for (int c = g * cpg + lane; c < (g + 1) * cpg; c += 32) {
    const float a = rstd_f * (gamma != nullptr ? to_float(gamma[c]) : 1.f);
    scale[c] = a;
    shift[c] = (beta != nullptr ? to_float(beta[c]) : 0.f) - mean_f * a;
  }
}

// A GroupNorm of relu(conv) applied by the forward kernel itself (fused_forward on the Hopper
// path): y receives the normalized result (y may be the conv output itself: in place), mean / rstd
// (N, G) float32 the statistics, and the caller reserved two workspace slices of N * C floats for
// the per-(sample, channel) scale and shift (also what its own passes use when the kernel cannot).
struct FusedGroupNorm {
  int64_t num_groups;
  double eps;
  const std::optional<Tensor>& gamma;
  const std::optional<Tensor>& beta;
  Tensor& y;
  Tensor& mean;
  Tensor& rstd;
  int scale_slice, shift_slice;
};

// mean, rstd: (N, G) float32. scale, shift: N * C floats each (device memory) with
// y = x * scale[n, c] + shift[n, c]  (the normalization and the affine folded).
void group_norm_statistics(const Tensor& x, int64_t num_groups, double eps, const std::optional<Tensor>& weight,
                           const std::optional<Tensor>& bias, Tensor& mean, Tensor& rstd, float* scale, float* shift,
                           cudaStream_t stream);

// y = x * scale + shift per (n, c); y may be x itself (in place).
void group_norm_apply(const Tensor& x, const float* scale, const float* shift, Tensor& y, cudaStream_t stream);

// Gradients; grad_x / grad_weight / grad_bias are written when defined (non-empty).
// relu_input: also multiply grad_x by (x > 0), the gradient of the ReLU that produced x.
void group_norm_backward_impl(const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                              const std::optional<Tensor>& weight, int64_t num_groups, bool relu_input,
                              Tensor* grad_x, Tensor* grad_weight, Tensor* grad_bias, cudaStream_t stream);

}  // namespace convt3d
