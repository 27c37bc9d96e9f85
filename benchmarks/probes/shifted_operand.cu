// Probe for the v5 plan (benchmarks/NOTES.md): can wgmma read a 128B-swizzled K-major B operand
// whose start is shifted by s rows of 128 bytes (s not a multiple of 8, so not on the 1024-byte
// swizzle repeat), with the descriptor's base-offset field (bits 49-51)? For every shift it
// runs m64n256k8 x 4 (K = 32 fp32) with base offset 0 and with (start >> 7) & 7, and compares
// with a CPU GEMM on exactly representable values. Not project code; run once on an H100:
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a shifted_operand.cu -o probe && ./probe
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

constexpr int kM = 64, kN = 256, kK = 32, kMaxShift = 10, kBRows = kN + 16;

__device__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Byte offset of logical (row, k) in a 128B-swizzled K-major tile that starts on a 1024-byte boundary.
__host__ __device__ int swizzled(int row, int k) { return row * 128 + ((((k * 4) >> 4) ^ (row & 7)) << 4) + (k * 4) % 16; }

__device__ uint64_t desc(uint32_t addr, int base_offset) {
  uint64_t d = (addr & 0x3FFFF) >> 4;
  d |= uint64_t(1) << 16;           // LBO, unused for swizzled K-major
  d |= uint64_t(1024 >> 4) << 32;   // SBO: 8 rows of 128 bytes
  d |= uint64_t(base_offset & 7) << 49;
  d |= uint64_t(1) << 62;           // 128B swizzle
  return d;
}

#define ACC8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
                "+f"(d[i + 6]), "+f"(d[i + 7])
__device__ void wgmma_n256(float* d, uint64_t da, uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k8.f32.tf32.tf32 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,"
      "%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,"
      "%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
      "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,"
      "%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,"
      "%126,%127}, %128, %129, p, 1, 1;\n}\n"
      : ACC8(0), ACC8(8), ACC8(16), ACC8(24), ACC8(32), ACC8(40), ACC8(48), ACC8(56), ACC8(64), ACC8(72), ACC8(80),
        ACC8(88), ACC8(96), ACC8(104), ACC8(112), ACC8(120)
      : "l"(da), "l"(db), "r"(scale_d));
}

__global__ void __launch_bounds__(128) probe(const float* A, const float* B, float* D, int shift, int use_base_offset) {
  extern __shared__ uint8_t raw[];
  uint8_t* sm = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + 1023) & ~uintptr_t(1023));
  uint8_t* sa = sm;
  uint8_t* sb = sm + kM * 128;  // 8 KB: still on a 1024-byte boundary
  for (int i = threadIdx.x; i < kM * kK; i += 128)
    *reinterpret_cast<float*>(sa + swizzled(i / kK, i % kK)) = A[i];
  for (int i = threadIdx.x; i < kBRows * kK; i += 128)
    *reinterpret_cast<float*>(sb + swizzled(i / kK, i % kK)) = B[i];
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  __syncthreads();
  float d[128];
  for (int i = 0; i < 128; ++i) d[i] = 0.f;
  const uint32_t b_start = smem_addr(sb) + shift * 128;
  const int base_offset = use_base_offset ? (b_start >> 7) & 7 : 0;
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  for (int ks = 0; ks < 4; ++ks)  // 8 fp32 of K = 32 bytes per step
    wgmma_n256(d, desc(smem_addr(sa) + 32 * ks, 0), desc(b_start + 32 * ks, base_offset), ks > 0);
  asm volatile("wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  for (int j = 0; j < 32; ++j)
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 2; ++e) D[(16 * w + l / 4 + 8 * h) * kN + 8 * j + 2 * (l % 4) + e] = d[4 * j + 2 * h + e];
}

int main() {
  std::vector<float> A(kM * kK), B(kBRows * kK), D(kM * kN);
  for (int i = 0; i < kM * kK; ++i) A[i] = float((i * 37) % 17 - 8) / 8;  // exact in TF32
  for (int i = 0; i < kBRows * kK; ++i) B[i] = float((i * 53) % 13 - 6) / 8;
  float *dA, *dB, *dD;
  cudaMalloc(&dA, A.size() * 4);
  cudaMalloc(&dB, B.size() * 4);
  cudaMalloc(&dD, D.size() * 4);
  cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice);
  const int smem = 1024 + kM * 128 + kBRows * 128;
  cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  for (int shift = 0; shift < kMaxShift; ++shift) {
    for (int use = 0; use < 2; ++use) {
      cudaMemset(dD, 0xff, D.size() * 4);  // NaN poison
      probe<<<1, 128, smem>>>(dA, dB, dD, shift, use);
      cudaError_t err = cudaDeviceSynchronize();
      if (err != cudaSuccess) {
        printf("shift %d base_offset %s: CUDA error %s\n", shift, use ? "set" : "0", cudaGetErrorString(err));
        return 1;
      }
      cudaMemcpy(D.data(), dD, D.size() * 4, cudaMemcpyDeviceToHost);
      int bad = 0;
      for (int m = 0; m < kM; ++m)
        for (int n = 0; n < kN; ++n) {
          float ref = 0.f;
          for (int k = 0; k < kK; ++k) ref += A[m * kK + k] * B[(n + shift) * kK + k];
          bad += D[m * kN + n] != ref;
        }
      printf("shift %d rows, base offset %s: %d of %d wrong\n", shift, use ? "(start >> 7) & 7" : "0", bad, kM * kN);
    }
  }
  return 0;
}
