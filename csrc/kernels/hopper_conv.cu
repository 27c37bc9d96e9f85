// The Hopper forward kernel (see hopper_conv.h).
//
// Warp roles (384 threads, one CTA per SM, persistent over tiles):
//   warpgroup 0: one thread issues the TMA loads of each K-block (weights: 128 rows x 128 B, or
//                only the real rows of a single channel tile of fewer; activations: 256 im2col
//                rows x 128 B, or 240 / 192 / 128 rows in a narrower tile) into a ring of stages
//                (full/empty mbarriers; Ring); its warps 1-3 normalize the CTA's finished tiles
//                where the kernel applies the GroupNorm itself (fp32 at stride 1: normalize_own_tiles),
//                and pack the activations of samples 1 .. N - 1 in the phase form, where they do not
//                normalize or do it in 3xTF32 (pack_samples_tile);
//   warpgroups 1, 2: wgmma m64n256 (narrower tiles: m64n240, m64n192, m64n128) over their 64 tile
//                rows, then the epilogue (bias, ReLU, NCDHW stores, GroupNorm partial statistics;
//                16-bit outputs of stride 1 through a staging buffer and TMA stores); warpgroup 2
//                has no MMAs where all its rows are padding (64 or fewer real rows).
// A K-block is one filter tap and 128 bytes of channels (32 fp32 / 64 half), or 64 bytes (32
// half, the 64-byte swizzle, twice the stages: Ring) for 16-bit operands with at most 32 input channels.
// Three GEMM forms (GemmShape, common/gemm_forms.h): phases (kernel a multiple of the stride; rows =
// output channels, columns = the output positions of one phase, stride 1 being one phase),
// W sub-pixel (stride 2 along W: phases over (d, h); rows = (channel, W-phase), columns = the
// phase's positions with W counted in input steps) and W rows (stride 1, few channels: rows =
// (W tap, channel), K over the (d, h) taps; the epilogue stages the tile in shared memory and
// sums each output's kW shifted rows).
// 3xTF32 (fp32 with TF32 off): both operands are packed as [big | small] TF32 pairs of
// K-blocks; a stage holds a real K-block's four tiles (the W-rows form: one pass's two), and
// the consumers run three passes of TF32 wgmma over it, big x small, small x big and big x big
// (the small x small term is dropped); see accumulate_3xtf32.
#include "hopper_conv.h"

#include <cudaTypedefs.h>

#include <mutex>

#include "common/gemm_forms.h"
#include "common/group_norm_moments.cuh"
#include "common/hopper.cuh"
#include "common/pack_tile.cuh"
#include "group_norm.h"
#include "pack.h"

