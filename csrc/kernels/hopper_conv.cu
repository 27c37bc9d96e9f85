// The Hopper forward kernel (see hopper_conv.h).
//
// Warp roles (384 threads, one CTA per SM, persistent over tiles):
//   warpgroup 0: one thread issues the TMA loads into two rings of shared-memory stages with
//                full/empty mbarriers: weights (128 rows x 128 B per K-step) and activation
//                runs (one box of channels-last pixels, 128 B each, per K-step group);
//   warpgroups 1, 2: wgmma m64n256 over their 64 output channels, then the epilogue
//                (bias, ReLU, NCDHW stores, GroupNorm partial statistics).
// A K-step is one filter tap and 128 bytes of channels (32 fp32 / 64 half).
//
// Activation runs: a tile's 256 GEMM columns are the positions of a box of whole rows,
// (planes, rows, seg + kW - 1 columns) of the position grid, the kW - 1 extra columns being
// computed and dropped. For one (d-tap, h-tap) the box's pixels are one TMA tiled load, and
// W-tap fw reads the same stage fw pixel rows (fw * 128 B) further: column j then sees pixel
// j + fw, which is its own row's pixel for every column kept. So the activations cross from
// L2 once per (d-tap, h-tap) instead of once per tap. Zero padding is the load's out-of-bounds fill.
//
// Two GEMM forms (GemmShape, common/gemm_forms.h): phases (kernel a multiple of the stride; rows =
// output channels, columns = the output positions of one phase, stride 1 being one phase) and
// sub-pixel (kernel == stride, kW == 2; rows = (channel, tap), columns = input positions, one tap).
// 3xTF32 (fp32 with TF32 off): both operands are packed as [big | small] TF32 pairs of
// K-blocks, and every real K-step becomes three passes, big x big, small x big and
// big x small, of TF32 wgmma (the small x small term is dropped); see accumulate_3xtf32.
#include "hopper_conv.h"

#include <cudaTypedefs.h>

#include <mutex>

#include "common/gemm_forms.h"
#include "common/hopper.cuh"
#include "group_norm.h"
#include "pack.h"

namespace convt3d {
namespace {

constexpr int kTileCo = 128;   // output channels per tile: 2 consumer warpgroups x 64
constexpr int kTilePos = 256;  // GEMM columns per tile (the wgmma N)
constexpr int kThreads = 384;
constexpr int kRowBytes = 128;  // bytes of K per operand row and K-step (one 128-byte swizzle span)
constexpr int kMaxShift = 8;    // W-taps - 1 a run serves: the stage holds 256 + 8 pixel rows
constexpr int kWStages = 5;
constexpr int kWStageBytes = kTileCo * kRowBytes;
constexpr int kXStages = 4;
constexpr int kXStageBytes = (kTilePos + kMaxShift) * kRowBytes;  // a multiple of 1024
constexpr int kSmemBytes = kWStages * kWStageBytes + kXStages * kXStageBytes + 1024;  // + alignment slack

struct HopperParams {
  void* out;                // contiguous (N, Cout, out_P)
  const void* bias;         // (Cout) or nullptr
  WelfordPartial* stats;    // [(n * G + g) * chunks + chunk_index(tile)], or nullptr
  int N, Cout;
  int grid[3];              // GEMM positions per (sample, phase): a (d, h, w) grid of these extents
  int box[3];               // a tile's box of positions (planes, rows, seg + k[2] - 1 columns)
  int seg;                  // columns of a box row that are kept
  int h_tiles, w_tiles;     // tiles along h and w (tile t = (d-tile * h_tiles + h-tile) * w_tiles + w-tile)
  bool pairs;               // columns 2i, 2i + 1 are adjacent outputs, kept or dropped together
  int tiles_per_sample, phases, co_tiles, num_tiles;
  int rows_per_phase;       // weight rows of one phase (co_tiles * kTileCo)
  int lower[3];             // the windows' common lower corner (d, h, w)
  int k[3];                 // filter offsets per dimension
  int conv_stride[3], conv_pad[3];  // phase form: the conv's stride and padding (1, 0 otherwise)
  int c_blocks;             // real K-blocks (of channels) per tap
  int parts;                // packed K-blocks per real one: 1, or 2 (big, small) for 3xTF32
  int x_box_bytes;          // bytes of one activation run
  int G, cpg;               // GroupNorm groups and channels per group (when stats != nullptr)
  int out_P, out_H, out_W;  // the real output's sizes
  // sub-pixel form: the GEMM runs over input positions, the rows over (channel, kernel tap)
  int sub_k[2];             // kD, kH
  int taps_dh;              // kD * kH
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

// Two / four consecutive elements in one aligned store.
template <typename T>
__device__ __forceinline__ void store2(T* dst, float v0, float v1) {
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
  } else {
    T two[2] = {from_float<T>(v0), from_float<T>(v1)};
    *reinterpret_cast<uint32_t*>(dst) = *reinterpret_cast<uint32_t*>(two);
  }
}
template <typename T>
__device__ __forceinline__ void store4(T* dst, float v0, float v1, float v2, float v3) {
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(dst) = make_float4(v0, v1, v2, v3);
  } else {
    T four[4] = {from_float<T>(v0), from_float<T>(v1), from_float<T>(v2), from_float<T>(v3)};
    *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<uint2*>(four);
  }
}

__device__ __forceinline__ void consumer_barrier() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }

