// The device primitives every kernel shares: cp.async, ldmatrix, mma.sync,
// TF32 rounding and splitting. Thin inline-PTX wrappers, nothing else.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

namespace convt3d {

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- cp.async (sm_80+) -------------------------------------------------------
// Copies 16 bytes global -> shared; when !valid the 16 bytes are zero-filled and
// the global address is not read (src-size 0).
__device__ __forceinline__ void cp_async_16(uint32_t smem_addr, const void* gmem, bool valid) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_size)
               : "memory");
}
// The same with an L2 cache policy (l2_evict_first_policy: data read once, which should not push
// data that is read again out of L2).
__device__ __forceinline__ void cp_async_16(uint32_t smem_addr, const void* gmem, bool valid, uint64_t policy) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n" ::"r"(smem_addr), "l"(gmem),
               "r"(src_size), "l"(policy)
               : "memory");
}
__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// The multistage main loop: stage kt is computed while stages kt+1 .. kt+Stages-1 load.
// load_stage(stage, kt) issues the cp.async copies of K-tile kt into ring slot `stage`;
// compute_stage(stage) consumes one. Every iteration commits a group (empty ones too) so
// that wait_group<Stages-2> always means "K-tile kt has landed".
template <int Stages, typename Load, typename Compute>
__device__ __forceinline__ void cp_async_pipeline(int KT, Load&& load_stage, Compute&& compute_stage) {
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < KT) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<Stages - 2>();
    __syncthreads();  // K-tile kt is visible to all; slot (kt-1) % Stages is free to refill
    const int next = kt + Stages - 1;
    if (next < KT) load_stage(next % Stages, next);
    cp_async_commit();
    compute_stage(kt % Stages);
  }
  cp_async_wait<0>();
}

// ---- ldmatrix ---------------------------------------------------------------
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// ---- TF32 -------------------------------------------------------------------
// Round to nearest (ties away), as PyTorch's TF32 convolutions do; the tensor
// cores themselves truncate raw fp32 operands (measured), which biases sums.
__device__ __forceinline__ uint32_t tf32_round(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
// 3xTF32 split: x ~= big + small with both parts exactly representable in TF32.
__device__ __forceinline__ void tf32_split(uint32_t x_bits, uint32_t& big, uint32_t& small) {
  const float x = __uint_as_float(x_bits);
  big = tf32_round(x);
  small = tf32_round(x - __uint_as_float(big));
}

// ---- mma.sync ---------------------------------------------------------------
// Fragments, with g = lane / 4 and t = lane % 4, counted in 32-bit words:
//   A (16 x 8 words): a0 = (g, t), a1 = (g + 8, t), a2 = (g, t + 4), a3 = (g + 8, t + 4)
//   B (8 words x 8):  b0 = (k = t, n = g), b1 = (k = t + 4, n = g)
//   C (16 x 8):       c0,c1 = (g, 2t..2t+1), c2,c3 = (g + 8, 2t..2t+1)
// A word is one tf32 element (m16n8k8) or two consecutive-k 16-bit elements
// (m16n8k16), so both instruction families read operands identically.
struct MmaTf32 {
  __device__ __forceinline__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};
struct MmaF16 {
  __device__ __forceinline__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};
struct MmaBf16 {
  __device__ __forceinline__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
};

// ---- ReLU -------------------------------------------------------------------------
// As torch.relu: NaN stays NaN (fmaxf(NaN, 0) would return 0 and hide it from GroupNorm).
__device__ __forceinline__ float relu(float v) { return v < 0.f ? 0.f : v; }

// ---- element conversions ----------------------------------------------------
template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

}  // namespace convt3d