namespace convt3d {
namespace {

constexpr int kTileCo = 128;          // output channels per tile: 2 consumer warpgroups x 64
constexpr int kTilePos = 256;         // output positions (GEMM columns) per tile, unless fewer (below)
constexpr int kFitTilePos = 240;      // the same rounds as 256 columns where that fits, each cheaper
constexpr int kMidTilePos = 192;      // 192 and 128 columns: where the last round of 256-column tiles
constexpr int kNarrowTilePos = 128;   // would leave SMs idle (choose_tile_width)
constexpr int kThreads = 384;

// The shared-memory ring of K-blocks whose operand rows hold kRow bytes of K: 128 (one 128-byte
// swizzle span: 32 fp32 or 64 16-bit channels), or 64 (the 64-byte swizzle: 32 16-bit channels,
// for 16-bit operands with at most 32 input channels, which a 128-byte K-block half fills with
// zeros). Either row width fills the same kRingBytes: the 64-byte ring has twice the stages.
// The W-rows form takes half of it (two 128-byte stages) and stages its tile in the rest.
// A stage holds kParts (weight, activation) tile pairs: 1, or 2 for 3xTF32's big and small
// parts of one K-block, laid out [A big | A small | B big | B small] (accumulate_3xtf32).
constexpr int kRingBytes = 4 * (kTileCo + kTilePos) * 128;
template <int kRow, int kCols = kTilePos, int kBytes = kRingBytes, int kParts_ = 1>
struct Ring {
  static_assert(kRow == 128 || kRow == 64, "rows of 128 or 64 bytes");
  static_assert(kCols == kTilePos || kCols == kFitTilePos || kCols == kMidTilePos || kCols == kNarrowTilePos,
                "256, 240, 192 or 128 columns");
  static constexpr int kRowBytes = kRow;
  static constexpr int kParts = kParts_;
  static constexpr int kAcc = kCols / 2;  // accumulators per consumer thread (64 rows x kCols / 128 threads)
  static constexpr int kATileBytes = kTileCo * kRow;
  static constexpr int kBTileBytes = kCols * kRow;
  static constexpr int kStageBytes = kParts * (kATileBytes + kBTileBytes);
  static constexpr int kStages = kBytes / kStageBytes;
  static_assert(kStages >= 2, "a stage loads while another is consumed");
  static constexpr int kKSteps = kRow / 32;  // wgmma k-steps (32 bytes of K each) per K-block
  // byte offsets of part q's weight (A) and activation (B) tiles inside a stage
  static constexpr int a_tile(int q) { return q * kATileBytes; }
  static constexpr int b_tile(int q) { return kParts * kATileBytes + q * kBTileBytes; }
};
// Phase form with 16-bit outputs: the stride-1 tile (at most 64 KB) goes out through TMA stores
// from a staging buffer after a ring of three quarters (store_tile_through_staging).
constexpr int kStoreStagingBytes = 64 * 1024;
// The TMA-store boxes of a kCols-column tile: 128-byte rows of positions in the 128-byte swizzle, or,
// where that row does not divide the tile (240 columns: 64 16-bit positions do not), 96-byte rows
// without swizzle (48 positions, 5 boxes). The output map is encoded with the same box (host).
constexpr int store_box_cols(int cols, int elem) { return cols % (128 / elem) == 0 ? 128 / elem : 48; }
constexpr bool store_box_swizzled(int cols, int elem) { return store_box_cols(cols, elem) * elem == 128; }
constexpr bool staged_stores(GemmForm form, int elem) { return form == GemmForm::kPhases && elem == 2; }
constexpr int ring_bytes(GemmForm form, int elem) {
  return form == GemmForm::kWRows ? kRingBytes / 2 : staged_stores(form, elem) ? kRingBytes * 3 / 4 : kRingBytes;
}
// 3xTF32 loads both parts of a K-block into one stage (96 KB for 256 columns: two stages), except in
// the W-rows form, whose half ring would then hold a single stage: there each pass is a stage.
constexpr int parts_per_stage(GemmForm form, bool split) { return split && form != GemmForm::kWRows ? 2 : 1; }
template <int kRow, GemmForm kForm, int kCols, int kElem, bool kSplit>
using RingOf = Ring<kRow, kCols, ring_bytes(kForm, kElem), parts_per_stage(kForm, kSplit)>;

// W-rows form: the tile's accumulators staged as fp32 rows of kStagePitch floats (+8: a warp's
// float2 stores of 8 rows take two shared-memory wavefronts instead of eight).
constexpr int kStagePitch = kTilePos + 8;
constexpr int kStagingBytes = kWRowsMaxRows * kStagePitch * 4;
// The kernels that can apply the GroupNorm themselves (normalize_own_tiles; the host decides where).
constexpr bool applies_group_norm(GemmForm form, int elem) { return form == GemmForm::kPhases && elem == 4; }
// There: the slots of the GroupNorm normalizers' copies, 16-byte pieces.
constexpr int kNormPieces = 8;  // per normalizer thread at once
constexpr int kNormSlotBytes = 96 * kNormPieces * 16;
constexpr int kMomentRun = 320;  // chunk partials per copy into a warp's third of the slots (a multiple of 32)
static_assert(kMomentRun * 12 + 16 <= kNormSlotBytes / 3, "a run (and its alignment) fits a warp's third");
// The kernels whose helper warps can pack the activations of later samples (pack_samples_tile).
constexpr bool packs_later_samples(GemmForm form) { return form == GemmForm::kPhases; }
// ... where a pack tile's share of the MMAs is at least this many K-blocks (a K-block of one tile is
// 128 x 256 x 128 bytes, ~0.55 us of an H200 SM's tensor pipe in any element type): the helpers then
// keep ahead of the consumers. (A stride-1 kernel of 3^3 taps has ~16, of 2^3 taps ~5.)
constexpr int kMinKBlocksPerPackTile = 12;
// The helper warps' shared memory: the normalizers' slots, or (in turn) a tile of the activation pack
// of later samples (one size for every element type).
static_assert(PackTile<float>::kBytes == PackTile<__nv_bfloat16>::kBytes, "pack tiles of 16 KB");
constexpr int kHelperBytes = kNormSlotBytes > PackTile<float>::kBytes ? kNormSlotBytes : PackTile<float>::kBytes;
// dynamic shared memory: the ring (+ the staging) (+ the helpers'), + slack to align it to 1024 bytes
// (16-bit phase form: 144 + 64 + 16 + 1 KB, with the static arrays just under the 227 KB an SM offers)
constexpr int staging_size(GemmForm form, int elem) {
  return form == GemmForm::kWRows ? kStagingBytes : staged_stores(form, elem) ? kStoreStagingBytes : 0;
}
constexpr int smem_bytes(GemmForm form, int elem) {
  return ring_bytes(form, elem) + staging_size(form, elem) + (packs_later_samples(form) ? kHelperBytes : 0) + 1024;
}

struct HopperParams {
  void* out;                // contiguous (N, Cout, out_P)
  const void* bias;         // (Cout) or nullptr
  WelfordPartial* stats;    // [(n * G + g) * chunks + chunk_index(tile)], or nullptr
  int N, Cout;
  int P, Ho, Wo;            // GEMM columns per (sample, phase): positions, and their H, W extents
  int tiles_per_sample, phases, co_tiles, num_tiles;
  int tile_step;            // columns between consecutive tiles: 256, or 256 - (kW - 1) in the W-rows form
  int w_taps, w_row_block;  // W-rows form: kW, and rows per W tap (Cr)
  int rows_per_phase;       // weight rows of one phase (co_tiles * kTileCo)
  int w_box_rows;           // weight rows one load brings (fewer than kTileCo: the rest stay zero in smem)
  int lower[3];             // im2col lower corner (d, h, w)
  int k[3];                 // filter offsets per dimension
  int conv_stride[3], conv_pad[3];  // the phases' strides and paddings (W sub-pixel form: W gets 1, 0)
  int c_blocks;             // real K-blocks (of channels) per tap
  int parts;                // packed K-blocks per real one: 1, or 2 (big, small) for 3xTF32
  int passes;               // stages per real K-block: 1, or 3 for 3xTF32 in the W-rows form (one pass each)
  int kblocks;              // stages per tile: taps * c_blocks * passes
  int G, cpg;               // GroupNorm groups and channels per group (when stats != nullptr)
  int out_P, out_H, out_W;  // the real output's sizes
  int tma_store;            // staged_stores and stride 1: the epilogue stores through the staging (omap)
  // GroupNorm inside the kernel (host: `apply`): warps 1-3 normalize each of this CTA's tiles once
  // its sample's statistics are complete (normalize_own_tiles)
  int apply;
  void* norm_out;              // the normalized output: out itself (in place) or another (N, Cout, P) tensor
  const void* gamma;           // (Cout) of the output's dtype, or nullptr
  const void* beta;
  float* mean_out;             // (N, G)
  float* rstd_out;
  uint32_t* sample_done;       // (N): tiles whose statistics are published, per sample; zero at launch
  uint32_t* affine_ready;      // (N, co_tiles): the affine of a channel tile is in `affine`; zero at launch
  ChannelAffine* affine;       // (N, Cout): per channel, y = h * scale + shift
  double eps;
  // Phase form, where x's rows are aligned (host: `pack_inside`): warps 1-3 pack the activations of
  // samples 1 .. N - 1 (the pack kernel packs sample 0 only), and the producer waits for a sample's
  // pack tiles before its loads (pack_samples_tile)
  int pack_inside;
  const void* x;                  // (N, Cin, S): rows of positions, 16-byte aligned
  int64_t x_stride_n, x_stride_c;
  int Cin, S, Cs;                 // input channels, positions per sample, packed slots per position
  int pack_position_blocks;       // pack tiles (PackTile<T>::kPositions each) along a sample's positions
  int pack_tiles_per_sample;      // channel blocks (32 channels) x position blocks
  uint32_t* packed;               // (N): pack tiles written, per sample; zero at launch
  void* xp;                       // the packed activations (the im2col map's tensor)
};

#if CONVT3D_HOPPER
template <typename T, int kAcc>
__device__ __forceinline__ void wgmma_k_step(float (&acc)[kAcc], uint64_t da, uint64_t db, int scale_d) {
  if constexpr (kAcc == 128) {
    if constexpr (std::is_same_v<T, float>)
      hopper::wgmma_m64n256k8_tf32(acc, da, db, scale_d);
    else if constexpr (std::is_same_v<T, __half>)
      hopper::wgmma_m64n256k16_f16(acc, da, db, scale_d);
    else
      hopper::wgmma_m64n256k16_bf16(acc, da, db, scale_d);
  } else if constexpr (kAcc == 120) {
    if constexpr (std::is_same_v<T, float>)
      hopper::wgmma_m64n240k8_tf32(acc, da, db, scale_d);
    else if constexpr (std::is_same_v<T, __half>)
      hopper::wgmma_m64n240k16_f16(acc, da, db, scale_d);
    else
      hopper::wgmma_m64n240k16_bf16(acc, da, db, scale_d);
  } else if constexpr (kAcc == 96) {
    if constexpr (std::is_same_v<T, float>)
      hopper::wgmma_m64n192k8_tf32(acc, da, db, scale_d);
    else if constexpr (std::is_same_v<T, __half>)
      hopper::wgmma_m64n192k16_f16(acc, da, db, scale_d);
    else
      hopper::wgmma_m64n192k16_bf16(acc, da, db, scale_d);
  } else {
    if constexpr (std::is_same_v<T, float>)
      hopper::wgmma_m64n128k8_tf32(acc, da, db, scale_d);
    else if constexpr (std::is_same_v<T, __half>)
      hopper::wgmma_m64n128k16_f16(acc, da, db, scale_d);
    else
      hopper::wgmma_m64n128k16_bf16(acc, da, db, scale_d);
  }
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

// The two consumer warpgroups. Not .aligned (which bar.sync is): an idle warpgroup reaches it from
// another instruction than the working one (its own loop; see the consumers' branch).
__device__ __forceinline__ void consumer_barrier() { asm volatile("barrier.sync 1, 256;\n" ::: "memory"); }

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

// A K-major operand tile's wgmma descriptor in the ring's swizzle.
template <int kRow>
__device__ __forceinline__ uint64_t smem_desc(const void* tile) {
  if constexpr (kRow == 128)
    return hopper::smem_desc_sw128(tile);
  else
    return hopper::smem_desc_sw64(tile);
}

// The ring's next stage; the mbarrier parity flips at each wrap.
template <class R>
__device__ __forceinline__ void next_stage(int& stage, uint32_t& parity) {
  if (++stage == R::kStages) {
    stage = 0;
    parity ^= 1;
  }
}

// The mainloop of a warpgroup whose 64 tile rows are all padding (zero weights): no MMAs (and no
// epilogue after it), but every stage is handed back as it arrives, since the producer
// refills a stage only when both warpgroups released it. (Zeroing acc here instead would make
// ptxas serialize the other path's wgmma: it then sees non-wgmma writes of the accumulators.)
template <class R>
__device__ __forceinline__ void skip_tile(int kblocks, uint64_t* full_bar, uint64_t* empty_bar, int& stage,
                                          uint32_t& parity, bool leader) {
  for (int kb = 0; kb < kblocks; ++kb) {
    hopper::mbar_wait(&full_bar[stage], parity);
    if (leader) hopper::mbar_arrive(&empty_bar[stage]);
    next_stage<R>(stage, parity);
  }
}

// One tile's mainloop of a consumer warpgroup: its 64 rows x 2 * R::kAcc positions into acc, stage by
// stage; a stage goes back to the producer once the MMAs that read it have completed.
template <typename T, class R>
__device__ __forceinline__ void accumulate(float (&acc)[R::kAcc], int kblocks, uint8_t* ring, uint64_t* full_bar,
                                           uint64_t* empty_bar, int& stage, uint32_t& parity, int cw, bool leader) {
  int prev_stage = 0;
  for (int kb = 0; kb < kblocks; ++kb) {
    hopper::mbar_wait(&full_bar[stage], parity);
    const uint64_t da = smem_desc<R::kRowBytes>(ring + stage * R::kStageBytes + cw * 64 * R::kRowBytes);
    const uint64_t db = smem_desc<R::kRowBytes>(ring + stage * R::kStageBytes + R::b_tile(0));
    hopper::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < R::kKSteps; ++ks)  // 32 bytes of K per step: +2 in the descriptor's address field
      wgmma_k_step<T>(acc, da + 2 * ks, db + 2 * ks, (kb > 0 || ks > 0) ? 1 : 0);
    hopper::wgmma_commit();
    hopper::wgmma_wait<1>();  // the previous K-block's MMAs are done: its stage can be refilled
    if (kb > 0 && leader) hopper::mbar_arrive(&empty_bar[prev_stage]);
    prev_stage = stage;
    next_stage<R>(stage, parity);
  }
  hopper::wgmma_wait<0>();
  hopper::fence_registers(acc);
  if (leader) hopper::mbar_arrive(&empty_bar[prev_stage]);
}

// The 3xTF32 mainloop. The tensor cores truncate while they accumulate, which over a whole
// K of big + small products costs fp32 accuracy (measured on the portable path: 6e-6 rel L2
// vs PyTorch's 2e-7). So the products of one K-block are summed by the MMAs into a fresh partial
// of 128 columns (m64n128) and added to acc with IEEE fp32 adds; two such halves per 256-column
// tile keep the partial at 64 registers next to the 128 of acc (one: narrow tile).
// A stage holds the K-block's four tiles (R::kParts == 2): one partial takes all three passes,
// the small terms (big x small, small x big) first and big x big last, so the truncations at
// full magnitude are only those of the big x big steps, as in a partial of its own; one wait and
// one add into acc per K-block and half instead of three (NOTES v22: -9% on the headline kernel,
// and closer to float64). The W-rows form has one pass per stage and a partial per pass.
template <class R>
__device__ __forceinline__ void accumulate_3xtf32(float (&acc)[R::kAcc], int kblocks, uint8_t* ring, uint64_t* full_bar,
                                                  uint64_t* empty_bar, int& stage, uint32_t& parity, int cw,
                                                  bool leader) {
  static_assert(R::kRowBytes == 128, "fp32 operands");
  static_assert(R::kAcc % 64 == 0, "tiles of 128-column halves");
  constexpr int kPasses = R::kParts == 2 ? 3 : 1;  // passes served by one stage
#pragma unroll
  for (int i = 0; i < R::kAcc; ++i) acc[i] = 0.f;
  float part[64];
  for (int kb = 0; kb < kblocks; ++kb) {
    hopper::mbar_wait(&full_bar[stage], parity);
    uint8_t* tiles = ring + stage * R::kStageBytes;
#pragma unroll
    for (int half = 0; half < R::kAcc / 64; ++half) {  // 128-column halves
      hopper::wgmma_fence();
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        // pass 1: big weights x small activations, 2: small weights x big activations, 0: big x big
        const int pass = (i + 1) % kPasses;
        const uint64_t da = hopper::smem_desc_sw128(tiles + R::a_tile(pass == 2) + cw * 64 * R::kRowBytes);
        // positions 128 * half ..: 128 rows of 128 bytes further, +1024 in the address field
        const uint64_t db = hopper::smem_desc_sw128(tiles + R::b_tile(pass == 1)) + half * (128 * R::kRowBytes >> 4);
#pragma unroll
        for (int ks = 0; ks < R::kKSteps; ++ks)
          hopper::wgmma_m64n128k8_tf32(part, da + 2 * ks, db + 2 * ks, (i > 0 || ks > 0) ? 1 : 0);
      }
      hopper::wgmma_commit();
      hopper::wgmma_wait<0>();
      hopper::fence_registers(part);
#pragma unroll
      for (int i = 0; i < 64; ++i) acc[64 * half + i] += part[i];  // columns 128 * half + .. (see wgmma layout)
    }
    if (leader) hopper::mbar_arrive(&empty_bar[stage]);
    next_stage<R>(stage, parity);
  }
}

// The output channel of tile row r, or -1 for a padding row (sub-pixel rows: gemm_forms.h).
template <bool kSubpixel>
__device__ __forceinline__ int tile_row_channel(int ct, int r, const HopperParams& p) {
  const int R = ct * kTileCo + r;
  const int co = kSubpixel ? subpixel_unit(R) : R;
  return co < p.Cout ? co : -1;
}

// Position pos of a row-major (d, h, w) grid of extents (., H, W), and stepping it forward.
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

// One phase (stride 1): row = output channel, column = output position; two adjacent positions per store.
template <typename T, int kAcc>
__device__ __forceinline__ void store_direct_tile(const float (&acc)[kAcc], const HopperParams& p, const TileCoords& tc,
                                                  int row0, int pos0, float (&sum)[2], float (&sumsq)[2]) {
  T* out = static_cast<T*>(p.out) + int64_t(tc.n) * p.Cout * p.P;
  const T* bias = static_cast<const T*>(p.bias);
  const bool pairs = (p.P & 1) == 0;  // two adjacent positions share an aligned 2-element store
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int co = tile_row_channel<false>(tc.ct, row0 + 8 * h, p);
    if (co < 0) continue;
    const float b = bias != nullptr ? to_float(bias[co]) : 0.f;
    T* row = out + int64_t(co) * p.P;
#pragma unroll
    for (int j = 0; j < kAcc / 4; ++j) {
      const int pos = pos0 + 8 * j;
      const float v0 = relu(acc[4 * j + 2 * h] + b);
      const float v1 = relu(acc[4 * j + 2 * h + 1] + b);
      if (pairs && pos + 1 < p.P) {
        store2(row + pos, v0, v1);
      } else {
        if (pos < p.P) row[pos] = from_float<T>(v0);
        if (pos + 1 < p.P) row[pos + 1] = from_float<T>(v1);
      }
      sum[h] += v0 + v1;
      sumsq[h] += v0 * v0 + v1 * v1;
    }
  }
}