// Tile order: channel tile fastest, then phase, position tile, sample; the phases of one
// output region run side by side, so their interleaved stores meet in L2.
struct TileCoords {
  int n, t, phase, ct;
};
__device__ __forceinline__ TileCoords decode_tile(int tile, const HopperParams& p) {
  const int ct = tile % p.co_tiles, rest = tile / p.co_tiles;
  const int phase = rest % p.phases, rest2 = rest / p.phases;
  return {rest2 / p.tiles_per_sample, rest2 % p.tiles_per_sample, phase, ct};
}
// The tile's chunk of its (sample, group) statistics, in a fixed order.
__device__ __forceinline__ int chunk_index(const TileCoords& tc, const HopperParams& p) {
  return (tc.t * p.phases + tc.phase) * p.co_tiles + tc.ct;
}

// Position (d, h, w) of a row-major grid of extents (., H, W), and stepping it forward.
struct GridPos {
  int d, h, w;
  __device__ __forceinline__ GridPos(int pos, int H, int W) {
    d = pos / (H * W);
    h = (pos - d * H * W) / W;
    w = pos - (d * H + h) * W;
  }
  __device__ __forceinline__ void advance(int steps, int H, int W) {
    for (w += steps; w >= W; w -= W)
      if (++h == H) h = 0, ++d;
  }
};

// The grid position of a tile's box corner.
struct TileOrigin {
  int d, h, w;
};
__device__ __forceinline__ TileOrigin tile_origin(int t, const HopperParams& p) {
  const int tw = t % p.w_tiles, rest = t / p.w_tiles;
  return {(rest / p.h_tiles) * p.box[0], (rest % p.h_tiles) * p.box[1], tw * p.seg};
}
// Column c of a tile is box position GridPos(c, box[1], box[2]); it is a real position when it
// lies in the box, in a kept column, and inside the grid.
__device__ __forceinline__ bool column_kept(const GridPos& c, const TileOrigin& o, const HopperParams& p) {
  return c.d < p.box[0] && c.w < p.seg && o.d + c.d < p.grid[0] && o.h + c.h < p.grid[1] && o.w + c.w < p.grid[2];
}
__device__ __forceinline__ int kept_columns(const TileOrigin& o, const HopperParams& p) {
  return min(p.box[0], p.grid[0] - o.d) * min(p.box[1], p.grid[1] - o.h) * min(p.seg, p.grid[2] - o.w);
}

// A ring's current stage; the mbarrier parity flips at each wrap.
template <int kStages>
struct RingPos {
  int stage = 0;
  uint32_t parity = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      parity ^= 1;
    }
  }
};

// The K-loop of a tile, in the same order for the producer and the consumers: per (d-tap,
// h-tap, channel block, activation part) one activation run (run(fd, fh, x_block)), then its
// W-taps, one K-step each (step(fw, w_block, last of the run)). 3xTF32: the big activations meet
// the big and the small weights, the small activations the big weights.
template <class Run, class Step>
__device__ __forceinline__ void for_each_k_step(const HopperParams& p, Run&& run, Step&& step) {
  for (int fd = 0; fd < p.k[0]; ++fd)
    for (int fh = 0; fh < p.k[1]; ++fh)
      for (int cb = 0; cb < p.c_blocks; ++cb)
        for (int xpart = 0; xpart < p.parts; ++xpart) {
          run(fd, fh, cb * p.parts + xpart);
          const int wparts = xpart == 0 ? p.parts : 1;
          for (int fw = 0; fw < p.k[2]; ++fw)
            for (int wpart = 0; wpart < wparts; ++wpart) {
              const int f = (fd * p.k[1] + fh) * p.k[2] + fw;
              step(fw, (f * p.c_blocks + cb) * p.parts + wpart, fw == p.k[2] - 1 && wpart == wparts - 1);
            }
        }
}

struct Rings {
  uint8_t* w;  // kWStages x kWStageBytes
  uint8_t* x;  // kXStages x kXStageBytes
  uint64_t *w_full, *w_empty, *x_full, *x_empty;
};

