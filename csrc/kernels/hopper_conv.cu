// The Hopper forward kernel (see hopper_conv.h).
//
// Warp roles (384 threads, one CTA per SM, persistent over tiles):
//   warpgroup 0: one thread issues the TMA loads of each K-block (weights: 128 rows x 128 B,
//                activations: 256 im2col rows x 128 B) into a 4-stage ring (full/empty mbarriers);
//   warpgroups 1, 2: wgmma m64n256 over their 64 output channels, then the epilogue
//                (bias, ReLU, NCDHW stores, GroupNorm partial statistics).
// A K-block is one filter tap and 128 bytes of channels (32 fp32 / 64 half).
#include "hopper_conv.h"

#include <cudaTypedefs.h>

#include <mutex>

#include "common/hopper.cuh"
#include "group_norm.h"
#include "pack.h"

namespace convt3d {
namespace {

constexpr int kTileCo = 128;   // output channels per tile: 2 consumer warpgroups x 64
constexpr int kTilePos = 256;  // output positions per tile (one sample)
constexpr int kStages = 4;
constexpr int kThreads = 384;
constexpr int kRowBytes = 128;  // bytes of K per operand row and K-block (one 128-byte swizzle span)
constexpr int kATileBytes = kTileCo * kRowBytes;
constexpr int kBTileBytes = kTilePos * kRowBytes;
constexpr int kStageBytes = kATileBytes + kBTileBytes;
constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + slack to align the ring to 1024 bytes

struct HopperParams {
  void* out;                // contiguous (N, Cout, P)
  const void* bias;         // (Cout) or nullptr
  WelfordPartial* stats;    // [(n * G + g) * chunks + t * co_tiles + ct], or nullptr
  int N, Cout, P, Ho, Wo;
  int tiles_per_sample, co_tiles, num_tiles;
  int lower[3];             // im2col lower corner (d, h, w)
  int k[3];
  int c_blocks;             // K-blocks per tap
  int kblocks;              // taps * c_blocks
  int G, cpg;               // GroupNorm groups and channels per group (when stats != nullptr)
};

#if CONVT3D_HOPPER
template <typename T>
__device__ __forceinline__ void wgmma_k_step(float (&acc)[128], uint64_t da, uint64_t db, int scale_d) {
  if constexpr (std::is_same_v<T, float>)
    hopper::wgmma_m64n256k8_tf32(acc, da, db, scale_d);
  else if constexpr (std::is_same_v<T, __half>)
    hopper::wgmma_m64n256k16_f16(acc, da, db, scale_d);
  else
    hopper::wgmma_m64n256k16_bf16(acc, da, db, scale_d);
}

__device__ __forceinline__ void consumer_barrier() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }

struct TileCoords {
  int n, t, ct;
};
__device__ __forceinline__ TileCoords decode_tile(int tile, const HopperParams& p) {
  const int ct = tile % p.co_tiles, rest = tile / p.co_tiles;
  return {rest / p.tiles_per_sample, rest % p.tiles_per_sample, ct};
}
#endif

template <class Cfg>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_conv_kernel(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap,
                       const HopperParams p) {
#if CONVT3D_HOPPER
  using T = typename Cfg::T;
  constexpr int kCh = kRowBytes / sizeof(T);  // channels per K-block
  extern __shared__ uint8_t smem_raw[];
  uint8_t* ring = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  __shared__ __align__(8) uint64_t full_bar[kStages];
  __shared__ __align__(8) uint64_t empty_bar[kStages];
  __shared__ WelfordPartial row_stats[kTileCo];

  const int wg = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      hopper::mbar_init(&full_bar[s], 1);   // the producer's arrive (+ transaction bytes)
      hopper::mbar_init(&empty_bar[s], 2);  // one arrive per consumer warpgroup
    }
    hopper::mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    // ---------------- producer ----------------
    // Register budget: the CTA's pool is what the launch allotted, 384 threads x 168 registers.
    // 168 -> 40 here frees 128 x 128 registers, exactly what 168 -> 232 takes for the 256
    // consumer threads; asking for more than the pool holds blocks setmaxnreg.inc forever.
    hopper::setmaxnreg_dec<40>();
    if (threadIdx.x == 0) {
      hopper::tma_prefetch_map(&wmap);
      hopper::tma_prefetch_map(&xmap);
      int stage = 0;
      uint32_t phase = 0;
      const int HWo = p.Ho * p.Wo;
      for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
        const TileCoords tc = decode_tile(tile, p);
        const int m0 = tc.t * kTilePos;
        const int od = m0 / HWo, ohw = m0 - od * HWo, oh = ohw / p.Wo, ow = ohw - oh * p.Wo;
        for (int kb = 0; kb < p.kblocks; ++kb) {
          const int f = kb / p.c_blocks, cb = kb - f * p.c_blocks;
          const int fw = f % p.k[2], fdh = f / p.k[2], fh = fdh % p.k[1], fd = fdh / p.k[1];
          hopper::mbar_wait(&empty_bar[stage], phase ^ 1);
          uint8_t* a = ring + stage * kStageBytes;
          hopper::mbar_arrive_expect_tx(&full_bar[stage], kStageBytes);
          hopper::tma_load_2d(a, &wmap, &full_bar[stage], kb * kCh, tc.ct * kTileCo);
          hopper::tma_load_im2col_5d(a + kATileBytes, &xmap, &full_bar[stage], cb * kCh, ow + p.lower[2],
                                     oh + p.lower[1], od + p.lower[0], tc.n, static_cast<uint16_t>(fw),
                                     static_cast<uint16_t>(fh), static_cast<uint16_t>(fd));
          if (++stage == kStages) {
            stage = 0;
            phase ^= 1;
          }
        }
      }
    }
  } else {
    // ---------------- consumers ----------------
    hopper::setmaxnreg_inc<232>();
    const int cw = wg - 1;  // which 64 output channels of the tile
    const int warp = (threadIdx.x / 32) & 3, lane = threadIdx.x & 31;
    const bool wg_leader = (threadIdx.x & 127) == 0;
    int stage = 0;
    uint32_t phase = 0;
    float acc[128];
    for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
      const TileCoords tc = decode_tile(tile, p);
      int prev_stage = 0;
      for (int kb = 0; kb < p.kblocks; ++kb) {
        hopper::mbar_wait(&full_bar[stage], phase);
        const uint8_t* a = ring + stage * kStageBytes + cw * 64 * kRowBytes;
        const uint64_t da = hopper::smem_desc_sw128(a);
        const uint64_t db = hopper::smem_desc_sw128(ring + stage * kStageBytes + kATileBytes);
        hopper::wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)  // 32 bytes of K per step: +2 in the descriptor's address field
          wgmma_k_step<T>(acc, da + 2 * ks, db + 2 * ks, (kb > 0 || ks > 0) ? 1 : 0);
        hopper::wgmma_commit();
        hopper::wgmma_wait<1>();  // the previous K-block's MMAs are done: its stage can be refilled
        if (kb > 0 && wg_leader) hopper::mbar_arrive(&empty_bar[prev_stage]);
        prev_stage = stage;
        if (++stage == kStages) {
          stage = 0;
          phase ^= 1;
        }
      }
      hopper::wgmma_wait<0>();
      hopper::fence_registers(acc);
      if (wg_leader) hopper::mbar_arrive(&empty_bar[prev_stage]);

      // ---- epilogue: bias, ReLU, stores; accumulator row = channel, column = position ----
      const int row0 = cw * 64 + warp * 16 + (lane >> 2);  // tile row of h = 0 (h = 1: +8)
      const int pos0 = tc.t * kTilePos + 2 * (lane & 3);
      const int valid = min(kTilePos, p.P - tc.t * kTilePos);  // positions of this tile inside the sample
      if (p.stats != nullptr && valid < kTilePos) {
        // columns past the sample end (loaded from the next sample) must not enter the statistics:
        // -inf becomes 0 after the ReLU
#pragma unroll
        for (int j = 0; j < 32; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (2 * (lane & 3) + 8 * j + e >= valid) acc[4 * j + e] = acc[4 * j + 2 + e] = -INFINITY;
      }
      T* out = static_cast<T*>(p.out) + int64_t(tc.n) * p.Cout * p.P;
      const T* bias = static_cast<const T*>(p.bias);
      const bool pairs = (p.P & 1) == 0;  // two adjacent positions share an aligned 2-element store
      float sum[2] = {0.f, 0.f}, sumsq[2] = {0.f, 0.f};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int co = tc.ct * kTileCo + row0 + 8 * h;
        if (co >= p.Cout) continue;
        const float b = bias != nullptr ? to_float(bias[co]) : 0.f;
        T* row = out + int64_t(co) * p.P;
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          const int pos = pos0 + 8 * j;
          const float v0 = relu(acc[4 * j + 2 * h] + b);
          const float v1 = relu(acc[4 * j + 2 * h + 1] + b);
          if (pairs && pos + 1 < p.P) {
            if constexpr (std::is_same_v<T, float>) {
              *reinterpret_cast<float2*>(row + pos) = make_float2(v0, v1);
            } else {
              T two[2] = {from_float<T>(v0), from_float<T>(v1)};
              *reinterpret_cast<uint32_t*>(row + pos) = *reinterpret_cast<uint32_t*>(two);
            }
          } else {
            if (pos < p.P) row[pos] = from_float<T>(v0);
            if (pos + 1 < p.P) row[pos + 1] = from_float<T>(v1);
          }
          sum[h] += v0 + v1;
          sumsq[h] += v0 * v0 + v1 * v1;
        }
      }
      if (p.stats != nullptr) {
        // per row: sums over the 4 lanes that hold it (all the tile's positions), then
        // (count, mean, M2) with M2 from the sums (256 values: cancellation is negligible)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int off = 1; off <= 2; off <<= 1) {
            sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], off);
            sumsq[h] += __shfl_xor_sync(0xffffffffu, sumsq[h], off);
          }
          const bool real = tc.ct * kTileCo + row0 + 8 * h < p.Cout;
          const float mean = sum[h] / valid;
          if ((lane & 3) == 0)
            row_stats[row0 + 8 * h] = WelfordPartial{real ? float(valid) : 0.f, mean,
                                                     real ? fmaxf(sumsq[h] - sum[h] * mean, 0.f) : 0.f};
        }
        consumer_barrier();
        // per GroupNorm group: merge the tile rows it owns, in row order (deterministic)
        const int chunks = p.tiles_per_sample * p.co_tiles;
        for (int g = threadIdx.x - 128; g < p.G; g += 256) {
          const int lo = max(g * p.cpg, tc.ct * kTileCo), hi = min(min((g + 1) * p.cpg, p.Cout), (tc.ct + 1) * kTileCo);
          WelfordPartial m{0.f, 0.f, 0.f};
          for (int r = lo; r < hi; ++r) m = welford_merge(m, row_stats[r - tc.ct * kTileCo]);
          p.stats[(int64_t(tc.n) * p.G + g) * chunks + tc.t * p.co_tiles + tc.ct] = m;
        }
        consumer_barrier();  // row_stats is rewritten by the next tile
      }
    }
  }