// A phase of a strided conv: column (d, h, w) of the phase grid is output
// (s_d d + r_d, s_h h + r_h, s_w w + r_w); positions of a thread are not adjacent in the output,
// but the tile's neighbours in the grid (the other phases) fill the gaps in L2.
template <typename T, int kAcc>
__device__ __forceinline__ void store_phase_tile(const float (&acc)[kAcc], const HopperParams& p, const TileCoords& tc,
                                                 int row0, int pos0, float (&sum)[2], float (&sumsq)[2]) {
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
  auto offset = [&](const GridPos& g) {
    return (p.conv_stride[0] * g.d * p.out_H + p.conv_stride[1] * g.h) * p.out_W + p.conv_stride[2] * g.w;
  };
  GridPos at(pos0, p.Ho, p.Wo);
#pragma unroll
  for (int j = 0; j < kAcc / 4; ++j) {
    const int pos = pos0 + 8 * j;
    GridPos next = at;
    next.advance(1, p.Ho, p.Wo);
    const int o0 = offset(at), o1 = offset(next);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float v0 = relu(acc[4 * j + 2 * h] + b[h]);
      const float v1 = relu(acc[4 * j + 2 * h + 1] + b[h]);
      if (row[h] != nullptr) {
        if (pos < p.P) row[h][o0] = from_float<T>(v0);
        if (pos + 1 < p.P) row[h][o1] = from_float<T>(v1);
      }
      sum[h] += v0 + v1;
      sumsq[h] += v0 * v0 + v1 * v1;
    }
    at.advance(8, p.Ho, p.Wo);
  }
}

// W sub-pixel form: column (d, h, m) of the (d, h) phase grid is input-aligned along W, the
// row pair (h = 0, 1) the two W-phases of one channel, so a thread's values for columns m, m + 1
// are the four consecutive outputs 2m .. 2m + 3 of one output row.
template <typename T, int kAcc>
__device__ __forceinline__ void store_subpixel_tile(const float (&acc)[kAcc], const HopperParams& p,
                                                    const TileCoords& tc, int row0, int pos0, float (&sum)[2],
                                                    float (&sumsq)[2]) {
  const int co = tile_row_channel<true>(tc.ct, row0, p);
  if (co < 0) return;
  int r[3];
  phase_residues(tc.phase, p.conv_stride, r);
  const float b = p.bias != nullptr ? to_float(static_cast<const T*>(p.bias)[co]) : 0.f;
  T* out = static_cast<T*>(p.out) + (int64_t(tc.n) * p.Cout + co) * p.out_P + (r[0] * p.out_H + r[1]) * p.out_W;
  auto offset = [&](const GridPos& g) {
    return (p.conv_stride[0] * g.d * p.out_H + p.conv_stride[1] * g.h) * p.out_W + 2 * g.w;
  };
  GridPos at(pos0, p.Ho, p.Wo);
  const bool quads = (p.Wo & 1) == 0;  // then m is even, m + 1 in the same row, and 2m 16-byte aligned
#pragma unroll
  for (int j = 0; j < kAcc / 4; ++j) {
    const int pos = pos0 + 8 * j;
    const float a0 = relu(acc[4 * j] + b), a1 = relu(acc[4 * j + 1] + b);          // W-phase 0 at m, m + 1
    const float c0 = relu(acc[4 * j + 2] + b), c1 = relu(acc[4 * j + 3] + b);      // W-phase 1
    if (quads) {
      if (pos < p.P) store4(out + offset(at), a0, c0, a1, c1);
    } else {
      if (pos < p.P) store2(out + offset(at), a0, c0);
      if (pos + 1 < p.P) {
        GridPos next = at;
        next.advance(1, p.Ho, p.Wo);
        store2(out + offset(next), a1, c1);
      }
    }
    sum[0] += a0 + a1;
    sumsq[0] += a0 * a0 + a1 * a1;
    sum[1] += c0 + c1;
    sumsq[1] += c0 * c0 + c1 * c1;
    at.advance(8, p.Ho, p.Wo);
  }
}
// One phase of 16-bit outputs through TMA stores (p.tma_store): the tile's values go into the
// staging buffer as boxes of 128 rows x 128 bytes of positions in the 128-byte swizzle (the TMA's
// layout; a warp's writes then take the fewest shared-memory wavefronts; 240-column tiles: 96-byte
// rows, unswizzled, store_box_cols), and consumer thread 128 stores the boxes with the TMA (the
// output map clips positions past the sample and rows past Cout) while the consumers go on to the
// next tile. Before the next tile rewrites the staging, the stores must have read it. kActive is
// false for an idle warpgroup (Cout <= 64), which writes nothing (acc: nullptr) but takes part in
// the barriers. (Not for fp32: its 128 KB tile needs two passes through the staging, and measured
// 1.5-2% slower than the register stores, v20 in NOTES.)
template <typename T, int kAcc, bool kActive>
__device__ __forceinline__ void store_tile_through_staging(const float* acc, const HopperParams& p,
                                                           const CUtensorMap* omap, const TileCoords& tc,
                                                           uint8_t* staging, int row0, int lane, float (&sum)[2],
                                                           float (&sumsq)[2]) {
  constexpr int kCols = 2 * kAcc;
  constexpr int kBoxCols = store_box_cols(kCols, sizeof(T));  // positions per box row
  constexpr int kRowBytes = kBoxCols * int(sizeof(T));
  constexpr bool kSwizzled = store_box_swizzled(kCols, sizeof(T));
  constexpr int kBoxBytes = kTileCo * kRowBytes;
  static_assert(kCols % kBoxCols == 0 && kCols / kBoxCols * kBoxBytes <= kStoreStagingBytes, "whole boxes that fit");
  const bool issuer = threadIdx.x == 128;
  if (issuer) hopper::bulk_wait_read_all();
  consumer_barrier();  // the staging is free
  if constexpr (kActive) {
    float b[2] = {0.f, 0.f};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int co = tile_row_channel<false>(tc.ct, row0 + 8 * h, p);
      if (co >= 0 && p.bias != nullptr) b[h] = to_float(static_cast<const T*>(p.bias)[co]);
    }
#pragma unroll
    for (int j = 0; j < kAcc / 4; ++j) {
      const int col = 8 * j + 2 * (lane & 3);
      const int byte = (col % kBoxCols) * int(sizeof(T));
      uint8_t* box = staging + (col / kBoxCols) * kBoxBytes;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = row0 + 8 * h;
        const float v0 = relu(acc[4 * j + 2 * h] + b[h]);
        const float v1 = relu(acc[4 * j + 2 * h + 1] + b[h]);
        const int at = kSwizzled ? row * 128 + (((byte >> 4) ^ (row & 7)) << 4) + (byte & 15) : row * kRowBytes + byte;
        store2(reinterpret_cast<T*>(box + at), v0, v1);
        sum[h] += v0 + v1;
        sumsq[h] += v0 * v0 + v1 * v1;
      }
    }
    hopper::fence_proxy_async_shared();  // the writes are for the TMA (async proxy)
  }
  consumer_barrier();  // the tile is staged
  if (issuer) {
#pragma unroll
    for (int box = 0; box < kCols / kBoxCols; ++box)
      hopper::tma_store_3d(omap, staging + box * kBoxBytes, tc.t * kCols + box * kBoxCols, tc.ct * kTileCo, tc.n);
    hopper::bulk_commit_group();
  }
}

// After both consumer warpgroups wrote their rows' (count, mean, M2) into row_stats: one warp per
// GroupNorm group merges the rows of the group's channels in this tile (lanes strided, then a
// fixed shuffle tree, so the order never varies: deterministic) into the tile's chunk of p.stats.
// Reads only rows that hold a channel. Both warpgroups take part (groups spread over 8 warps).
template <bool kSubpixel>
__device__ __forceinline__ void merge_tile_statistics(const HopperParams& p, const TileCoords& tc,
                                                      const WelfordPartial* row_stats, int lane) {
  consumer_barrier();
  const int chunks = p.tiles_per_sample * p.phases * p.co_tiles;
  for (int g = (threadIdx.x - 128) / 32; g < p.G; g += 8) {
    WelfordPartial m{0.f, 0.f, 0.f};
    if constexpr (kSubpixel) {
      // this tile holds the channels q in [64 ct, 64 ct + 64), each as two rows (W-phases) 8 apart
      const int lo = max(g * p.cpg, tc.ct * 64), hi = min((g + 1) * p.cpg, tc.ct * 64 + 64);
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

// ---- W-rows form: the epilogue through shared memory ----

// A consumer warpgroup's real rows of the tile into the staging buffer (rows fw * Cr + co).
__device__ __forceinline__ void stage_accumulators(const float (&acc)[128], float* staging, int row0, int lane,
                                                   int real_rows) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + 8 * h;
    if (row >= real_rows) continue;
    float* dst = staging + row * kStagePitch + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < 32; ++j)
      *reinterpret_cast<float2*>(dst + 8 * j) = make_float2(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
  }
}

// After both warpgroups staged their rows: consumer thread c takes column c of the tile and, per
// output channel, sums the kW shifted rows (gemm_forms.h), adds the bias, applies the ReLU and
// stores. With statistics it writes the output (0 where none) over its own column of the
// channel's fw = 0 row, which no other thread reads (they read rows fw >= 1), and then 8 threads
// per channel sum that row's 256 columns into the channel's (count, mean, M2), merged per group as
// in the other forms. (No shuffles in the per-channel loop: a warp reduction per channel and tile
// made this epilogue latency-bound, at twice the kernel's instructions: v14 in NOTES.)
template <typename T>
__device__ __forceinline__ void finish_wrows_tile(const HopperParams& p, const TileCoords& tc, float* staging,
                                                  const float* bias, int* warp_valid, WelfordPartial* row_stats) {
  const int c = threadIdx.x - 128, lane = c & 31;
  consumer_barrier();  // every staged row is written
  const int col = tc.t * p.tile_step + c;  // on the (d, h, We) grid of this sample
  const GridPos at(col, p.Ho, p.Wo);
  const bool inside = c < p.tile_step && col < p.P;
  const bool valid = inside && at.w < p.out_W;
  const int taps = inside ? min(p.w_taps, p.Wo - at.w) : 0;  // shifted columns still in this row
  const bool stats = p.stats != nullptr;
  const int valid_in_warp = __popc(__ballot_sync(0xffffffffu, valid));
  if (lane == 0) warp_valid[c / 32] = valid_in_warp;
  T* out = static_cast<T*>(p.out) + int64_t(tc.n) * p.Cout * p.out_P + (at.d * p.out_H + at.h) * p.out_W + at.w;
  // eight channels at a time (Cr is a multiple of 8, and the rows of channels past Cout hold zeros)
  const int tap_stride = p.w_row_block * kStagePitch + 1;  // row fw * Cr + co, column c + fw
  for (int co0 = 0; co0 < p.Cout; co0 += 8, out += 8 * int64_t(p.out_P)) {
    float* own = staging + co0 * kStagePitch + c;
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = bias[co0 + k];
#pragma unroll 1  // eight independent loads per tap already; unrolling only added a remainder ladder
    for (int f = 0; f < taps; ++f) {
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] += own[f * tap_stride + k * kStagePitch];
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float r = relu(v[k]);
      if (co0 + k < p.Cout) {
        if (valid) out[k * int64_t(p.out_P)] = from_float<T>(r);
        if (stats) own[k * kStagePitch] = valid ? r : 0.f;
      }
    }
  }
  consumer_barrier();  // the outputs are in the fw = 0 rows, the staging is free after the reads below
  if (!stats) return;
  float count = 0.f;
#pragma unroll
  for (int w = 0; w < 8; ++w) count += static_cast<float>(warp_valid[w]);
  for (int co0 = 0; co0 < p.Cout; co0 += 32) {  // uniform over the warp: the shuffles below
    const int co = co0 + c / 8;
    float sum = 0.f, sumsq = 0.f;
    if (co < p.Cout) {
      const float* row = staging + co * kStagePitch + (c & 7);
#pragma unroll 8
      for (int i = 0; i < kTilePos / 8; ++i) {
        const float v = row[8 * i];
        sum += v;
        sumsq += v * v;
      }
    }
#pragma unroll
    for (int off = 1; off < 8; off <<= 1) {
      sum += __shfl_xor_sync(0xffffffffu, sum, off);
      sumsq += __shfl_xor_sync(0xffffffffu, sumsq, off);
    }
    if ((c & 7) == 0 && co < p.Cout) {
      const float mean = count > 0.f ? sum / count : 0.f;
      row_stats[co] = WelfordPartial{count, mean, fmaxf(sumsq - sum * mean, 0.f)};
    }
  }
  merge_tile_statistics<false>(p, tc, row_stats, lane);  // rows = channels here (one channel tile)
}