// One tile's mainloop of a consumer warpgroup: its 64 rows x 256 columns into acc; a stage goes
// back to the producer once the MMAs that read it have completed.
template <typename T>
__device__ __forceinline__ void accumulate(float (&acc)[128], const HopperParams& p, const Rings& r,
                                           RingPos<kWStages>& wpos, RingPos<kXStages>& xpos, int cw, bool leader) {
  int done_w = -1, done_x = -1;  // stages the previous K-step read (x: only after its run's last step)
  bool first = true;
  uint64_t db_run = 0;
  for_each_k_step(
      p,
      [&](int, int, int) {
        hopper::mbar_wait(&r.x_full[xpos.stage], xpos.parity);
        db_run = hopper::smem_desc_sw128(r.x + xpos.stage * kXStageBytes);
      },
      [&](int fw, int, bool last_of_run) {
        hopper::mbar_wait(&r.w_full[wpos.stage], wpos.parity);
        const uint64_t da = hopper::smem_desc_sw128(r.w + wpos.stage * kWStageBytes + cw * 64 * kRowBytes);
        const uint64_t db = db_run + fw * (kRowBytes >> 4);  // fw pixel rows further
        hopper::wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)  // 32 bytes of K per step: +2 in the descriptor's address field
          wgmma_k_step<T>(acc, da + 2 * ks, db + 2 * ks, (first && ks == 0) ? 0 : 1);
        hopper::wgmma_commit();
        hopper::wgmma_wait<1>();  // the previous K-step's MMAs are done: its stages can be refilled
        if (leader && done_w >= 0) hopper::mbar_arrive(&r.w_empty[done_w]);
        if (leader && done_x >= 0) hopper::mbar_arrive(&r.x_empty[done_x]);
        done_w = wpos.stage;
        done_x = last_of_run ? xpos.stage : -1;
        wpos.advance();
        if (last_of_run) xpos.advance();
        first = false;
      });
  hopper::wgmma_wait<0>();
  hopper::fence_registers(acc);
  if (leader) {
    hopper::mbar_arrive(&r.w_empty[done_w]);
    hopper::mbar_arrive(&r.x_empty[done_x]);
  }
}

// The 3xTF32 mainloop. The tensor cores truncate while they accumulate, which over a whole
// K of big + small products costs fp32 accuracy (measured on the portable path: 6e-6 rel L2
// vs PyTorch's 2e-7). So each K-step (one pass) is summed by the MMAs into a fresh
// 64-column-half partial and added to acc with IEEE fp32 adds; the halves (m64n128) keep the
// partial at 64 registers next to the 128 of acc.
__device__ __forceinline__ void accumulate_3xtf32(float (&acc)[128], const HopperParams& p, const Rings& r,
                                                  RingPos<kWStages>& wpos, RingPos<kXStages>& xpos, int cw,
                                                  bool leader) {
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
  float part[64];
  uint64_t db_run = 0;
  for_each_k_step(
      p,
      [&](int, int, int) {
        hopper::mbar_wait(&r.x_full[xpos.stage], xpos.parity);
        db_run = hopper::smem_desc_sw128(r.x + xpos.stage * kXStageBytes);
      },
      [&](int fw, int, bool last_of_run) {
        hopper::mbar_wait(&r.w_full[wpos.stage], wpos.parity);
        const uint64_t da = hopper::smem_desc_sw128(r.w + wpos.stage * kWStageBytes + cw * 64 * kRowBytes);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          // columns 128 * half ..: 128 rows of 128 bytes further, +1024 in the address field
          const uint64_t db = db_run + fw * (kRowBytes >> 4) + half * (128 * kRowBytes >> 4);
          hopper::wgmma_fence();
#pragma unroll
          for (int ks = 0; ks < 4; ++ks) hopper::wgmma_m64n128k8_tf32(part, da + 2 * ks, db + 2 * ks, ks > 0 ? 1 : 0);
          hopper::wgmma_commit();
          hopper::wgmma_wait<0>();
          hopper::fence_registers(part);
#pragma unroll
          for (int i = 0; i < 64; ++i) acc[64 * half + i] += part[i];  // columns 128 * half + .. (see wgmma layout)
        }
        if (leader) hopper::mbar_arrive(&r.w_empty[wpos.stage]);
        if (leader && last_of_run) hopper::mbar_arrive(&r.x_empty[xpos.stage]);
        wpos.advance();
        if (last_of_run) xpos.advance();
      });
}

// The output channel of tile row r, or -1 for a padding row (sub-pixel rows: gemm_forms.h).
template <bool kSubpixel>
__device__ __forceinline__ int tile_row_channel(int ct, int r, const HopperParams& p) {
  const int R = ct * kTileCo + r;
  const int co = kSubpixel ? subpixel_unit(R) / p.taps_dh : R;
  return co < p.Cout ? co : -1;
}

