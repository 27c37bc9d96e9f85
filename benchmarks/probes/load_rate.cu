// Probe for the next Hopper kernel step (benchmarks/NOTES.md, "Where v4's time goes"): is the v4
// mainloop starved by load latency or by a load throughput limit? It runs v4's mainloop alone on the
// headline TF32 problem (16 x 64 -> 128 channels, 32^3, k3: 2464 tiles x 54 K-blocks of 16 KB weights
// + 32 KB im2col activations) in three modes, with 1 (loads), 2 (both) or 4 (mma) up to 4 ring stages of 48 KB:
//   loads  the producer as in v4; the consumers release each stage as soon as it lands (no MMAs)
//   mma    no loads; the consumers run v4's wgmma sequence on a resident stage (the tensor rate)
//   both   v4's mainloop without the epilogue
// Reading: if the loads-only rate grows with the stages in flight, the loads are latency-bound
// (more bytes in flight per SM helps: smaller stages, earlier release); if it is flat, a throughput
// limit (TMA im2col issue or the SM's L2 port) caps it and fewer bytes per K-block is the lever.
// Not project code; the device primitives are the package's (common/hopper.cuh). On an H100/H200:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -I../../csrc/kernels load_rate.cu \
//        -o load_rate && ./load_rate
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/hopper.cuh"

namespace hp = convt3d::hopper;

#define CHECK(x)                                                                                  \
  do {                                                                                            \
    cudaError_t e_ = (x);                                                                         \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

// The headline problem as v4 runs it in TF32: stride 1 (one phase), output 34^3, im2col corners -2 / 0.
constexpr int kN = 16, kC = 64, kIn = 32, kOut = 34, kK = 3, kTaps = kK * kK * kK;
constexpr int kCh = 32;                              // fp32 channels per 128-byte K-block
constexpr int kCBlocks = kC / kCh;                   // 2
constexpr int kKBlocks = kTaps * kCBlocks;           // 54
constexpr int kRows = 128, kPos = 256, kRowBytes = 128;
constexpr int kWBytes = kRows * kRowBytes, kXBytes = kPos * kRowBytes, kStageBytes = kWBytes + kXBytes;
constexpr int kP = kOut * kOut * kOut, kTilesPerSample = (kP + kPos - 1) / kPos, kTiles = kN * kTilesPerSample;
constexpr int kMaxStages = 4;

enum Mode { kLoads = 0, kMma = 1, kBoth = 2, kLoadsTiled = 3, kBothTiled = 4 };
// The *Tiled modes load the same 256 x 128 B of activations per K-block with a plain 2-D tiled map over
// the flat (positions, channels) view instead of the im2col map: same bytes, contiguous rows, so a
// difference between the two is the cost of the im2col mode itself.

__global__ void __launch_bounds__(384, 1)
    mainloop(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap,
             const __grid_constant__ CUtensorMap flatmap, int mode, float fill_scale,
             int stages, float* sink, long long* cycles) {
#if CONVT3D_HOPPER  // the primitives exist in the sm_90a device pass only
  extern __shared__ uint8_t smem_raw[];
  uint8_t* ring = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  __shared__ __align__(8) uint64_t full_bar[kMaxStages], empty_bar[kMaxStages];
  const int wg = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      hp::mbar_init(&full_bar[s], 1);
      hp::mbar_init(&empty_bar[s], 2);
    }
    hp::mbar_fence_init();
  }
  if (mode == kMma)  // the resident stage holds values like the random operands (any finite values for zeros)
    for (int i = threadIdx.x; i < kStageBytes / 4; i += blockDim.x) {
      uint32_t h = uint32_t(i) * 2654435761u;
      h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
      reinterpret_cast<float*>(ring)[i] = fill_scale * (float(h) * (2.0f / 4294967296.0f) - 1.0f);
    }
  __syncthreads();
  const bool tiled = mode == kLoadsTiled || mode == kBothTiled;
  if (mode == kLoadsTiled) mode = kLoads;
  if (mode == kBothTiled) mode = kBoth;
  const long long t0 = clock64();
  if (wg == 0) {
    if (threadIdx.x == 0 && mode != kMma) {
      int stage = 0;
      uint32_t parity = 0;
      for (int tile = blockIdx.x; tile < kTiles; tile += gridDim.x) {
        const int n = tile / kTilesPerSample, pos = (tile % kTilesPerSample) * kPos;
        const int d = pos / (kOut * kOut), h = pos / kOut % kOut, w = pos % kOut;
        for (int kb = 0; kb < kKBlocks; ++kb) {
          const int f = kb / kCBlocks, cb = kb % kCBlocks;
          hp::mbar_wait(&empty_bar[stage], parity ^ 1);
          uint8_t* a = ring + stage * kStageBytes;
          hp::mbar_arrive_expect_tx(&full_bar[stage], kStageBytes);
          hp::tma_load_2d(a, &wmap, &full_bar[stage], (f * kCBlocks + cb) * kCh, 0);
          if (tiled)  // the tap moves the window by whole input rows, as im2col's offsets roughly do
            hp::tma_load_2d(a + kWBytes, &flatmap, &full_bar[stage], cb * kCh,
                            n * kIn * kIn * kIn + (pos + f * kIn) % (kIn * kIn * kIn - kPos));
          else
            hp::tma_load_im2col_5d(a + kWBytes, &xmap, &full_bar[stage], cb * kCh, w - 2, h - 2, d - 2, n,
                                   uint16_t(f % kK), uint16_t(f / kK % kK), uint16_t(f / (kK * kK)));
          if (++stage == stages) stage = 0, parity ^= 1;
        }
      }
    }
  } else {
    const int cw = wg - 1;
    const bool leader = (threadIdx.x & 127) == 0;
    float acc[128];
    for (int i = 0; i < 128; ++i) acc[i] = 0.f;
    int stage = 0, prev = 0;
    uint32_t parity = 0;
    for (int tile = blockIdx.x; tile < kTiles; tile += gridDim.x) {
      for (int kb = 0; kb < kKBlocks; ++kb) {
        if (mode != kMma) hp::mbar_wait(&full_bar[stage], parity);
        if (mode == kLoads) {
          if (leader) hp::mbar_arrive(&empty_bar[stage]);
        } else {
          const int s = mode == kMma ? 0 : stage;  // mma only: the (uninitialised) first stage, every time
          const uint64_t da = hp::smem_desc_sw128(ring + s * kStageBytes + cw * 64 * kRowBytes);
          const uint64_t db = hp::smem_desc_sw128(ring + s * kStageBytes + kWBytes);
          hp::wgmma_fence();
          for (int ks = 0; ks < 4; ++ks) hp::wgmma_m64n256k8_tf32(acc, da + 2 * ks, db + 2 * ks, 1);
          hp::wgmma_commit();
          hp::wgmma_wait<1>();
          if (mode == kBoth && kb + tile > blockIdx.x && leader) hp::mbar_arrive(&empty_bar[prev]);
        }
        prev = stage;
        if (++stage == stages) stage = 0, parity ^= 1;
      }
    }
    hp::wgmma_wait<0>();
    hp::fence_registers(acc);
    if (mode == kBoth && leader) hp::mbar_arrive(&empty_bar[prev]);
    float s = 0.f;
    for (int i = 0; i < 128; ++i) s += acc[i];
    if (s == 1.2345f) sink[threadIdx.x] = s;  // keeps the accumulators live
  }
  __syncthreads();
  if (threadIdx.x == 0) cycles[blockIdx.x] = clock64() - t0;
