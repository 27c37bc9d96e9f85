// Deterministic sums shared by the kernels: a fixed shuffle pattern, then the warps' results in
// warp order, so a result never depends on scheduling.
#pragma once

namespace convt3d {

// The warp's sum, the same in every lane (at each level a lane adds a + b, its partner b + a).
template <typename Acc>
__device__ __forceinline__ Acc warp_sum(Acc v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The sum over a block of kThreads threads, valid in thread 0: warp 0's sum + warp 1's + ...
template <int kThreads, typename Acc>
__device__ __forceinline__ Acc block_sum(Acc v) {
  __shared__ Acc warp_results[kThreads / 32];
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) warp_results[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    v = warp_results[0];
    for (int i = 1; i < kThreads / 32; ++i) v += warp_results[i];
  }
  __syncthreads();
  return v;
}

}  // namespace convt3d