// Phase form: column (d, h, w) of the phase grid is output (s_d d + r_d, s_h h + r_h, s_w w + r_w)
// (stride 1: the output itself). With p.pairs a thread's two columns are adjacent outputs (one
// aligned store); otherwise each goes alone, and for a strided conv the tile's neighbours in the
// grid (the other phases) fill the gaps in L2.
template <typename T>
__device__ __forceinline__ void store_phase_tile(const float (&acc)[128], const HopperParams& p, const TileCoords& tc,
                                                 const TileOrigin& o, int row0, int col0, float (&sum)[2],
                                                 float (&sumsq)[2]) {
  int r[3];
  phase_residues(tc.phase, p.conv_stride, r);
  T* out = static_cast<T*>(p.out) + int64_t(tc.n) * p.Cout * p.out_P + (r[0] * p.out_H + r[1]) * p.out_W + r[2];
  T* row[2];
  float b[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int co = tile_row_channel<false>(tc.ct, row0 + 8 * h, p);
    row[h] = co >= 0 ? out + int64_t(co) * p.out_P : nullptr;
    b[h] = co >= 0 && p.bias != nullptr ? to_float(static_cast<const T*>(p.bias)[co]) : 0.f;
  }
  auto offset = [&](const GridPos& c) {
    return (p.conv_stride[0] * (o.d + c.d) * p.out_H + p.conv_stride[1] * (o.h + c.h)) * p.out_W +
           p.conv_stride[2] * (o.w + c.w);
  };
  GridPos c0(col0, p.box[1], p.box[2]);
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    GridPos c1 = c0;
    c1.advance(1, p.box[1], p.box[2]);
    const bool keep0 = column_kept(c0, o, p), keep1 = column_kept(c1, o, p);
    const int o0 = keep0 ? offset(c0) : 0, o1 = keep1 ? offset(c1) : 0;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float v0 = relu(acc[4 * j + 2 * h] + b[h]);
      const float v1 = relu(acc[4 * j + 2 * h + 1] + b[h]);
      if (row[h] != nullptr) {
        if (p.pairs) {
          if (keep0) store2(row[h] + o0, v0, v1);
        } else {
          if (keep0) row[h][o0] = from_float<T>(v0);
          if (keep1) row[h][o1] = from_float<T>(v1);
        }
      }
      if (keep0) sum[h] += v0, sumsq[h] += v0 * v0;
      if (keep1) sum[h] += v1, sumsq[h] += v1 * v1;
    }
    c0.advance(8, p.box[1], p.box[2]);
  }
}

// Kernel == stride (kW == 2): the column is an input position (d, h, w), the row pair
// (h = 0, 1) the two W-taps of one (channel, d-tap, h-tap), so a thread's values for input
// positions w, w+1 are the four consecutive outputs 2w .. 2w+3 of one output row.
template <typename T>
__device__ __forceinline__ void store_subpixel_tile(const float (&acc)[128], const HopperParams& p,
                                                    const TileCoords& tc, const TileOrigin& o, int row0, int col0,
                                                    float (&sum)[2], float (&sumsq)[2]) {
  const int co = tile_row_channel<true>(tc.ct, row0, p);
  if (co < 0) return;
  const int q = subpixel_unit(tc.ct * kTileCo + row0);
  const int tdh = q - co * p.taps_dh, td = tdh / p.sub_k[1], th = tdh - td * p.sub_k[1];
  const float b = p.bias != nullptr ? to_float(static_cast<const T*>(p.bias)[co]) : 0.f;
  T* out = static_cast<T*>(p.out) + (int64_t(tc.n) * p.Cout + co) * p.out_P + (td * p.out_H + th) * p.out_W;
  auto offset = [&](const GridPos& c) {
    return (p.sub_k[0] * (o.d + c.d) * p.out_H + p.sub_k[1] * (o.h + c.h)) * p.out_W + 2 * (o.w + c.w);
  };
  GridPos c0(col0, p.box[1], p.box[2]);
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    GridPos c1 = c0;
    c1.advance(1, p.box[1], p.box[2]);
    const bool keep0 = column_kept(c0, o, p), keep1 = column_kept(c1, o, p);
    const float a0 = relu(acc[4 * j] + b), a1 = relu(acc[4 * j + 1] + b);          // W-tap 0 at w, w + 1
    const float e0 = relu(acc[4 * j + 2] + b), e1 = relu(acc[4 * j + 3] + b);      // W-tap 1
    if (p.pairs) {  // w even, w + 1 in the same row: 2w is 16-byte aligned
      if (keep0) store4(out + offset(c0), a0, e0, a1, e1);
    } else {
      if (keep0) store2(out + offset(c0), a0, e0);
      if (keep1) store2(out + offset(c1), a1, e1);
    }
    if (keep0) sum[0] += a0, sumsq[0] += a0 * a0, sum[1] += e0, sumsq[1] += e0 * e0;
    if (keep1) sum[0] += a1, sumsq[0] += a1 * a1, sum[1] += e1, sumsq[1] += e1 * e1;
    c0.advance(8, p.box[1], p.box[2]);
  }
}
#endif  // CONVT3D_HOPPER

