// GroupNorm's finishing steps on the device, shared by the finalize / apply kernels (group_norm.cu)
// and the Hopper conv kernel that normalizes its own tiles (hopper_conv.cu): the same code in
// both, so the two paths give the same bits.
#pragma once

#include "common/ptx.cuh"
#include "common/reduce.cuh"
#include "group_norm.h"

namespace convt3d {

struct GroupMoments {
  float mean, rstd;
};

// A warp merges one (sample, group)'s chunk partials into its mean and 1 / sqrt(var + eps), the same
// in every lane. One pass in double about a shift K (the first chunk's mean): n = sum n_i,
// S1 = sum n_i (mean_i - K), S2 = sum m2_i + n_i (mean_i - K)^2, then mean = K + S1 / n and
// M2 = S2 - S1^2 / n. Sums, not Chan's chain of merges (a division each, which is latency-bound at
// hundreds of chunks: NOTES v16); lane l sums chunks l, l + 32, ... in order, then a fixed shuffle
// tree: deterministic. In pieces: the conv kernel's normalizers feed the chunks from shared memory
// in runs of a multiple of 32 (each lane's order unchanged), the finalize kernel all at once.
struct MomentSums {
  double n = 0.0, s1 = 0.0, s2 = 0.0;
};
// Chunks part[lane], part[lane + 32], ... below count.
__device__ __forceinline__ void add_moments(MomentSums& m, const WelfordPartial* part, int count, double K, int lane) {
#pragma unroll 4
  for (int i = lane; i < count; i += 32) {
    const WelfordPartial w = part[i];
    const double d = double(w.mean) - K;
    m.n += w.count;
    m.s1 += w.count * d;
    m.s2 += w.m2 + w.count * d * d;
  }
}
__device__ __forceinline__ GroupMoments finish_moments(MomentSums m, double K, double eps) {
  m.n = warp_sum(m.n);
  m.s1 = warp_sum(m.s1);
  m.s2 = warp_sum(m.s2);
  const double mean = m.n > 0.0 ? K + m.s1 / m.n : 0.0;
  const double var = m.n > 0.0 ? fmax(m.s2 - m.s1 * m.s1 / m.n, 0.0) / m.n : 0.0;
  return {static_cast<float>(mean), static_cast<float>(1.0 / sqrt(var + eps))};
}
__device__ __forceinline__ GroupMoments group_moments(const WelfordPartial* part, int chunks, double eps, int lane) {
  const double K = part[0].mean;
  MomentSums m;
  add_moments(m, part, chunks, K, lane);
  return finish_moments(m, K, eps);
}

// The normalization and the affine folded per channel: y = x * scale + shift.
struct ChannelAffine {
  float scale, shift;
};
template <typename T>
__device__ __forceinline__ ChannelAffine channel_affine(const GroupMoments& m, const T* gamma, const T* beta, int c) {
  const float a = m.rstd * (gamma ? to_float(gamma[c]) : 1.f);
  return {a, (beta ? to_float(beta[c]) : 0.f) - m.mean * a};
}

template <typename T>
__device__ __forceinline__ T normalize_value(T x, float scale, float shift) {
  return from_float<T>(fmaf(to_float(x), scale, shift));
}

}  // namespace convt3d