#endif
}

// Uniform values in [-1, 1) from a hash of the index (the "random" run: real operands draw more power
// than zeros, which can lower the clock the tensor cores run at).
__global__ void fill_random(float* v, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    v[i] = float(h) * (2.0f / 4294967296.0f) - 1.0f;
  }
}

int main(int argc, char** argv) {
  const bool random = argc > 1 && std::string(argv[1]) == "random";
  int sms = 0, clock_khz = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  float *x, *w, *sink;
  long long* cycles;
  const size_t x_elems = size_t(kN) * kIn * kIn * kIn * kC, w_elems = size_t(kRows) * kTaps * kC;
  CHECK(cudaMalloc(&x, x_elems * 4));
  CHECK(cudaMalloc(&w, w_elems * 4));
  CHECK(cudaMalloc(&sink, 384 * 4));
  CHECK(cudaMalloc(&cycles, sms * sizeof(long long)));
  CHECK(cudaMemset(x, 0, x_elems * 4));
  CHECK(cudaMemset(w, 0, w_elems * 4));
  if (random) {
    fill_random<<<1024, 256>>>(x, x_elems, 1u);
    fill_random<<<1024, 256>>>(w, w_elems, 2u);
    CHECK(cudaDeviceSynchronize());
  }

  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q;
  CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
  auto encode_tiled = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeIm2col", &fn, 12000, cudaEnableDefault, &q));
  auto encode_im2col = reinterpret_cast<PFN_cuTensorMapEncodeIm2col_v12000>(fn);
  CUtensorMap wmap, xmap, flatmap;
  {
    const cuuint64_t dims[2] = {cuuint64_t(kTaps * kC), cuuint64_t(kRows)};
    const cuuint64_t strides[1] = {cuuint64_t(kTaps * kC * 4)};
    const cuuint32_t box[2] = {kCh, kRows}, estr[2] = {1, 1};
    if (encode_tiled(&wmap, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, w, dims, strides, box, estr,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return std::fprintf(stderr, "weight map\n"), 1;
  }
  {
    const cuuint64_t dims[2] = {cuuint64_t(kC), cuuint64_t(kN) * kIn * kIn * kIn};
    const cuuint64_t strides[1] = {cuuint64_t(kC) * 4};
    const cuuint32_t box[2] = {kCh, kPos}, estr[2] = {1, 1};
    if (encode_tiled(&flatmap, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, x, dims, strides, box, estr,
                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return std::fprintf(stderr, "flat map\n"), 1;
  }
  {
    const cuuint64_t dims[5] = {kC, kIn, kIn, kIn, kN};
    const cuuint64_t strides[4] = {cuuint64_t(kC) * 4, cuuint64_t(kIn) * kC * 4, cuuint64_t(kIn) * kIn * kC * 4,
                                   cuuint64_t(kIn) * kIn * kIn * kC * 4};
    const int lower[3] = {-2, -2, -2}, upper[3] = {0, 0, 0};
    const cuuint32_t estr[5] = {1, 1, 1, 1, 1};
    if (encode_im2col(&xmap, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 5, x, dims, strides, lower, upper, kCh, kPos, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return std::fprintf(stderr, "im2col map\n"), 1;
  }

  const int smem = kMaxStages * kStageBytes + 1024;
  CHECK(cudaFuncSetAttribute(mainloop, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  const double bytes = double(kTiles) * kKBlocks * kStageBytes;
  const double flops = 2.0 * kTiles * kKBlocks * kRows * kPos * kCh;
  const char* names[5] = {"loads", "mma", "both", "loadsT", "bothT"};
  std::printf("%d SMs, %d MHz nominal; %d tiles x %d K-blocks of %d KB; loads %.2f GB, MMA %.0f GFLOP\n", sms,
              clock_khz / 1000, kTiles, kKBlocks, kStageBytes / 1024, bytes / 1e9, flops / 1e9);
  std::printf("operands: %s\n", random ? "random in [-1, 1)" : "zeros");
  std::printf("mode   stages   ms      TB/s   B/clk/SM  TFLOP/s  (cycles: mean over CTAs)  GHz\n");
  for (int mode = 0; mode < 5; ++mode) {
    // both: a stage is released one K-block late (as in v4), so one stage would deadlock
    const bool both = mode == kBoth || mode == kBothTiled;
    for (int stages = mode == kMma ? 4 : both ? 2 : 1; stages <= kMaxStages; ++stages) {
      for (int rep = 0; rep < 2; ++rep)  // the first launch warms up
        mainloop<<<sms, 384, smem>>>(wmap, xmap, flatmap, mode, random ? 1.f : 0.f, stages, sink, cycles);
      CHECK(cudaEventRecord(e0));
      const int reps = argc > 2 ? std::atoi(argv[2]) : 5;  // many: the clock settles under sustained load
      for (int rep = 0; rep < reps; ++rep) mainloop<<<sms, 384, smem>>>(wmap, xmap, flatmap, mode, random ? 1.f : 0.f, stages, sink, cycles);
      CHECK(cudaEventRecord(e1));
      CHECK(cudaEventSynchronize(e1));
      CHECK(cudaGetLastError());
      float ms = 0.f;
      CHECK(cudaEventElapsedTime(&ms, e0, e1));
      ms /= reps;
      long long host_cycles[1024];
      CHECK(cudaMemcpy(host_cycles, cycles, sms * sizeof(long long), cudaMemcpyDeviceToHost));
      double mean_cycles = 0;
      for (int i = 0; i < sms; ++i) mean_cycles += double(host_cycles[i]) / sms;
      const double moved = mode == kMma ? 0.0 : bytes;
      const bool loads_only = mode == kLoads || mode == kLoadsTiled;
      std::printf("%-6s %d      %7.3f  %5.2f  %7.1f   %6.0f   (%.0f)  %.2f\n", names[mode], stages, ms,
                  moved / ms / 1e9, moved / sms / mean_cycles, loads_only ? 0.0 : flops / ms / 1e9, mean_cycles,
                  mean_cycles / ms / 1e6);
    }
  }
  return 0;
}