template <class Cfg, bool kSubpixel>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_conv_kernel(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap,
                       const HopperParams p) {
#if CONVT3D_HOPPER
  using T = typename Cfg::T;
  constexpr int kCh = kRowBytes / sizeof(T);  // channels per K-block
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  __shared__ __align__(8) uint64_t bars[2 * (kWStages + kXStages)];
  __shared__ WelfordPartial row_stats[kTileCo];
  const Rings rings{smem, smem + kWStages * kWStageBytes, bars, bars + kWStages, bars + 2 * kWStages,
                    bars + 2 * kWStages + kXStages};

  const int wg = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kWStages; ++s) {
      hopper::mbar_init(&rings.w_full[s], 1);   // the producer's arrive (+ transaction bytes)
      hopper::mbar_init(&rings.w_empty[s], 2);  // one arrive per consumer warpgroup
    }
    for (int s = 0; s < kXStages; ++s) {
      hopper::mbar_init(&rings.x_full[s], 1);
      hopper::mbar_init(&rings.x_empty[s], 2);
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
      RingPos<kWStages> wpos;
      RingPos<kXStages> xpos;
      for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
        const TileCoords tc = decode_tile(tile, p);
        const TileOrigin o = tile_origin(tc.t, p);
        int r[3], corner[3];  // the box's first pixel: origin + lower corner + the phase's window offset
        phase_residues(tc.phase, p.conv_stride, r);
        const int origin[3] = {o.d, o.h, o.w};
        for (int d = 0; d < 3; ++d)
          corner[d] = origin[d] + p.lower[d] + phase_window_offset(r[d], p.conv_stride[d], p.conv_pad[d]);
        const int w_row = tc.phase * p.rows_per_phase + tc.ct * kTileCo;
        for_each_k_step(
            p,
            [&](int fd, int fh, int x_block) {
              hopper::mbar_wait(&rings.x_empty[xpos.stage], xpos.parity ^ 1);
              hopper::mbar_arrive_expect_tx(&rings.x_full[xpos.stage], p.x_box_bytes);
              hopper::tma_load_5d(rings.x + xpos.stage * kXStageBytes, &xmap, &rings.x_full[xpos.stage],
                                  x_block * kCh, corner[2], corner[1] + fh, corner[0] + fd, tc.n);
              xpos.advance();
            },
            [&](int, int w_block, bool) {
              hopper::mbar_wait(&rings.w_empty[wpos.stage], wpos.parity ^ 1);
              hopper::mbar_arrive_expect_tx(&rings.w_full[wpos.stage], kWStageBytes);
              hopper::tma_load_2d(rings.w + wpos.stage * kWStageBytes, &wmap, &rings.w_full[wpos.stage],
                                  w_block * kCh, w_row);
              wpos.advance();
            });
      }
    }
  } else {
    // ---------------- consumers ----------------
    hopper::setmaxnreg_inc<232>();
    const int cw = wg - 1;  // which 64 output channels of the tile
    const int warp = (threadIdx.x / 32) & 3, lane = threadIdx.x & 31;
    const bool wg_leader = (threadIdx.x & 127) == 0;
    RingPos<kWStages> wpos;
    RingPos<kXStages> xpos;
    float acc[128];
    for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
      const TileCoords tc = decode_tile(tile, p);
      if constexpr (Cfg::kSplit)
        accumulate_3xtf32(acc, p, rings, wpos, xpos, cw, wg_leader);
      else
        accumulate<T>(acc, p, rings, wpos, xpos, cw, wg_leader);

      // ---- epilogue: bias, ReLU, stores, and per-row sums over the kept columns for the statistics ----
      const TileOrigin o = tile_origin(tc.t, p);
      const int row0 = cw * 64 + warp * 16 + (lane >> 2);  // tile row of h = 0 (h = 1: +8)
      const int col0 = 2 * (lane & 3);                     // tile column of j = 0 (j: +8j)
      float sum[2] = {0.f, 0.f}, sumsq[2] = {0.f, 0.f};
      if constexpr (kSubpixel)
        store_subpixel_tile<T>(acc, p, tc, o, row0, col0, sum, sumsq);
      else
        store_phase_tile<T>(acc, p, tc, o, row0, col0, sum, sumsq);
      if (p.stats != nullptr) {
        // per row: sums over the 4 lanes that hold it (all the tile's columns), then
        // (count, mean, M2) with M2 from the sums (<= 256 values: cancellation is negligible)
        const int kept = kept_columns(o, p);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int off = 1; off <= 2; off <<= 1) {
            sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], off);
            sumsq[h] += __shfl_xor_sync(0xffffffffu, sumsq[h], off);
          }
          const bool real = tile_row_channel<kSubpixel>(tc.ct, row0 + 8 * h, p) >= 0;
          const float mean = sum[h] / kept;
          if ((lane & 3) == 0)
            row_stats[row0 + 8 * h] = WelfordPartial{real ? float(kept) : 0.f, mean,
                                                     real ? fmaxf(sumsq[h] - sum[h] * mean, 0.f) : 0.f};
        }
        consumer_barrier();
        // per GroupNorm group, one warp: lanes merge the rows of the group's channels (strided),
        // then a fixed shuffle tree merges the lanes (deterministic: lane 0's order never varies)
        const int chunks = p.tiles_per_sample * p.phases * p.co_tiles;
        for (int g = (threadIdx.x - 128) / 32; g < p.G; g += 8) {
          WelfordPartial m{0.f, 0.f, 0.f};
          if constexpr (kSubpixel) {
            // the group's units q = (channel, d-tap, h-tap) are contiguous; this tile holds q in
            // [64 ct, 64 ct + 64), each as two rows (W-taps) 8 apart
            const int lo = max(g * p.cpg * p.taps_dh, tc.ct * 64), hi = min((g + 1) * p.cpg * p.taps_dh, tc.ct * 64 + 64);
            for (int q = lo + lane; q < hi; q += 32) {
              const int local = q - tc.ct * 64;
              m = welford_merge(welford_merge(m, row_stats[subpixel_row(local, 0)]), row_stats[subpixel_row(local, 1)]);
            }
          } else {
            const int lo = max(g * p.cpg, tc.ct * kTileCo), hi = min(min((g + 1) * p.cpg, p.Cout), (tc.ct + 1) * kTileCo);
            for (int r = lo + lane; r < hi; r += 32) m = welford_merge(m, row_stats[r - tc.ct * kTileCo]);
          }
#pragma unroll
          for (int off = 16; off > 0; off >>= 1) {
            const WelfordPartial o{__shfl_xor_sync(0xffffffffu, m.count, off), __shfl_xor_sync(0xffffffffu, m.mean, off),
                                   __shfl_xor_sync(0xffffffffu, m.m2, off)};
            m = welford_merge(m, o);
          }
          if (lane == 0) p.stats[(int64_t(tc.n) * p.G + g) * chunks + chunk_index(tc, p)] = m;
        }
        consumer_barrier();  // row_stats is rewritten by the next tile
      }
    }
  }