#endif
}

// ---- host side: tensor maps -----------------------------------------------------------

struct DriverEntryPoints {
  PFN_cuTensorMapEncodeTiled_v12000 encode_tiled = nullptr;
  PFN_cuTensorMapEncodeIm2col_v12000 encode_im2col = nullptr;
};

const DriverEntryPoints& driver() {
  static DriverEntryPoints entry;
  static std::once_flag once;
  std::call_once(once, [] {
    cudaDriverEntryPointQueryResult q1, q2;
    void* f1 = nullptr;
    void* f2 = nullptr;
    CONVT3D_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f1, 12000, cudaEnableDefault, &q1));
    CONVT3D_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeIm2col", &f2, 12000, cudaEnableDefault, &q2));
    STD_TORCH_CHECK(q1 == cudaDriverEntryPointSuccess && q2 == cudaDriverEntryPointSuccess && f1 && f2,
                    "convt3d: the CUDA driver does not provide the tensor-map encoders (driver too old?)");
    entry.encode_tiled = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f1);
    entry.encode_im2col = reinterpret_cast<PFN_cuTensorMapEncodeIm2col_v12000>(f2);
  });
  return entry;
}

CUtensorMapDataType tma_dtype(MathMode mode) {
  switch (mode) {
    case MathMode::kF16: return CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    case MathMode::kBf16: return CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    default: return CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  }
}