// ---- GroupNorm inside the kernel, a sample behind ----

// Warps 1-3 of the producer warpgroup (idle otherwise).
__device__ __forceinline__ void normalizer_barrier() { asm volatile("barrier.sync 2, 96;\n" ::: "memory"); }

constexpr int kPackBatch = 4;  // pack tiles per decision of the helper warps (normalize_own_tiles)

// p.pack_inside: pack tile j of samples 1 .. N - 1, the pack kernel's work for them done by warps 1-3
// (nt: their thread 0 .. 95) while the consumers compute earlier samples: 32 channels x
// PackTile<T>::kPositions positions of one sample copied from x's rows into the tile (cp.async; zeros
// past Cin and S), then per position the 32 channels in 16-byte pieces, converted as Cfg's operands
// are (TF32 rounding, 3xTF32's big and small parts, or as they are), into xp (x is read once:
// evict-first in L2; xp is read next, by the TMA). 96 threads over 32 chunks of a row and the pieces
// of a position: each thread keeps its chunk and its piece through the tile, so the loops step
// pointers instead of decoding every 16 bytes (a tile decoded per piece took ~4x the instructions:
// NOTES v28). Returns the tile's sample. (Tiles go sample by sample: j = (sample - 1, channel block,
// position block).)
template <class Cfg>
__device__ __forceinline__ int pack_samples_tile(const HopperParams& p, int j, typename Cfg::T* tile, int nt) {
  using T = typename Cfg::T;
  using Tile = PackTile<T>;
  constexpr int kVec = Tile::kVec, kP = Tile::kPositions, kPieces = kPackSlots / kVec;
  constexpr int kParts = Cfg::kSplit ? 2 : 1;  // 3xTF32: a block's big slots, then its small ones
  constexpr Operand kOp = std::is_same_v<T, float> ? Operand::kRound : Operand::kCopy;  // (without kSplit)
  static_assert(96 % Tile::kChunks == 0 && 96 % kPieces == 0, "a thread's chunk and piece stay fixed");
  const int n = 1 + j / p.pack_tiles_per_sample, rest = j - (n - 1) * p.pack_tiles_per_sample;
  const int cb = rest / p.pack_position_blocks, s0 = (rest - cb * p.pack_position_blocks) * kP;
  // loads: rows q = nt / 32, + 3, ..., chunk nt % 32 of each
  constexpr int kRowStep = 96 / Tile::kChunks;
  const int chunk = nt % Tile::kChunks, pos = chunk * kVec;
  const bool pos_real = s0 + pos < p.S;
  const uint64_t read_once = l2_evict_first_policy();
  const T* x = static_cast<const T*>(p.x);
  const T* src = x + n * p.x_stride_n + (int64_t(cb) * kPackSlots + nt / Tile::kChunks) * p.x_stride_c + s0 + pos;
  for (int q = nt / Tile::kChunks; q < kPackSlots; q += kRowStep, src += kRowStep * p.x_stride_c) {
    const bool real = pos_real && cb * kPackSlots + q < p.Cin;
    cp_async_16(smem_u32(tile + Tile::index(q, pos)), real ? src : x, real, read_once);
  }
  cp_async_commit();
  cp_async_wait<0>();
  normalizer_barrier();
  // stores: piece nt % kPieces (channels q0 .. q0 + kVec - 1) of positions nt / kPieces, + 96 / kPieces, ...
  const int q0 = nt % kPieces * kVec;
  const T* column = tile + q0 * kP;  // + k * kP: channel q0 + k
  constexpr int kStep = 96 / kPieces;
  const int last = min(kP, p.S - s0);
  T* dst = static_cast<T*>(p.xp) + (int64_t(n) * p.S + s0 + nt / kPieces) * p.Cs + cb * kParts * kPackSlots + q0;
  for (int at = nt / kPieces; at < last; at += kStep, dst += kStep * int64_t(p.Cs)) {
    const int col = Tile::column(q0, at);
    if constexpr (Cfg::kSplit) {
      uint32_t big[kVec], small[kVec];
#pragma unroll
      for (int k = 0; k < kVec; ++k) tf32_split(__float_as_uint(column[k * kP + col]), big[k], small[k]);
      *reinterpret_cast<uint4*>(dst) = make_uint4(big[0], big[1], big[2], big[3]);
      *reinterpret_cast<uint4*>(dst + kPackSlots) = make_uint4(small[0], small[1], small[2], small[3]);
    } else {
      uint4 piece;
      T* e = reinterpret_cast<T*>(&piece);
#pragma unroll
      for (int k = 0; k < kVec; ++k) e[k] = operand<kOp>(column[k * kP + col]);
      *reinterpret_cast<uint4*>(dst) = piece;
    }
  }
  hopper::fence_proxy_async_global();  // other CTAs' TMA loads read these writes
  normalizer_barrier();                // (the tile is rewritten next; the writes precede thread 32's release)
  return n;
}

// p.pack_inside without p.apply (the helpers have nothing else to do): warps 1-3 pack their CTA's pack
// tiles j = blockIdx.x, + gridDim.x, ... in sample order, each counted in its sample's p.packed once
// written. Paced: a sample's tiles once this CTA's consumers, counted in tiles_finished, are at most a
// sample and two rounds before the sample's first tile, so the packed sample is still in L2 when the
// loads read it. (v28's two rounds alone left the helpers too little time where a sample spans many
// rounds: spatial64's conv kernel 0.74 -> 0.83 ms; none at all measured the same as this: NOTES v31.)
// The CTA furthest behind may always pack its own next sample, so no CTA waits on one that cannot go on.
template <class Cfg>
__device__ __forceinline__ void pack_later_samples(const HopperParams& p, uint32_t* tiles_finished, uint8_t* slots) {
  const int nt = threadIdx.x - 32;
  const int tiles = (p.N - 1) * p.pack_tiles_per_sample;
  const int64_t sample_tiles = int64_t(p.tiles_per_sample) * p.phases * p.co_tiles;
  for (int j = blockIdx.x; j < tiles; j += gridDim.x) {
    const int64_t first = (1 + j / p.pack_tiles_per_sample) * sample_tiles;  // the sample's first tile
    for (uint32_t polls = 0;
         first > blockIdx.x + (int64_t(hopper::atom_acquire_cta_load(tiles_finished)) + 2) * gridDim.x + sample_tiles;) {
      if (++polls == (1u << 26)) __trap();  // seconds: a broken handshake becomes an error, not a hang
      __nanosleep(500);
    }
    const int n = pack_samples_tile<Cfg>(p, j, reinterpret_cast<typename Cfg::T*>(slots), nt);
    if (nt == 0) hopper::red_release_gpu_add(&p.packed[n], 1);  // (after the barrier: every thread's writes)
  }
}