#endif
}


// ---- host side: tensor maps -----------------------------------------------------------

PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static PFN_cuTensorMapEncodeTiled_v12000 entry = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    cudaDriverEntryPointQueryResult q;
    void* f = nullptr;
    CONVT3D_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    STD_TORCH_CHECK(q == cudaDriverEntryPointSuccess && f,
                    "convt3d: the CUDA driver does not provide the tensor-map encoder (driver too old?)");
    entry = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  });
  return entry;
}

// A tiled, 128-byte-swizzled tensor map (dims and box innermost first, strides in bytes).
template <int kRank>
CUtensorMap tiled_map(MathMode mode, void* base, const cuuint64_t (&dims)[kRank],
                      const cuuint64_t (&strides)[kRank - 1], const cuuint32_t (&box)[kRank], const char* what) {
  CUtensorMap map;
  cuuint32_t estr[kRank];
  for (int i = 0; i < kRank; ++i) estr[i] = 1;
  const CUtensorMapDataType dtype = mode == MathMode::kF16    ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                    : mode == MathMode::kBf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                              : CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  const CUresult r = encode_tiled()(&map, dtype, kRank, base, dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                    CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);  // out of bounds: zeros
  STD_TORCH_CHECK(r == CUDA_SUCCESS, "convt3d: encoding the ", what, " tensor map failed (", int(r), ")");
  return map;
}

int elem_bytes(MathMode mode) { return (mode == MathMode::kF16 || mode == MathMode::kBf16) ? 2 : 4; }

// Kernel == stride with kW == 2 and no padding (the 3D U-Net decoder's k = s = 2): every
// output position gets exactly one tap, so the conv is one GEMM over input positions.
bool is_subpixel(const ConvTransposeGeometry& g) {
  for (int d = 0; d < 3; ++d)
    if (g.stride[d] != g.k[d] || g.pad[d] != 0 || g.out_pad[d] != 0 || g.dil[d] != 1) return false;
  return g.k[2] == 2;
}