int elem_bytes(MathMode mode) { return (mode == MathMode::kF16 || mode == MathMode::kBf16) ? 2 : 4; }

// im2col corners of a stride-1 transposed conv: the correlation window starts at pad - (k - 1).
int lower_corner(const ConvTransposeGeometry& g, int d) { return static_cast<int>(g.pad[d] - (g.k[d] - 1)); }

}  // namespace

bool hopper_supports(const ConvTransposeGeometry& g, MathMode mode, int device_index) {
  const DeviceInfo& info = device_info(device_index);
  if (info.major != 9 || mode == MathMode::kFp32) return false;  // 3xTF32 runs on the portable path
  if (g.G != 1) return false;
  for (int d = 0; d < 3; ++d) {
    if (g.stride[d] != 1 || g.dil[d] != 1 || g.out_pad[d] != 0) return false;
    // TMA im2col limits for rank 5: corners in [-16, 15], filter offsets up to 31
    if (lower_corner(g, d) < -16 || lower_corner(g, d) > 15 || g.pad[d] > 16 || g.k[d] > 32) return false;
  }
  const int64_t P = g.out_positions();
  // 32-bit tile and coordinate arithmetic, int32 tensor-map coordinates
  if (g.N * ceil_div(P, kTilePos) * ceil_div(g.Cout, kTileCo) >= (int64_t(1) << 31)) return false;
  if (P >= (int64_t(1) << 31) || g.N > 65535) return false;
  const int64_t Cp = round_up(g.Cin, kRowBytes / elem_bytes(mode));
  return g.taps() * Cp < (int64_t(1) << 31) && info.max_smem_optin >= kSmemBytes;
}