// Stride 1, phase form (p.apply): warps 1-3 normalize this CTA's own tiles, each once its sample's
// statistics are complete, while the consumers compute later tiles, so the normalize pass's memory
// traffic overlaps the MMAs instead of following the kernel. The consumers publish the count of
// finished tiles (data written, partials in p.stats) in tiles_finished; thread 32 adds each to its
// sample's counter (release, GPU scope) as soon as it sees it, also between the pieces it normalizes
// (a CTA that published only while waiting held the other CTAs' next sample back by its own
// normalizing: NOTES v27). The CTA owning a (sample, channel tile)'s first position tile waits for
// the sample's counter, merges the statistics, writes mean and rstd of the groups starting in the
// channel tile and publishes the affine (p.affine, p.affine_ready); the others wait for that. Those
// waits end only if every CTA is resident: the launch is cooperative. The moments and the affine
// come from the functions the finalize and apply kernels use: the values equal those of the
// separate passes bit for bit. With p.pack_inside (3xTF32 only) the same warps also pack the
// activations of samples 1 .. N - 1 (pack_samples_tile), ahead of the producer's loads of them.
template <class Cfg, int kCols>  // Cfg::T: float (applies_group_norm)
__device__ __forceinline__ void normalize_own_tiles(const HopperParams& p, uint32_t* tiles_finished,
                                                    GroupMoments* moments, ChannelAffine* affine, int* decision,
                                                    uint8_t* slots) {
  using T = typename Cfg::T;
  constexpr bool kSplit = Cfg::kSplit;  // 3xTF32 operands
  const int nt = threadIdx.x - 32, warp = nt / 32, lane = nt & 31;
  const int chunks = p.tiles_per_sample * p.co_tiles;  // the tiles of a sample (one phase)
  uint32_t published = 0;                              // (thread 32)
  auto publish = [&] {
    for (const uint32_t finished = hopper::atom_acquire_cta_load(tiles_finished); published < finished; ++published)
      hopper::red_release_gpu_add(&p.sample_done[decode_tile(blockIdx.x + published * gridDim.x, p).n], 1);
  };
  // The (sample, channel tile) keys of this CTA's own tiles at t = 0 are this CTA's to merge, each as
  // soon as its sample is complete: between tiles and while waiting, never behind this CTA's own
  // normalizing (merging a key only on reaching its tile chained every sample's affine to its
  // owner's backlog, and the backlog grew sample after sample: NOTES v27).
  auto next_owned = [&](int tile) {
    while (tile < p.num_tiles && decode_tile(tile, p).t != 0) tile += gridDim.x;
    return tile;
  };
  int owned = next_owned(blockIdx.x);
  auto merge_owned = [&](const TileCoords& oc) {
    const int c0 = oc.ct * kTileCo, rows = min(kTileCo, p.Cout - c0);
    const int g0 = c0 / p.cpg, g1 = (c0 + rows - 1) / p.cpg;
    // a warp per group: its chunk partials copied into the warp's third of the slots in runs of
    // kMomentRun (all of a run's copies in flight at once; 16-byte pieces from the one below the
    // run's first byte, through L2 only), then merged from there by the finalize kernel's code
    uint8_t* run = slots + warp * (kNormSlotBytes / 3);
    for (int g = g0 + warp; g <= g1; g += 3) {
      const int64_t ng = int64_t(oc.n) * p.G + g;
      MomentSums sums;
      double K = 0.0;
      for (int first = 0; first < chunks; first += kMomentRun) {
        const int count = min(kMomentRun, chunks - first);
        const uint8_t* from = reinterpret_cast<const uint8_t*>(p.stats + ng * chunks + first);
        const uint8_t* aligned = reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(from) & ~uintptr_t(15));
        const int skip = static_cast<int>(from - aligned), pieces = (skip + count * 12 + 15) / 16;
        for (int i = lane; i < pieces; i += 32) cp_async_16(smem_u32(run) + 16 * i, aligned + 16 * i, true);
        cp_async_commit();
        cp_async_wait<0>();
        __syncwarp();
        const WelfordPartial* staged = reinterpret_cast<const WelfordPartial*>(run + skip);
        if (first == 0) K = staged[0].mean;
        add_moments(sums, staged, count, K, lane);
        __syncwarp();  // read before the next run lands
      }
      const GroupMoments m = finish_moments(sums, K, p.eps);
      if (lane == 0) {
        moments[g - g0] = m;
        if (g * p.cpg >= c0) {  // the group starts in this channel tile: its mean and rstd
          p.mean_out[ng] = m.mean;
          p.rstd_out[ng] = m.rstd;
        }
      }
    }
    normalizer_barrier();
    for (int r = nt; r < rows; r += 96)
      p.affine[int64_t(oc.n) * p.Cout + c0 + r] = channel_affine(
          moments[(c0 + r) / p.cpg - g0], static_cast<const T*>(p.gamma), static_cast<const T*>(p.beta), c0 + r);
    normalizer_barrier();
    // (a release: the other threads' writes too, ordered by the barrier)
    if (nt == 0) hopper::red_release_gpu_add(&p.affine_ready[oc.n * p.co_tiles + oc.ct], 1);
  };
  // p.pack_inside (3xTF32 only): this CTA's pack tiles j = blockIdx.x + k * gridDim.x, in sample order
  int pack_next = blockIdx.x;
  const int pack_tiles = kSplit && p.pack_inside ? (p.N - 1) * p.pack_tiles_per_sample : 0;
  // May this CTA pack tile j now (thread 32, which knows `published`)? Where the sample's first tile is at
  // most two rounds past this CTA's consumers' next tile: early enough for every CTA to be done in time
  // (a round takes a tile's MMA time), late enough that the packed sample is still in L2 when it is read.
  // The CTA furthest behind may always pack its own next sample: no CTA waits on one that cannot go on.
  auto may_pack = [&](int j) {
    return j < pack_tiles &&
           (1 + j / p.pack_tiles_per_sample) * chunks <= int(blockIdx.x + (published + 2) * gridDim.x);
  };
  auto pack_one = [&] {
    const int n = pack_samples_tile<Cfg>(p, pack_next, reinterpret_cast<T*>(slots), nt);
    if (nt == 0) {
      hopper::red_release_gpu_add(&p.packed[n], 1);
      publish();  // (between the tiles of a batch too)
    }
    pack_next += gridDim.x;
  };
  int cached = -1;  // (sample, channel tile) whose affine is in shared memory
  for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
    const TileCoords tc = decode_tile(tile, p);
    const int key = tc.n * p.co_tiles + tc.ct;
    // until the tile's affine is published: thread 32 publishes finished tiles and decides, all
    // three warps merge an owned key whose sample is complete, or pack the pack tiles that it may now
    // (up to kPackBatch per decision), before normalizing: the producers wait for a sample's pack tiles
    // of every CTA. (The counters are polled relaxed, and acquired by a fence once they are reached:
    // an acquiring load invalidates the SM's L1 on every poll.)
    for (uint32_t idle = 0;;) {
      if (nt == 0) {
        publish();
        int d = 0, packs = 0;
        if (owned < p.num_tiles &&
            hopper::ld_relaxed_gpu(&p.sample_done[decode_tile(owned, p).n]) == uint32_t(chunks))
          d = 1;
        else if (hopper::ld_relaxed_gpu(&p.affine_ready[key]) != 0)
          d = 2;
        if (d != 0) hopper::fence_acq_rel_gpu();
        if (d != 1)
          while (packs < kPackBatch && may_pack(pack_next + packs * gridDim.x)) ++packs;
        decision[0] = d;
        decision[1] = packs;
      }
      normalizer_barrier();
      const int d = decision[0], packs = decision[1];
      normalizer_barrier();  // read before thread 32 rewrites it
      if (d == 1) {
        merge_owned(decode_tile(owned, p));
        owned = next_owned(owned + gridDim.x);
        continue;
      }
      if (packs > 0) {
        for (int k = 0; k < packs; ++k) pack_one();
        continue;
      }
      if (d == 2) break;
      if (++idle == (1u << 26)) __trap();  // seconds: a broken handshake becomes an error, not a hang
      if (nt == 0) __nanosleep(500);       // all CTAs poll a few counters: keep their L2 slice free for the loads
    }
    const int c0 = tc.ct * kTileCo, rows = min(kTileCo, p.Cout - c0);
    if (key != cached) {
      for (int r = nt; r < rows; r += 96) {
        const float2 f = __ldcg(reinterpret_cast<const float2*>(p.affine + int64_t(tc.n) * p.Cout + c0 + r));
        affine[r] = {f.x, f.y};
      }
      normalizer_barrier();
      cached = key;
    }
    // rows c0 .. c0 + rows, positions t * kCols .. + valid, in 16-byte pieces (P * sizeof(T) is a
    // multiple of 16: host). A warp per row (rows warp, warp + 3, ...), its lanes along it, the affine
    // one broadcast per row. Each thread copies its pieces with cp.async into its own slots (no
    // registers held while they fly), through L2 only, in batches of kBatch pieces, one batch landing
    // while the one before is normalized into the output.
    constexpr int kVec = 16 / sizeof(T), kRowPieces = kCols / kVec, kPerLane = (kRowPieces + 31) / 32;
    constexpr int kBatch = kNormPieces / 2, kBatchRows = kBatch / kPerLane;
    const int valid = min(kCols, p.P - tc.t * kCols);
    const int warp_rows = (rows - warp + 2) / 3, batches = (warp_rows + kBatchRows - 1) / kBatchRows;
    const int64_t at = (int64_t(tc.n) * p.Cout + c0) * p.P + int64_t(tc.t) * kCols;
    const T* src = static_cast<const T*>(p.out) + at;
    T* dst = static_cast<T*>(p.norm_out) + at;
    auto slot = [&](int b, int piece) { return slots + (((b & 1) * kBatch + piece) * 96 + nt) * 16; };
    auto copy_batch = [&](int b) {
#pragma unroll
      for (int j = 0; j < kBatchRows; ++j) {
        const int rr = b * kBatchRows + j;
        const T* row = src + int64_t(warp + 3 * rr) * p.P;
#pragma unroll
        for (int q = 0; q < kPerLane; ++q) {
          const int col = (lane + 32 * q) * kVec;
          if (rr < warp_rows && col < valid) cp_async_16(smem_u32(slot(b, j * kPerLane + q)), row + col, true);
        }
      }
      cp_async_commit();
    };
    copy_batch(0);
    for (int b = 0; b < batches; ++b) {
      copy_batch(b + 1);  // (past the last batch: an empty group)
      cp_async_wait<1>();
#pragma unroll
      for (int j = 0; j < kBatchRows; ++j) {
        const int rr = b * kBatchRows + j, r = warp + 3 * rr;
        if (rr >= warp_rows) break;
        const ChannelAffine f = affine[r];
        T* row = dst + int64_t(r) * p.P;
#pragma unroll
        for (int q = 0; q < kPerLane; ++q) {
          const int col = (lane + 32 * q) * kVec;
          if (col < valid) {
            const float4 v = *reinterpret_cast<const float4*>(slot(b, j * kPerLane + q));
            *reinterpret_cast<float4*>(row + col) =
                make_float4(normalize_value(v.x, f.scale, f.shift), normalize_value(v.y, f.scale, f.shift),
                            normalize_value(v.z, f.scale, f.shift), normalize_value(v.w, f.scale, f.shift));
          }
        }
      }
      if (nt == 0) publish();
    }
  }
  while (pack_next < pack_tiles) pack_one();  // (where the waits left some)
}
#endif  // CONVT3D_HOPPER