// The GEMM the kernel runs (common/gemm_forms.h), its operand layout and its tiling.
struct GemmShape {
  bool subpixel;
  bool valid;            // the phase form needs kernel % stride == 0 and output % stride == 0
  int64_t phases;        // GEMMs of the phase form (1 for stride 1 and for sub-pixel)
  int64_t offsets[3];    // filter offsets walked per dimension
  int64_t positions[3];  // GEMM columns per (sample, phase): a grid of these extents
  int lower[3];          // the windows' common lower corner (d, h, w)
  int64_t rows;          // A rows per phase, padded to whole tiles
  int64_t ch;            // channels per K-block
  int64_t Cp;            // input channels padded to whole K-blocks
  int64_t Cs;            // packed channel slots per position and tap (3xTF32: big and small)
  int64_t seg;           // kept columns of a box row
  int64_t box[3];        // a tile's box of positions: planes, rows, seg + offsets[2] - 1 columns
  int64_t taps() const { return offsets[0] * offsets[1] * offsets[2]; }
  int64_t tiles_along(int d) const { return ceil_div(positions[d], d == 2 ? seg : box[d]); }
  int64_t tiles_per_sample() const { return tiles_along(0) * tiles_along(1) * tiles_along(2); }
};

GemmShape gemm_shape(const ConvTransposeGeometry& g, MathMode mode) {
  GemmShape s{};
  s.subpixel = is_subpixel(g);
  s.valid = true;
  s.phases = 1;
  s.ch = kRowBytes / elem_bytes(mode);
  s.Cp = round_up(g.Cin, s.ch);
  s.Cs = s.Cp * (mode == MathMode::kFp32 ? 2 : 1);
  if (s.subpixel) {  // a 1x1x1 conv over the input positions
    for (int d = 0; d < 3; ++d) {
      s.offsets[d] = 1;
      s.positions[d] = g.in[d];
    }
    s.rows = round_up(16 * ceil_div(g.Cout * g.k[0] * g.k[1], 8), kTileCo);
  } else {
    for (int d = 0; d < 3; ++d) {
      const int64_t st = g.stride[d];
      if (g.k[d] % st != 0 || g.out[d] % st != 0 || g.dil[d] != 1) s.valid = false;
      s.phases *= st;
      s.offsets[d] = g.k[d] / st;
      s.positions[d] = g.out[d] / st;
      s.lower[d] = phase_window_lower(static_cast<int>(st), static_cast<int>(g.k[d]), static_cast<int>(g.pad[d]));
    }
    s.rows = round_up(g.Cout, kTileCo);
  }
  // the box: whole rows (plus the W halo) of as many planes as 256 columns hold; rows wider
  // than that are cut into segments
  const int64_t halo = s.offsets[2] - 1;
  s.seg = std::max<int64_t>(1, std::min<int64_t>(s.positions[2], kTilePos - halo));
  s.box[2] = s.seg + halo;
  if (s.positions[1] * s.box[2] <= kTilePos) {
    s.box[1] = s.positions[1];
    s.box[0] = std::min<int64_t>(s.positions[0], kTilePos / (s.positions[1] * s.box[2]));
  } else {
    s.box[1] = std::max<int64_t>(1, kTilePos / s.box[2]);
    s.box[0] = 1;
  }
  return s;
}

}  // namespace

bool hopper_supports(const ConvTransposeGeometry& g, MathMode mode, int device_index) {
  const DeviceInfo& info = device_info(device_index);
  if (info.major != 9 || g.G != 1) return false;
  const GemmShape s = gemm_shape(g, mode);
  // a run serves at most kMaxShift + 1 W-taps, and its box fits one wgmma's 256 columns
  if (!s.valid || s.offsets[2] - 1 > kMaxShift || s.box[2] > kTilePos) return false;
  // 32-bit tile and coordinate arithmetic, int32 tensor-map coordinates
  if (g.N * s.tiles_per_sample() * s.phases * (s.rows / kTileCo) >= (int64_t(1) << 31)) return false;
  if (g.out_positions() >= (int64_t(1) << 31) || g.N > 65535) return false;
  return s.taps() * s.Cs < (int64_t(1) << 31) && s.phases * s.rows < (int64_t(1) << 31) &&
         info.max_smem_optin >= kSmemBytes;
}