void hopper_conv_transpose_relu(const ConvTransposeGeometry& g, const Tensor& x, const Tensor& weight,
                                const std::optional<Tensor>& bias, Tensor& out, MathMode mode, cudaStream_t stream,
                                WelfordPartial* stats, int64_t num_groups) {
  const int eb = elem_bytes(mode);
  const int64_t ch = kRowBytes / eb;  // channels per K-block
  const int64_t Cp = round_up(g.Cin, ch);
  const int64_t Coutp = round_up(g.Cout, kTileCo);
  const int64_t T = g.taps();
  const bool round = mode == MathMode::kTf32;

  // channels-last activations and flipped K-major weights, zero-padded
  Tensor xp = torch::stable::new_empty(x, {g.N * g.in_positions() * Cp});
  Tensor wp = torch::stable::new_empty(x, {Coutp * T * Cp});
  pack_activation(x, xp.mutable_data_ptr(), 1, Cp, round, stream);
  pack_weight(weight, wp.mutable_data_ptr(), 1, Cp, WeightRows::kOutChannels, round, stream, Coutp,
              /*flip_taps=*/true);

  const auto& drv = driver();
  CUtensorMap wmap, xmap;
  {
    const cuuint64_t dims[2] = {static_cast<cuuint64_t>(T * Cp), static_cast<cuuint64_t>(Coutp)};
    const cuuint64_t strides[1] = {static_cast<cuuint64_t>(T * Cp * eb)};
    const cuuint32_t box[2] = {static_cast<cuuint32_t>(ch), static_cast<cuuint32_t>(kTileCo)};
    const cuuint32_t estr[2] = {1, 1};
    const CUresult r = drv.encode_tiled(&wmap, tma_dtype(mode), 2, wp.mutable_data_ptr(), dims, strides, box, estr,
                                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    STD_TORCH_CHECK(r == CUDA_SUCCESS, "convt3d: encoding the weight tensor map failed (", int(r), ")");
  }
  {
    const cuuint64_t dims[5] = {static_cast<cuuint64_t>(Cp), static_cast<cuuint64_t>(g.in[2]),
                                static_cast<cuuint64_t>(g.in[1]), static_cast<cuuint64_t>(g.in[0]),
                                static_cast<cuuint64_t>(g.N)};
    const cuuint64_t strides[4] = {static_cast<cuuint64_t>(Cp * eb), static_cast<cuuint64_t>(g.in[2] * Cp * eb),
                                   static_cast<cuuint64_t>(g.in[1] * g.in[2] * Cp * eb),
                                   static_cast<cuuint64_t>(g.in_positions() * Cp * eb)};
    const int lower[3] = {lower_corner(g, 2), lower_corner(g, 1), lower_corner(g, 0)};  // (w, h, d)
    const int upper[3] = {static_cast<int>(-g.pad[2]), static_cast<int>(-g.pad[1]), static_cast<int>(-g.pad[0])};
    const cuuint32_t estr[5] = {1, 1, 1, 1, 1};
    const CUresult r = drv.encode_im2col(&xmap, tma_dtype(mode), 5, xp.mutable_data_ptr(), dims, strides, lower,
                                         upper, static_cast<cuuint32_t>(ch), kTilePos, estr,
                                         CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                         CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    STD_TORCH_CHECK(r == CUDA_SUCCESS, "convt3d: encoding the im2col tensor map failed (", int(r), ")");
  }

  HopperParams p{};
  p.out = out.mutable_data_ptr();
  p.bias = bias.has_value() ? bias->const_data_ptr() : nullptr;
  p.stats = stats;
  p.N = static_cast<int>(g.N);
  p.Cout = static_cast<int>(g.Cout);
  p.P = static_cast<int>(g.out_positions());
  p.Ho = static_cast<int>(g.out[1]);
  p.Wo = static_cast<int>(g.out[2]);
  p.tiles_per_sample = static_cast<int>(ceil_div(p.P, kTilePos));
  p.co_tiles = static_cast<int>(Coutp / kTileCo);
  p.num_tiles = p.N * p.tiles_per_sample * p.co_tiles;
  for (int d = 0; d < 3; ++d) {
    p.lower[d] = lower_corner(g, d);
    p.k[d] = static_cast<int>(g.k[d]);
  }
  p.c_blocks = static_cast<int>(Cp / ch);
  p.kblocks = static_cast<int>(T * p.c_blocks);
  p.G = static_cast<int>(num_groups);
  p.cpg = num_groups > 0 ? static_cast<int>(g.Cout / num_groups) : 0;

  const int grid = static_cast<int>(std::min<int64_t>(p.num_tiles, device_info(x.get_device_index()).sm_count));
  dispatch_math(mode, [&](auto cfg) {
    using Cfg = decltype(cfg);
    if constexpr (!Cfg::kSplit) {
      auto kernel = hopper_conv_kernel<Cfg>;
      set_dynamic_smem(kernel, kSmemBytes);
      kernel<<<grid, kThreads, kSmemBytes, stream>>>(wmap, xmap, p);
      CONVT3D_CHECK_LAUNCH();
    }
  });
}

int64_t hopper_stats_chunks(const ConvTransposeGeometry& g) {
  return ceil_div(g.out_positions(), kTilePos) * ceil_div(g.Cout, kTileCo);
}

}  // namespace convt3d