template <class Cfg, GemmForm kForm, int kRow, int kCols>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_conv_kernel(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap,
                       const __grid_constant__ CUtensorMap omap, const HopperParams p) {
#if CONVT3D_HOPPER
  using T = typename Cfg::T;
  using R = RingOf<kRow, kForm, kCols, sizeof(T), Cfg::kSplit>;
  constexpr bool kSubpixel = kForm == GemmForm::kWSubpixel;
  constexpr bool kWRows = kForm == GemmForm::kWRows;
  static_assert(!kWRows || kCols == kTilePos, "the W-rows form stages 256-column tiles");
  static_assert(kRow == 128 || !Cfg::kSplit, "3xTF32 runs on 128-byte rows");
  constexpr int kCh = kRow / sizeof(T);  // channels per K-block
  extern __shared__ uint8_t smem_raw[];
  // aligned by pointer arithmetic on the shared array (not through an integer), so the compiler
  // keeps the shared address space: the W-rows epilogue's staging accesses stay LDS / STS
  uint8_t* ring = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  __shared__ __align__(8) uint64_t full_bar[R::kStages];
  __shared__ __align__(8) uint64_t empty_bar[R::kStages];
  __shared__ WelfordPartial row_stats[kTileCo];
  // W-rows form: the staged tile after the ring, and each consumer warp's count of output columns;
  // phase form with 16-bit outputs: the staging of the TMA stores there (used where p.tma_store)
  constexpr bool kStaged = staged_stores(kForm, sizeof(T));
  uint8_t* staging_bytes = ring + ring_bytes(kForm, sizeof(T));
  float* staging = reinterpret_cast<float*>(staging_bytes);
  uint8_t* helper_bytes = staging_bytes + staging_size(kForm, sizeof(T));  // (packs_later_samples)
  __shared__ int warp_valid[8];
  __shared__ float wrows_bias[kWRows ? kWRowsMaxRows : 1];  // the bias, zero past Cout
  // The consumers' count of finished tiles (p.apply or p.pack_inside, phase form), and the GroupNorm
  // inside the kernel's (p.apply; fp32 outputs) moments, affine and decision (normalize_own_tiles)
  constexpr bool kApplyForm = applies_group_norm(kForm, sizeof(T));
  __shared__ uint32_t tiles_finished;
  __shared__ GroupMoments norm_moments[kApplyForm ? kTileCo : 1];
  __shared__ ChannelAffine norm_affine[kApplyForm ? kTileCo : 1];
  __shared__ int norm_decision[2];

  const int wg = threadIdx.x / 128;
  if (threadIdx.x == 0) {
    for (int s = 0; s < R::kStages; ++s) {
      hopper::mbar_init(&full_bar[s], 1);   // the producer's arrive (+ transaction bytes)
      hopper::mbar_init(&empty_bar[s], 2);  // one arrive per consumer warpgroup
    }
    hopper::mbar_fence_init();
    tiles_finished = 0;
  }
  if constexpr (kWRows) {
    for (int co = threadIdx.x; co < kWRowsMaxRows; co += kThreads)
      wrows_bias[co] = co < p.Cout && p.bias != nullptr ? to_float(static_cast<const T*>(p.bias)[co]) : 0.f;
  }
  if (p.w_box_rows < kTileCo) {
    // the weight rows no load writes: zero once in every stage (async proxy: wgmma reads them)
    const int per_tile = (kTileCo - p.w_box_rows) * kRow / 16;
    for (int i = threadIdx.x; i < R::kStages * R::kParts * per_tile; i += kThreads) {
      const int tile = i / per_tile, stage = tile / R::kParts, q = tile % R::kParts;
      reinterpret_cast<uint4*>(ring + stage * R::kStageBytes + R::a_tile(q) + p.w_box_rows * kRow)[i % per_tile] =
          make_uint4(0, 0, 0, 0);
    }
    hopper::fence_proxy_async_shared();
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
      uint32_t parity = 0;
      int packed_sample = 0;  // p.pack_inside: the last sample whose pack tiles are all written
      for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
        const TileCoords tc = decode_tile(tile, p);
        if constexpr (packs_later_samples(kForm)) {
          if (p.pack_inside && tc.n != packed_sample) {
            // written by every CTA's helper warps (a sample's last tile also loads columns of the next
            // sample, which it discards: they need not be written yet)
            for (uint32_t polls = 0; hopper::ld_relaxed_gpu(&p.packed[tc.n]) < uint32_t(p.pack_tiles_per_sample);) {
              if (++polls == (1u << 26)) __trap();
              __nanosleep(100);
            }
            hopper::fence_acq_rel_gpu();
            hopper::fence_proxy_async_global();  // the loads below (async proxy) after those writes
            packed_sample = tc.n;
          }
        }
        const GridPos start(tc.t * p.tile_step, p.Ho, p.Wo);
        int r[3], off[3];  // the phase's window offsets (gemm_forms.h)
        phase_residues(tc.phase, p.conv_stride, r);
        for (int d = 0; d < 3; ++d) off[d] = phase_window_offset(r[d], p.conv_stride[d], p.conv_pad[d]);
        // K-block kb is (filter offset (fd, fh, fw), channel block cb, pass), pass fastest; they
        // advance as counters, and the packed K-blocks it loads with them: x_base = cb * parts of the
        // activations, w_base = (tap * c_blocks + cb) * parts of the weights. (Dividing kb on every
        // K-block kept this one thread busy for most of a K-block's MMA time, so the loads went out
        // late and the tensor pipe idled a quarter of the time: NOTES v26.)
        int fd = 0, fh = 0, fw = 0, cb = 0, pass = 0, x_base = 0, w_base = 0;
        const int w_row = tc.phase * p.rows_per_phase + tc.ct * kTileCo;
        for (int kb = 0; kb < p.kblocks; ++kb) {
          hopper::mbar_wait(&empty_bar[stage], parity ^ 1);
          uint8_t* tiles = ring + stage * R::kStageBytes;
          hopper::mbar_arrive_expect_tx(&full_bar[stage], R::kParts * (p.w_box_rows * kRow + R::kBTileBytes));
          // the stage's parts q (or, one pass per stage: pass 1 small activations, pass 2 small weights)
#pragma unroll
          for (int q = 0; q < R::kParts; ++q) {
            const int x_block = x_base + q + (pass == 1);
            const int w_block = w_base + q + (pass == 2);
            hopper::tma_load_2d(tiles + R::a_tile(q), &wmap, &full_bar[stage], w_block * kCh, w_row);
            hopper::tma_load_im2col_5d(tiles + R::b_tile(q), &xmap, &full_bar[stage], x_block * kCh,
                                       start.w + p.lower[2], start.h + p.lower[1], start.d + p.lower[0], tc.n,
                                       static_cast<uint16_t>(fw + off[2]), static_cast<uint16_t>(fh + off[1]),
                                       static_cast<uint16_t>(fd + off[0]));
          }
          next_stage<R>(stage, parity);
          if (++pass == p.passes) {
            pass = 0;
            w_base += p.parts;
            x_base += p.parts;
            if (++cb == p.c_blocks) {
              cb = 0;
              x_base = 0;
              if (++fw == p.k[2]) {
                fw = 0;
                if (++fh == p.k[1]) fh = 0, ++fd;
              }
            }
          }
        }
      }
    } else if (threadIdx.x >= 32) {
      if constexpr (kApplyForm) {
        if (p.apply)
          normalize_own_tiles<Cfg, kCols>(p, &tiles_finished, norm_moments, norm_affine, norm_decision, helper_bytes);
      }
      if constexpr (packs_later_samples(kForm)) {
        if (p.pack_inside && !p.apply) pack_later_samples<Cfg>(p, &tiles_finished, helper_bytes);
      }
    }
  } else {
    // ---------------- consumers ----------------
    hopper::setmaxnreg_inc<232>();
    const int cw = wg - 1;  // which 64 output channels of the tile
    const int warp = (threadIdx.x / 32) & 3, lane = threadIdx.x & 31;
    const bool wg_leader = (threadIdx.x & 127) == 0;
    int stage = 0;
    uint32_t parity = 0;
    // one channel tile whose rows 64..127 are all padding (Cout <= 64): warpgroup 2 has no MMAs
    // and no stores, only the stage handshakes and its share of the statistics merge. (A loop of
    // its own: idling inside the loop below makes ptxas serialize the wgmma pipeline.)
    if (cw == 1 && p.w_box_rows <= 64) {
      for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
        const TileCoords tc = decode_tile(tile, p);
        skip_tile<R>(p.kblocks, full_bar, empty_bar, stage, parity, wg_leader);
        if constexpr (kWRows) {
          finish_wrows_tile<T>(p, tc, staging, wrows_bias, warp_valid, row_stats);
        } else {
          if constexpr (kStaged) {
            if (p.tma_store) {
              float sum[2], sumsq[2];
              store_tile_through_staging<T, R::kAcc, false>(nullptr, p, &omap, tc, staging_bytes, 0, lane, sum, sumsq);
            }
          }
          if (p.stats != nullptr) merge_tile_statistics<kSubpixel>(p, tc, row_stats, lane);
        }
      }
      return;
    }
    float acc[R::kAcc];
    for (int tile = blockIdx.x; tile < p.num_tiles; tile += gridDim.x) {
      const TileCoords tc = decode_tile(tile, p);
      if constexpr (Cfg::kSplit)
        accumulate_3xtf32<R>(acc, p.kblocks, ring, full_bar, empty_bar, stage, parity, cw, wg_leader);
      else
        accumulate<T, R>(acc, p.kblocks, ring, full_bar, empty_bar, stage, parity, cw, wg_leader);

      // ---- epilogue: bias, ReLU, stores, and per-row sums for the statistics ----
      const int row0 = cw * 64 + warp * 16 + (lane >> 2);  // tile row of h = 0 (h = 1: +8)
      if constexpr (kWRows) {
        stage_accumulators(acc, staging, row0, lane, p.w_box_rows);
        finish_wrows_tile<T>(p, tc, staging, wrows_bias, warp_valid, row_stats);
        continue;
      }
      const int pos0 = tc.t * kCols + 2 * (lane & 3);
      const int valid = min(kCols, p.P - tc.t * kCols);  // positions of this tile inside the sample
      if (p.stats != nullptr && valid < kCols) {
        // columns past the sample end (loaded from the next sample) must not enter the statistics:
        // -inf becomes 0 after the ReLU
#pragma unroll
        for (int j = 0; j < R::kAcc / 4; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (2 * (lane & 3) + 8 * j + e >= valid) acc[4 * j + e] = acc[4 * j + 2 + e] = -INFINITY;
      }
      float sum[2] = {0.f, 0.f}, sumsq[2] = {0.f, 0.f};
      // (A flag, not an if / else-if ladder with `kStaged && p.tma_store` in it: that form compiled to a
      // headline bf16 kernel 3% slower, 0.439 -> 0.451 ms, NOTES v21.)
      bool stored = false;
      if constexpr (kStaged) {
        if (p.tma_store) {
          store_tile_through_staging<T, R::kAcc, true>(acc, p, &omap, tc, staging_bytes, row0, lane, sum, sumsq);
          stored = true;
        }
      }
      if constexpr (kSubpixel)
        store_subpixel_tile<T>(acc, p, tc, row0, pos0, sum, sumsq);
      else if (!stored && p.phases == 1)
        store_direct_tile<T>(acc, p, tc, row0, pos0, sum, sumsq);
      else if (!stored)
        store_phase_tile<T>(acc, p, tc, row0, pos0, sum, sumsq);
      if (p.stats != nullptr) {
        // per row: sums over the 4 lanes that hold it (all the tile's positions), then
        // (count, mean, M2) with M2 from the sums (256 values at most: cancellation is negligible)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int off = 1; off <= 2; off <<= 1) {
            sum[h] += __shfl_xor_sync(0xffffffffu, sum[h], off);
            sumsq[h] += __shfl_xor_sync(0xffffffffu, sumsq[h], off);
          }
          const bool real = tile_row_channel<kSubpixel>(tc.ct, row0 + 8 * h, p) >= 0;
          const float mean = sum[h] / valid;
          if ((lane & 3) == 0)
            row_stats[row0 + 8 * h] = WelfordPartial{real ? float(valid) : 0.f, mean,
                                                     real ? fmaxf(sumsq[h] - sum[h] * mean, 0.f) : 0.f};
        }
        merge_tile_statistics<kSubpixel>(p, tc, row_stats, lane);
      }
      if constexpr (packs_later_samples(kForm)) {
        // the tile is finished (its outputs and partials written): for the normalizers (p.apply), or
        // as the pace of the helpers' packing
        if ((p.apply || p.pack_inside) && threadIdx.x == 128) hopper::red_release_cta_add(&tiles_finished, 1);
      }
    }
    if constexpr (kStaged) {
      if (threadIdx.x == 128) hopper::bulk_wait_all();  // the staging lives until its stores are done
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

// The GEMM the kernel runs (common/gemm_forms.h), and its operand layout.
struct GemmShape {
  GemmForm form;
  bool valid;            // every form needs kernel % stride == 0 and output % stride == 0
  int64_t phases;        // GEMMs: the phases (1 for stride 1; the sub-pixel form's over (d, h) only)
  int64_t offsets[3];    // filter offsets walked per dimension
  int64_t positions[3];  // GEMM columns per (sample, phase): a grid of these extents
  int lower[3], upper[3];  // im2col bounding-box corners (d, h, w)
  int row_bytes;         // bytes of K per operand row (Ring): 128, or 64 for 16-bit operands and Cin <= 32
  int64_t real_rows;     // A rows per phase that hold a channel
  int64_t rows;          // the same padded to whole tiles
  int64_t ch;            // channels per K-block
  int64_t Cp;            // input channels padded to whole K-blocks
  int64_t Cs;            // packed channel slots per position and tap (3xTF32: big and small)
  int tile_cols;         // GEMM columns a tile computes: 256, 240, 192 or 128 (choose_tile_width)
  int64_t tile_step;     // columns between consecutive tiles (the W-rows form: 256 - (kW - 1))
  int64_t taps() const { return offsets[0] * offsets[1] * offsets[2]; }
  int64_t P() const { return positions[0] * positions[1] * positions[2]; }
  int64_t tiles_per_phase() const { return ceil_div(P(), tile_step); }
};

// Stride 2 along W runs in the W sub-pixel form unless that multiplies more (tensor work per
// (d, h) phase: W taps x padded rows): odd padding adds a W tap, which the phase form's half-empty
// tiles for Cout <= 64 more than pay for, and kernel == stride costs the same either way.
bool prefer_w_subpixel(const ConvTransposeGeometry& g) {
  if (g.stride[2] != 2 || g.k[2] % 2 != 0) return false;
  const int64_t subpixel_work =
      subpixel_w_taps(static_cast<int>(g.k[2]), static_cast<int>(g.pad[2])) * round_up(16 * ceil_div(g.Cout, 8), kTileCo);
  const int64_t phase_work = 2 * (g.k[2] / 2) * round_up(g.Cout, kTileCo);
  return subpixel_work <= phase_work;
}

// Stride 1 with few output channels runs in the W-rows form: its (W tap, channel) rows fill the
// tile where the phase form's rows would be mostly padding, and one pixel walk serves kW taps.
bool prefer_w_rows(const ConvTransposeGeometry& g) {
  return g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1 && g.k[2] >= 2 &&
         g.k[2] * wrows_channel_rows(static_cast<int>(std::min<int64_t>(g.Cout, kWRowsMaxRows))) <= kWRowsMaxRows;
}

GemmShape gemm_shape(const ConvTransposeGeometry& g, MathMode mode) {
  GemmShape s{};
  s.form = prefer_w_rows(g) ? GemmForm::kWRows : prefer_w_subpixel(g) ? GemmForm::kWSubpixel : GemmForm::kPhases;
  const bool subpixel = s.form == GemmForm::kWSubpixel;
  s.valid = true;
  s.phases = 1;
  s.row_bytes = elem_bytes(mode) == 2 && g.Cin <= 32 ? 64 : 128;
  s.ch = s.row_bytes / elem_bytes(mode);
  s.Cp = round_up(g.Cin, s.ch);
  s.Cs = s.Cp * (mode == MathMode::kFp32 ? 2 : 1);
  for (int d = 0; d < 3; ++d) {
    const int64_t st = g.stride[d];
    if (g.k[d] % st != 0 || g.out[d] % st != 0 || g.dil[d] != 1) s.valid = false;
    const bool w_columns = subpixel && d == 2;  // W: input-aligned columns, no W phases
    if (!w_columns) s.phases *= st;
    s.offsets[d] = w_columns ? subpixel_w_taps(static_cast<int>(g.k[d]), static_cast<int>(g.pad[d])) : g.k[d] / st;
    s.positions[d] = g.out[d] / st;
    s.lower[d] = phase_window_lower(static_cast<int>(st), static_cast<int>(g.k[d]), static_cast<int>(g.pad[d]));
    // the box spans one phase's positions: in + upper - lower = positions
    s.upper[d] = static_cast<int>(s.positions[d] - g.in[d] + s.lower[d]);
  }
  s.real_rows = subpixel ? 16 * ceil_div(g.Cout, 8) : g.Cout;
  s.tile_cols = kTilePos;
  s.tile_step = kTilePos;
  if (s.form == GemmForm::kWRows) {
    // K over the (d, h) taps; columns over W extended by the padding (gemm_forms.h)
    s.offsets[2] = 1;
    s.positions[2] = g.out[2] + g.pad[2];
    s.upper[2] = static_cast<int>(s.positions[2] - g.in[2] + s.lower[2]);
    s.real_rows = g.k[2] * wrows_channel_rows(static_cast<int>(g.Cout));
    s.tile_step = kTilePos - (g.k[2] - 1);
  }
  s.rows = round_up(s.real_rows, kTileCo);
  return s;
}

// The tile width of the shortest grid: its rounds (tiles per SM, rounded up) times a tile's time,
// modelled as 0.56 + 0.44 x width / 256 of a 256-column tile's (a 128-column tile took 0.78 of one,
// NOTES v16: the weight tile, the K-block handshakes and the epilogue's per-row work do not shrink
// with the width). So narrower tiles only where the last round of 256-column tiles would leave SMs
// idle: one sample of 32^3 runs 2 rounds of 192 columns instead of 154 tiles of 256 on 132 SMs.
// Where the rounds stay the same, a narrower tile is simply cheaper: ch256 (4 samples of 34^3, 256
// channels) runs its 10 rounds as 1312 tiles of 240 instead of 1232 of 256 (9.33 rounds' work;
// the conv kernel -2% in TF32 and bf16, NOTES v25, v25b). 3xTF32 sums 128-column halves, so it
// takes 256 or 128; the W-rows form keeps its staged 256.
void choose_tile_width(GemmShape& s, int64_t N, int sm_count, MathMode mode) {
  if (s.form == GemmForm::kWRows) return;
  double best_time = 0.0;
  for (const int cols : {kTilePos, kFitTilePos, kMidTilePos, kNarrowTilePos}) {
    if (mode == MathMode::kFp32 && (cols == kFitTilePos || cols == kMidTilePos)) continue;
    const int64_t tiles = N * ceil_div(s.P(), cols) * s.phases * (s.rows / kTileCo);
    const double time = double(ceil_div(tiles, int64_t(sm_count))) * (0.56 + 0.44 * cols / kTilePos);
    if (cols == kTilePos || time < best_time) {
      best_time = time;
      s.tile_cols = cols;
      s.tile_step = cols;
    }
  }
}

}  // namespace