void hopper_conv_transpose_relu(const ConvTransposeGeometry& g, const Tensor& x, const Tensor& weight,
                                const std::optional<Tensor>& bias, Tensor& out, MathMode mode, cudaStream_t stream,
                                WelfordPartial* stats, int64_t num_groups) {
  const GemmShape shape = gemm_shape(g, mode);
  const int eb = elem_bytes(mode);
  const int64_t ch = shape.ch, Cs = shape.Cs, T = shape.taps();
  const bool round = mode == MathMode::kTf32;
  const bool split = mode == MathMode::kFp32;
  const int64_t w_rows = shape.phases * shape.rows;

  // channels-last activations and K-major weights, zero-padded
  Tensor xp = torch::stable::new_empty(x, {g.N * g.in_positions() * Cs});
  Tensor wp = torch::stable::new_empty(x, {w_rows * T * Cs});
  const int split_block = split ? static_cast<int>(ch) : 0;
  pack_activation(x, xp.mutable_data_ptr(), 1, shape.Cp, round, stream, split_block);
  if (shape.subpixel)
    pack_weight_subpixel(weight, wp.mutable_data_ptr(), shape.Cp, shape.rows, round, stream, split_block);
  else
    pack_weight_phases(weight, wp.mutable_data_ptr(), shape.Cp, shape.rows, g.stride, g.pad, round, stream,
                       split_block);

  // weights: 128 rows x one K-block; activations: a box of pixels x one K-block
  const auto u64 = [](int64_t v) { return static_cast<cuuint64_t>(v); };
  const auto u32 = [](int64_t v) { return static_cast<cuuint32_t>(v); };
  const CUtensorMap wmap = tiled_map<2>(mode, wp.mutable_data_ptr(), {u64(T * Cs), u64(w_rows)}, {u64(T * Cs * eb)},
                                        {u32(ch), u32(kTileCo)}, "weight");
  const CUtensorMap xmap =
      tiled_map<5>(mode, xp.mutable_data_ptr(), {u64(Cs), u64(g.in[2]), u64(g.in[1]), u64(g.in[0]), u64(g.N)},
                   {u64(Cs * eb), u64(g.in[2] * Cs * eb), u64(g.in[1] * g.in[2] * Cs * eb),
                    u64(g.in_positions() * Cs * eb)},
                   {u32(ch), u32(shape.box[2]), u32(shape.box[1]), u32(shape.box[0]), 1}, "activation");

  HopperParams p{};
  p.out = out.mutable_data_ptr();
  p.bias = bias.has_value() ? bias->const_data_ptr() : nullptr;
  p.stats = stats;
  p.N = static_cast<int>(g.N);
  p.Cout = static_cast<int>(g.Cout);
  for (int d = 0; d < 3; ++d) {
    p.grid[d] = static_cast<int>(shape.positions[d]);
    p.box[d] = static_cast<int>(shape.box[d]);
    p.lower[d] = shape.lower[d];
    p.k[d] = static_cast<int>(shape.offsets[d]);
    p.conv_stride[d] = shape.subpixel ? 1 : static_cast<int>(g.stride[d]);
    p.conv_pad[d] = shape.subpixel ? 0 : static_cast<int>(g.pad[d]);
  }
  p.seg = static_cast<int>(shape.seg);
  p.h_tiles = static_cast<int>(shape.tiles_along(1));
  p.w_tiles = static_cast<int>(shape.tiles_along(2));
  // a thread's columns 2i, 2i + 1 stay in one box row and are kept together when the rows and the
  // kept part are even; they are adjacent outputs when the W stride is 1 (sub-pixel: always)
  p.pairs = shape.box[2] % 2 == 0 && shape.seg % 2 == 0 && shape.positions[2] % 2 == 0 && p.conv_stride[2] == 1;
  p.tiles_per_sample = static_cast<int>(shape.tiles_per_sample());
  p.phases = static_cast<int>(shape.phases);
  p.co_tiles = static_cast<int>(shape.rows / kTileCo);
  p.rows_per_phase = static_cast<int>(shape.rows);
  p.num_tiles = p.N * p.tiles_per_sample * p.phases * p.co_tiles;
  p.c_blocks = static_cast<int>(shape.Cp / ch);
  p.parts = split ? 2 : 1;
  p.x_box_bytes = static_cast<int>(shape.box[0] * shape.box[1] * shape.box[2] * kRowBytes);
  p.G = static_cast<int>(num_groups);
  p.cpg = num_groups > 0 ? static_cast<int>(g.Cout / num_groups) : 0;
  p.out_P = static_cast<int>(g.out_positions());
  p.out_H = static_cast<int>(g.out[1]);
  p.out_W = static_cast<int>(g.out[2]);
  p.sub_k[0] = static_cast<int>(g.k[0]);
  p.sub_k[1] = static_cast<int>(g.k[1]);
  p.taps_dh = p.sub_k[0] * p.sub_k[1];

  const int grid = static_cast<int>(std::min<int64_t>(p.num_tiles, device_info(x.get_device_index()).sm_count));
  dispatch_math(mode, [&](auto cfg) {
    using Cfg = decltype(cfg);
    auto kernel = shape.subpixel ? hopper_conv_kernel<Cfg, true> : hopper_conv_kernel<Cfg, false>;
    set_dynamic_smem(kernel, kSmemBytes);
    kernel<<<grid, kThreads, kSmemBytes, stream>>>(wmap, xmap, p);
    CONVT3D_CHECK_LAUNCH();
  });
}

int64_t hopper_stats_chunks(const ConvTransposeGeometry& g) {
  const GemmShape s = gemm_shape(g, MathMode::kTf32);  // the tiling does not depend on the math mode
  return s.tiles_per_sample() * s.phases * (s.rows / kTileCo);
}

}  // namespace convt3d