bool hopper_supports(const ConvTransposeGeometry& g, MathMode mode, int device_index) {
  const DeviceInfo& info = device_info(device_index);
  if (info.major != 9 || g.G != 1) return false;
  const GemmShape s = gemm_shape(g, mode);
  if (!s.valid) return false;
  for (int d = 0; d < 3; ++d) {
    // TMA im2col limits for rank 5: box corners in [-16, 15], filter offsets (plus a phase's
    // window offset of up to 1) below 32
    const bool phased = g.stride[d] > 1 && !(s.form == GemmForm::kWSubpixel && d == 2);
    const int64_t reach = s.offsets[d] - 1 + (phased ? 1 : 0);
    if (s.lower[d] < -16 || s.lower[d] > 15 || s.upper[d] < -16 || s.upper[d] > 15 || reach > 31) return false;
  }
  // 32-bit tile and coordinate arithmetic, int32 tensor-map coordinates
  if (g.N * s.tiles_per_phase() * s.phases * (s.rows / kTileCo) >= (int64_t(1) << 31)) return false;
  // (the W-rows form's column grid is wider than the output, and its last tile reads past it)
  if (std::max(g.out_positions(), s.P() + kTilePos) >= (int64_t(1) << 31) || g.N > 65535) return false;
  return s.taps() * s.Cs < (int64_t(1) << 31) && s.phases * s.rows < (int64_t(1) << 31) &&
         info.max_smem_optin >= smem_bytes(s.form, elem_bytes(mode));
}

std::optional<ForwardStats> hopper_conv_transpose_relu(const ConvTransposeGeometry& g, const Tensor& x,
                                                       const Tensor& weight, const std::optional<Tensor>& bias,
                                                       Tensor& out, const std::function<void()>& allocate_outputs,
                                                       MathMode mode, cudaStream_t stream, Workspace& ws,
                                                       int64_t num_groups, const GroupNormRequest* norm) {
  GemmShape shape = gemm_shape(g, mode);
  const bool round = mode == MathMode::kTf32;
  const bool split = mode == MathMode::kFp32;
  const int64_t sms = device_info(x.get_device_index()).sm_count;
  choose_tile_width(shape, g.N, static_cast<int>(sms), mode);
  const int eb = elem_bytes(mode);
  const int64_t ch = shape.ch, Cs = shape.Cs, T = shape.taps();
  const int64_t w_rows = shape.phases * shape.rows;
  const int64_t co_tiles = shape.rows / kTileCo;
  // the tiles of one sample, each a chunk of the sample's GroupNorm statistics
  const int64_t sample_tiles = shape.tiles_per_phase() * shape.phases * co_tiles;

  // channels-last activations and K-major weights, zero-padded
  const int xp_slice = ws.reserve(g.N * g.in_positions() * Cs * eb);
  const int wp_slice = ws.reserve(w_rows * T * Cs * eb);
  const int stats_slice =
      num_groups > 0 ? ws.reserve(g.N * num_groups * sample_tiles * int64_t(sizeof(WelfordPartial))) : -1;
  // The GroupNorm inside the kernel (normalize_own_tiles): stride 1 in the phase form, output rows
  // in 16-byte pieces, at most 32 groups per channel tile (the normalizer warps merge each group's
  // statistics), and where it measured faster than the passes after the kernel (NOTES v27): fp32
  // outputs (16-bit tiles take half the MMA time each, and the normalizers fell behind them), at
  // least 8 samples (the last sample is normalized after the last MMA, by 96 threads per SM) and
  // many rounds. (And 16-byte aligned outputs, known once they are allocated, after the pack's
  // launch: below.)
  // Many rounds: at least 4 tiles per CTA. The helper warps' work beside the MMAs needs them: until
  // then no sample is complete (nothing to normalize), and the first rounds' tiles of later samples
  // wait for the helpers to pack them (96 threads per SM), which the pack kernel does faster.
  const bool many_rounds = g.N * sample_tiles >= 4 * sms;
  bool apply = norm != nullptr && num_groups > 0 && applies_group_norm(shape.form, eb) && shape.phases == 1 &&
               g.N >= 8 && many_rounds && (shape.P() * eb) % 16 == 0 &&
               std::min<int64_t>(g.Cout, kTileCo) <= 32 * (g.Cout / num_groups);
  // The helper warps pack samples 1 .. N - 1 themselves (pack_samples_tile: 32 channels x 512 bytes of
  // positions per pack tile) where x's rows are aligned, in the phase form (their shared memory), over
  // many rounds (with one, spatial8's kernels took 47 us instead of 43, NOTES v32), with many MMAs per
  // pack tile (kMinKBlocksPerPackTile: they keep ahead of the consumers), and where they
  // have nothing else to do, or, normalizing too, in 3xTF32 (three passes per K-block). Not with TF32
  // while normalizing: its tiles take a third of the MMA time, and the helpers then fell behind the
  // consumers (the kernel 0.90 -> 1.08 ms on the headline, NOTES v28). (At the GPU's power cap the
  // consumers slow down by most of what the pack kernel took: the gain is small, NOTES v31.)
  const int64_t pack_position_blocks = ceil_div(g.in_positions(), int64_t(pack_tile_positions(eb)));
  const int64_t pack_tiles_per_sample = shape.Cp / kPackSlots * pack_position_blocks;
  const int64_t mma_kblocks = T * (shape.Cp / ch) * (split ? 3 : 1);  // per tile, 3xTF32's passes each
  const bool pack_inside = packs_later_samples(shape.form) && g.N >= 2 && many_rounds && (!apply || split) &&
                           sample_tiles * mma_kblocks >= kMinKBlocksPerPackTile * pack_tiles_per_sample &&
                           activation_rows_aligned(x) && g.N * pack_tiles_per_sample + sms < (int64_t(1) << 31);
  // sample_done, affine_ready (with apply), packed (with pack_inside): zero at launch
  const int64_t norm_flags = apply ? g.N * (1 + co_tiles) : 0;
  const int64_t flags = norm_flags + (pack_inside ? g.N : 0);
  const int flags_slice = flags > 0 ? ws.reserve(flags * int64_t(sizeof(uint32_t))) : -1;
  const int affine_slice = apply ? ws.reserve(g.N * g.Cout * int64_t(sizeof(ChannelAffine))) : -1;
  ws.allocate(x);
  void* xp = ws.slice<void>(xp_slice);
  void* wp = ws.slice<void>(wp_slice);
  WelfordPartial* stats = num_groups > 0 ? ws.slice<WelfordPartial>(stats_slice) : nullptr;
  const int split_block = split ? static_cast<int>(ch) : 0;
  pack_hopper_operands(x, xp, weight, wp, shape.Cp, shape.rows, g.stride, g.pad, shape.form, round, split_block, stream,
                       pack_inside ? 1 : g.N);
  allocate_outputs();  // while the pack runs (ForwardOutputs)
  // PyTorch's caching allocator aligns far beyond 16 bytes; another allocator might not (then the
  // passes normalize; the helpers, free, still pack where pack_inside)
  auto aligned16 = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0; };
  if (apply && !(aligned16(out) && aligned16(*norm->y))) apply = false;
  // one channel tile of fewer than 128 real rows: loads bring only those (rounded to the 8-row swizzle
  // atom), the kernel zeroes the rest of each stage once. (Not the TMA's out-of-bounds fill: a box
  // three quarters outside the map made the ch32 kernel 1.5x slower, v10 in NOTES.)
  const int64_t w_box_rows = shape.rows == kTileCo ? round_up(shape.real_rows, 8) : kTileCo;

  const auto& drv = driver();
  const CUtensorMapSwizzle swizzle = shape.row_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B;
  CUtensorMap wmap, xmap;
  {
    const cuuint64_t dims[2] = {static_cast<cuuint64_t>(T * Cs), static_cast<cuuint64_t>(w_rows)};
    const cuuint64_t strides[1] = {static_cast<cuuint64_t>(T * Cs * eb)};
    const cuuint32_t box[2] = {static_cast<cuuint32_t>(ch), static_cast<cuuint32_t>(w_box_rows)};
    const cuuint32_t estr[2] = {1, 1};
    const CUresult r = drv.encode_tiled(&wmap, tma_dtype(mode), 2, wp, dims, strides, box, estr,
                                        CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    STD_TORCH_CHECK(r == CUDA_SUCCESS, "convt3d: encoding the weight tensor map failed (", int(r), ")");
  }
  {
    const cuuint64_t dims[5] = {static_cast<cuuint64_t>(Cs), static_cast<cuuint64_t>(g.in[2]),
                                static_cast<cuuint64_t>(g.in[1]), static_cast<cuuint64_t>(g.in[0]),
                                static_cast<cuuint64_t>(g.N)};
    const cuuint64_t strides[4] = {static_cast<cuuint64_t>(Cs * eb), static_cast<cuuint64_t>(g.in[2] * Cs * eb),
                                   static_cast<cuuint64_t>(g.in[1] * g.in[2] * Cs * eb),
                                   static_cast<cuuint64_t>(g.in_positions() * Cs * eb)};
    const int lower[3] = {shape.lower[2], shape.lower[1], shape.lower[0]};  // (w, h, d)
    const int upper[3] = {shape.upper[2], shape.upper[1], shape.upper[0]};
    const cuuint32_t estr[5] = {1, 1, 1, 1, 1};
    const CUresult r = drv.encode_im2col(&xmap, tma_dtype(mode), 5, xp, dims, strides, lower,
                                         upper, static_cast<cuuint32_t>(ch), static_cast<cuuint32_t>(shape.tile_cols), estr,
                                         CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    STD_TORCH_CHECK(r == CUDA_SUCCESS, "convt3d: encoding the im2col tensor map failed (", int(r), ")");
  }

  // 16-bit outputs, stride 1 in the phase form: the epilogue's TMA stores write the (N, Cout, P) output
  // in boxes of 128 bytes of positions x 128 channels, 96 bytes unswizzled for 240-column tiles
  // (store_box_cols; the map's strides must be multiples of 16 bytes)
  CUtensorMap omap{};
  const bool tma_store = staged_stores(shape.form, eb) && shape.phases == 1 && (shape.P() * eb) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(out.mutable_data_ptr()) % 16 == 0;
  if (tma_store) {
    const cuuint64_t dims[3] = {static_cast<cuuint64_t>(shape.P()), static_cast<cuuint64_t>(g.Cout),
                                static_cast<cuuint64_t>(g.N)};
    const cuuint64_t strides[2] = {static_cast<cuuint64_t>(shape.P() * eb),
                                   static_cast<cuuint64_t>(g.Cout * shape.P() * eb)};
    const int box_cols = store_box_cols(shape.tile_cols, eb);
    const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_cols), static_cast<cuuint32_t>(kTileCo), 1};
    const cuuint32_t estr[3] = {1, 1, 1};
    const CUresult r = drv.encode_tiled(&omap, tma_dtype(mode), 3, out.mutable_data_ptr(), dims, strides, box, estr,
                                        CU_TENSOR_MAP_INTERLEAVE_NONE,
                                        store_box_swizzled(shape.tile_cols, eb) ? CU_TENSOR_MAP_SWIZZLE_128B
                                                                                : CU_TENSOR_MAP_SWIZZLE_NONE,
                                        CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    STD_TORCH_CHECK(r == CUDA_SUCCESS, "convt3d: encoding the output tensor map failed (", int(r), ")");
  }

  HopperParams p{};
  p.out = out.mutable_data_ptr();
  p.tma_store = tma_store ? 1 : 0;
  p.bias = bias.has_value() ? bias->const_data_ptr() : nullptr;
  p.stats = stats;
  p.N = static_cast<int>(g.N);
  p.Cout = static_cast<int>(g.Cout);
  p.P = static_cast<int>(shape.P());
  p.Ho = static_cast<int>(shape.positions[1]);
  p.Wo = static_cast<int>(shape.positions[2]);
  p.tiles_per_sample = static_cast<int>(shape.tiles_per_phase());
  p.tile_step = static_cast<int>(shape.tile_step);
  p.w_taps = static_cast<int>(g.k[2]);
  p.w_row_block = wrows_channel_rows(static_cast<int>(g.Cout));
  p.phases = static_cast<int>(shape.phases);
  p.co_tiles = static_cast<int>(co_tiles);
  p.rows_per_phase = static_cast<int>(shape.rows);
  p.w_box_rows = static_cast<int>(w_box_rows);
  p.num_tiles = static_cast<int>(g.N * sample_tiles);
  for (int d = 0; d < 3; ++d) {
    p.lower[d] = shape.lower[d];
    p.k[d] = static_cast<int>(shape.offsets[d]);
    const bool w_columns = shape.form == GemmForm::kWSubpixel && d == 2;
    p.conv_stride[d] = w_columns ? 1 : static_cast<int>(g.stride[d]);
    p.conv_pad[d] = w_columns ? 0 : static_cast<int>(g.pad[d]);
  }
  p.c_blocks = static_cast<int>(shape.Cp / ch);
  p.parts = split ? 2 : 1;
  p.passes = parts_per_stage(shape.form, split) == 1 && split ? 3 : 1;
  p.kblocks = static_cast<int>(T * p.c_blocks * p.passes);
  p.G = static_cast<int>(num_groups);
  p.cpg = num_groups > 0 ? static_cast<int>(g.Cout / num_groups) : 0;
  p.out_P = static_cast<int>(g.out_positions());
  p.out_H = static_cast<int>(g.out[1]);
  p.out_W = static_cast<int>(g.out[2]);
  uint32_t* flag_words = flags > 0 ? ws.slice<uint32_t>(flags_slice) : nullptr;
  if (flags > 0) CONVT3D_CUDA_CHECK(cudaMemsetAsync(flag_words, 0, flags * sizeof(uint32_t), stream));
  if (apply) {
    p.apply = 1;
    p.norm_out = norm->y->mutable_data_ptr();
    p.gamma = norm->weight->has_value() ? (*norm->weight)->const_data_ptr() : nullptr;
    p.beta = norm->bias->has_value() ? (*norm->bias)->const_data_ptr() : nullptr;
    p.mean_out = static_cast<float*>(norm->mean->mutable_data_ptr());
    p.rstd_out = static_cast<float*>(norm->rstd->mutable_data_ptr());
    p.sample_done = flag_words;
    p.affine_ready = flag_words + g.N;
    p.affine = ws.slice<ChannelAffine>(affine_slice);
    p.eps = norm->eps;
  }
  if (pack_inside) {
    p.pack_inside = 1;
    p.x = x.const_data_ptr();
    p.x_stride_n = x.stride(0);
    p.x_stride_c = x.stride(1);
    p.Cin = static_cast<int>(g.Cin);
    p.S = static_cast<int>(g.in_positions());
    p.Cs = static_cast<int>(Cs);
    p.pack_position_blocks = static_cast<int>(pack_position_blocks);
    p.pack_tiles_per_sample = static_cast<int>(pack_tiles_per_sample);
    p.packed = flag_words + norm_flags;
    p.xp = xp;
  }

  const int grid = static_cast<int>(std::min<int64_t>(p.num_tiles, sms));
  dispatch_math(mode, [&](auto cfg) {
    using Cfg = decltype(cfg);
    auto pick_form = [&](auto row_bytes, auto cols) {
      constexpr int kRow = decltype(row_bytes)::value, kCols = decltype(cols)::value;
      switch (shape.form) {
        case GemmForm::kWSubpixel: return hopper_conv_kernel<Cfg, GemmForm::kWSubpixel, kRow, kCols>;
        case GemmForm::kWRows: return hopper_conv_kernel<Cfg, GemmForm::kWRows, kRow, kTilePos>;
        default: return hopper_conv_kernel<Cfg, GemmForm::kPhases, kRow, kCols>;
      }
    };
    auto pick = [&](auto row_bytes) {
      if (shape.tile_cols == kTilePos) return pick_form(row_bytes, std::integral_constant<int, kTilePos>{});
      if constexpr (!Cfg::kSplit) {
        if (shape.tile_cols == kMidTilePos) return pick_form(row_bytes, std::integral_constant<int, kMidTilePos>{});
        if (shape.tile_cols == kFitTilePos) return pick_form(row_bytes, std::integral_constant<int, kFitTilePos>{});
      }
      return pick_form(row_bytes, std::integral_constant<int, kNarrowTilePos>{});
    };
    auto kernel = pick(std::integral_constant<int, 128>{});
    if constexpr (sizeof(typename Cfg::T) == 2) {
      if (shape.row_bytes == 64) kernel = pick(std::integral_constant<int, 64>{});
    }
    const int smem = smem_bytes(shape.form, eb);
    set_dynamic_smem(kernel, smem);
    if (p.apply || p.pack_inside) {
      // cooperative: all CTAs resident at once (normalize_own_tiles and the producers wait on the
      // others), or an error, where the SMs are shared (MPS, green contexts): then the separate
      // passes normalize and the pack kernel packs the later samples
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(grid);
      config.blockDim = dim3(kThreads);
      config.dynamicSmemBytes = smem;
      config.stream = stream;
      cudaLaunchAttribute cooperative{};
      cooperative.id = cudaLaunchAttributeCooperative;
      cooperative.val.cooperative = 1;
      config.attrs = &cooperative;
      config.numAttrs = 1;
      const cudaError_t err = cudaLaunchKernelEx(&config, kernel, wmap, xmap, omap, p);
      if (err != cudaErrorCooperativeLaunchTooLarge) {
        CONVT3D_CUDA_CHECK(err);
        return;
      }
      (void)cudaGetLastError();
      p.apply = 0;
      if (p.pack_inside) pack_activation(x, xp, 1, shape.Cp, round, stream, split_block, 1);
      p.pack_inside = 0;
    }
    kernel<<<grid, kThreads, smem, stream>>>(wmap, xmap, omap, p);
    CONVT3D_CHECK_LAUNCH();
  });
  if (stats == nullptr) return std::nullopt;
  return ForwardStats{stats, sample_tiles, p.apply != 0};
}

}  // namespace convt3d
