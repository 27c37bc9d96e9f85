// Operand packing kernels (see pack.h).
#include "pack.h"

#include "common/gemm_forms.h"
#include "common/math_mode.cuh"
#include "common/pack_tile.cuh"

namespace convt3d {
namespace {

// 3xTF32 operands (split_block > 0): every split_block channels are stored twice, first
// rounded to TF32 (big), then the TF32-rounded remainder (small), so a padded row of Cp
// channels becomes 2 * Cp slots. Returns the source channel of slot c2, and which part.
__device__ __forceinline__ int64_t split_channel(int64_t c2, int split_block, int& part) {
  if (split_block == 0) {
    part = -1;
    return c2;
  }
  part = static_cast<int>((c2 / split_block) & 1);
  return (c2 / (2 * split_block)) * split_block + c2 % split_block;
}

template <typename T>
__device__ __forceinline__ T operand_value(T v, bool round_tf32, int part) {
  if (part == 0) return operand<Operand::kBig>(v);
  if (part == 1) return operand<Operand::kSmall>(v);
  return round_tf32 ? operand<Operand::kRound>(v) : v;
}

struct ActivationShape {
  int64_t stride[5];  // n, c, d, h, w of the source
  int64_t S;          // D*H*W
  int H, W, G, Cg;
  int slots_per_group;  // Cp, or 2 * Cp with split_block
  int split_block;      // a multiple of kPackSlots (host)
  int collapsible;    // spatial dims form one stride (NCDHW, NDHWC): position p is at p * stride[4]
  int vector_loads;   // positions contiguous and every channel row 16-byte aligned: 16-byte loads along them
};

// The source channels of a tile's 32 slots (slot0 .. slot0 + 31, slot0 a multiple of 32). One split
// part per tile (split_block is a multiple of 32), and, where the tile lies in one group (one group,
// or slots_per_group a multiple of 32: every Hopper pack), consecutive channels from `first`, so
// the block decodes its slots once instead of once per load (per-load divisions were most of the
// pack's instructions, NOTES v29).
struct TileChannels {
  Operand op;
  bool consecutive;
  int first;   // consecutive: slot slot0 + q is channel first + q of group g (real below Cg)
  int g;
  __device__ __forceinline__ TileChannels(const ActivationShape& s, int slot0, bool round_tf32) {
    g = s.G == 1 ? 0 : slot0 / s.slots_per_group;
    consecutive = s.G == 1 || s.slots_per_group % kPackSlots == 0;
    first = slot0 - g * s.slots_per_group;
    op = round_tf32 ? Operand::kRound : Operand::kCopy;
    if (s.split_block > 0) {
      const int block = first / s.split_block;
      op = block & 1 ? Operand::kSmall : Operand::kBig;
      first = (block >> 1) * s.split_block + (first - block * s.split_block);
    }
  }
  // the source channel offset (times the channel stride) of tile slot q, or -1 for a padding slot
  __device__ __forceinline__ int64_t offset(const ActivationShape& s, int slot0, int q) const {
    if (consecutive) return first + q < s.Cg ? int64_t(g * s.Cg + first + q) * s.stride[1] : -1;
    const int slot = slot0 + q, sg = slot / s.slots_per_group, c = slot - sg * s.slots_per_group;  // (no split)
    return slot < s.G * s.slots_per_group && c < s.Cg ? int64_t(sg * s.Cg + c) * s.stride[1] : -1;
  }
};

// A tile of 32 slots x PackTile::kPositions positions (common/pack_tile.cuh) transposed through
// shared memory; a slot is (group, padded channel). 16-byte accesses on both sides where the layout
// allows (NCDHW with aligned rows: always on the write side), so a block keeps 16 KB in flight
// with 4 loads per thread. (Scalar accesses, 16 per thread, ran at 2.8 TB/s for fp32 and 1.5 for
// bf16 on an H200: NOTES v6, v15.) Each thread keeps its 16-byte chunk on the read side and its
// slots on the write side, stepping pointers between its accesses.
// One block of the activation pack: tile (position block bx, slot block by) of sample n.
template <Operand kOp, typename T>
__device__ __forceinline__ void pack_activation_tile(const T* __restrict__ src, T* __restrict__ dst, T* tile,
                                                     const ActivationShape& s, const TileChannels& channels, int64_t bx,
                                                     int by, int64_t n) {
  using Tile = PackTile<T>;
  constexpr int kVec = Tile::kVec, kP = Tile::kPositions;
  const int tid = threadIdx.x;
  const int64_t s0 = bx * kP;
  const int slot0 = by * kPackSlots;
  const T* src_n = src + n * s.stride[0];
  if (s.vector_loads) {
    // 32 slots x 32 chunks: a warp reads one slot's 512 contiguous bytes; this thread chunk
    // tid % 32 of slots tid / 32, + 8, + 16, + 24
    constexpr int kRowStep = 256 / Tile::kChunks;
    constexpr int kLoads = kPackSlots / kRowStep;
    const int chunk = tid % Tile::kChunks, q = tid / Tile::kChunks;
    const int64_t pos = s0 + chunk * kVec;
    int64_t offset[kLoads];  // of slot q + kRowStep * k's channel, or -1
    if (channels.consecutive) {
      const int c = channels.first + q;
      const int64_t at = int64_t(channels.g * s.Cg + c) * s.stride[1], step = kRowStep * s.stride[1];
#pragma unroll
      for (int k = 0; k < kLoads; ++k) offset[k] = c + kRowStep * k < s.Cg ? at + k * step : -1;
    } else {
#pragma unroll
      for (int k = 0; k < kLoads; ++k) offset[k] = channels.offset(s, slot0, q + kRowStep * k);
    }
    uint4 v[kLoads];
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      v[k] = make_uint4(0, 0, 0, 0);
      if (offset[k] >= 0 && pos < s.S) v[k] = *reinterpret_cast<const uint4*>(src_n + offset[k] + pos);
    }
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      T* e = reinterpret_cast<T*>(&v[k]);
#pragma unroll
      for (int i = 0; i < kVec; ++i) e[i] = operand<kOp>(e[i]);
      *reinterpret_cast<uint4*>(&tile[Tile::index(q + kRowStep * k, chunk * kVec)]) = v[k];
    }
  } else {
    // any strides: one element per access, lanes along whichever source dimension is contiguous
    constexpr int kLoads = kPackSlots * kP / 256;
    const bool channel_contiguous = s.stride[1] == 1;
    const int64_t HW = int64_t(s.H) * s.W;
    T v[kLoads];
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int e = tid + 256 * k;
      const int q = channel_contiguous ? e % kPackSlots : e / kP, p = channel_contiguous ? e / kPackSlots : e % kP;
      const int64_t c = channels.offset(s, slot0, q);
      const int64_t pos = s0 + p;
      v[k] = from_float<T>(0.f);
      if (c >= 0 && pos < s.S) {
        int64_t offset;
        if (s.collapsible) {
          offset = pos * s.stride[4];
        } else {  // a general strided view: decode the position
          const int64_t d = pos / HW, rem = pos - d * HW;
          const int64_t h = rem / s.W, w = rem - h * s.W;
          offset = d * s.stride[2] + h * s.stride[3] + w * s.stride[4];
        }
        v[k] = operand<kOp>(src_n[c + offset]);
      }
    }
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int e = tid + 256 * k;
      const int q = channel_contiguous ? e % kPackSlots : e / kP, p = channel_contiguous ? e / kPackSlots : e % kP;
      tile[Tile::index(q, p)] = v[k];
    }
  }
  __syncthreads();
  // kVec consecutive slots q0 .. of one position per thread, 32 / kVec threads per position: this
  // thread slots q0 = tid % (32 / kVec) * kVec of positions tid / (32 / kVec), + 256 / (32 / kVec), ...
  constexpr int kPerPosition = kPackSlots / kVec, kPositionStep = 256 / kPerPosition;
  const int q0 = tid % kPerPosition * kVec;
  const int slots = s.G * s.slots_per_group;
  if (slot0 + q0 >= slots) return;
  const T* column = tile + q0 * kP;  // + i * kP: slot q0 + i
  const int last = static_cast<int>(min(int64_t(kP), s.S - s0));
  T* out = dst + (n * s.S + s0 + tid / kPerPosition) * slots + slot0 + q0;
#pragma unroll
  for (int k = 0; k < kP / kPositionStep; ++k, out += int64_t(kPositionStep) * slots) {
    const int p = tid / kPerPosition + k * kPositionStep;
    if (p >= last) break;
    const int col = Tile::column(q0, p);
    uint4 piece;
    T* e = reinterpret_cast<T*>(&piece);
#pragma unroll
    for (int i = 0; i < kVec; ++i) e[i] = column[i * kP + col];
    *reinterpret_cast<uint4*>(out) = piece;
  }
}

template <typename T>
__device__ __forceinline__ void pack_activation_block(const T* __restrict__ src, T* __restrict__ dst,
                                                      const ActivationShape& s, int round_tf32, int64_t bx, int by,
                                                      int64_t n) {
  __shared__ __align__(16) T tile[kPackSlots * PackTile<T>::kPositions];
  const TileChannels channels(s, by * kPackSlots, round_tf32 != 0);
  if constexpr (std::is_same_v<T, float>) {
    switch (channels.op) {
      case Operand::kRound: return pack_activation_tile<Operand::kRound>(src, dst, tile, s, channels, bx, by, n);
      case Operand::kBig: return pack_activation_tile<Operand::kBig>(src, dst, tile, s, channels, bx, by, n);
      case Operand::kSmall: return pack_activation_tile<Operand::kSmall>(src, dst, tile, s, channels, bx, by, n);
      default: break;
    }
  }
  pack_activation_tile<Operand::kCopy>(src, dst, tile, s, channels, bx, by, n);
}

struct WeightShape {
  int64_t stride[5];  // ci, co, kd, kh, kw of the source
  int64_t rows, taps, Cin_g, Cout_g, G;
  int64_t slots;  // per (row, tap): Cp, or 2 * Cp with split_block
  int split_block;
  int k[3];       // kD, kH, kW
  int rows_are_out;
  bool plain;     // (row, tap) maps plainly, else by the Hopper kernel's GEMM form (common/gemm_forms.h)
  GemmForm form;
  // the Hopper forms: rows = phases x rows_per_phase, taps = sub_k per dimension (K / s; along W
  // the sub-pixel form's union window, or 1 in the W-rows form, whose rows hold the W taps)
  int64_t rows_per_phase;
  int w_row_block;  // W-rows form: rows per W tap (Cr)
  int conv_stride[3], conv_pad[3], sub_k[3];
};

// Where the packed (row, tap) pair rt = (group, row, tap) flattened reads its source: the offset of
// its (group, row, kernel tap) part, or -1 where all its slots are zeros (a padding row, no kernel
// tap). A slot's channel adds to it (rows_are_out: the input channel, else the output channel).
__device__ __forceinline__ int64_t weight_row_tap_offset(const WeightShape& s, int64_t rt) {
  const int64_t tap = rt % s.taps;
  int64_t row = rt / s.taps % s.rows;
  const int64_t g = rt / (s.taps * s.rows);
  int kt[3];  // the kernel tap (d, h, w); kt[2] < 0: no tap (a zero weight)
  if (!s.plain) {
    // rows_per_phase rows per phase, taps (f_d, f_h, f_w) of sub_k per dimension
    int f[3] = {static_cast<int>(tap / (s.sub_k[1] * s.sub_k[2])), static_cast<int>(tap / s.sub_k[2] % s.sub_k[1]),
                static_cast<int>(tap % s.sub_k[2])};
    const bool w_subpixel = s.form == GemmForm::kWSubpixel;
    const int phase_stride[3] = {s.conv_stride[0], s.conv_stride[1], w_subpixel ? 1 : s.conv_stride[2]};
    int r[3];
    phase_residues(static_cast<int>(row / s.rows_per_phase), phase_stride, r);
    row %= s.rows_per_phase;
    if (s.form == GemmForm::kWRows) {  // the row holds (W tap, output channel); past the taps: zero
      f[2] = static_cast<int>(row / s.w_row_block);
      row %= s.w_row_block;
    }
    for (int d = 0; d < 3; ++d) kt[d] = phase_kernel_tap(r[d], s.conv_stride[d], s.k[d], s.conv_pad[d], f[d]);
    if (s.form == GemmForm::kWRows && f[2] >= s.k[2]) kt[2] = -1;
    if (w_subpixel) {  // the row holds (output channel, W-phase)
      kt[2] = subpixel_kernel_tap(subpixel_w_phase(static_cast<int>(row)), s.k[2], s.conv_pad[2], f[2]);
      row = subpixel_unit(static_cast<int>(row));
    }
  } else {
    kt[0] = static_cast<int>(tap / (s.k[1] * s.k[2]));
    kt[1] = static_cast<int>(tap / s.k[2] % s.k[1]);
    kt[2] = static_cast<int>(tap % s.k[2]);
  }
  const bool zero = kt[2] < 0 || row >= (s.rows_are_out ? s.Cout_g : s.Cin_g);
  const int64_t row_offset = s.rows_are_out ? row * s.stride[1] : (g * s.Cin_g + row) * s.stride[0];
  const int64_t group_offset = s.rows_are_out ? g * s.Cin_g * s.stride[0] : 0;
  return zero ? -1 : group_offset + row_offset + kt[0] * s.stride[2] + kt[1] * s.stride[3] + kt[2] * s.stride[4];
}

// 32 (row, tap) pairs x 32 slots per block, transposed through shared memory: the reads run along
// the taps and rows (contiguous in a (Cin, Cout, k, k, k) weight), the writes along the slots; each
// thread decodes its (row, tap) pair once for its 4 slots. (One element per thread in the packed
// order, decoding everything per element with 64-bit divisions, took 37 us for 256 x 256 x 27
// weights on an H200: compute-bound on the index math, NOTES v8 and v15.)
constexpr int kWeightTile = 32;

// One block of the weight pack: (row, tap) block bx, slot block by.
template <typename T>
__device__ __forceinline__ void pack_weight_block(const T* __restrict__ src, T* __restrict__ dst, const WeightShape& s,
                                                  int round_tf32, int64_t bx, int64_t by) {
  __shared__ T tile[kWeightTile][kWeightTile + 1];
  const int tx = threadIdx.x % kWeightTile, ty = threadIdx.x / kWeightTile;  // 32 x 8
  const int64_t rt0 = bx * kWeightTile, slot0 = by * kWeightTile;
  const int64_t rts = s.G * s.rows * s.taps;
  const int64_t rt_offset = rt0 + tx < rts ? weight_row_tap_offset(s, rt0 + tx) : -1;
  const int64_t slot_stride = s.rows_are_out ? s.stride[0] : s.stride[1];
  const int64_t slot_limit = s.rows_are_out ? s.Cin_g : s.Cout_g;
#pragma unroll
  for (int k = 0; k < kWeightTile / 8; ++k) {
    const int64_t slot = slot0 + ty + 8 * k;
    T v = from_float<T>(0.f);
    if (rt_offset >= 0 && slot < s.slots) {
      int part;
      const int64_t c = split_channel(slot, s.split_block, part);
      if (c < slot_limit) v = operand_value(src[rt_offset + c * slot_stride], round_tf32, part);
    }
    tile[ty + 8 * k][tx] = v;
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kWeightTile / 8; ++k) {
    const int64_t rt = rt0 + ty + 8 * k, slot = slot0 + tx;
    if (rt < rts && slot < s.slots) dst[rt * s.slots + slot] = tile[tx][ty + 8 * k];
  }
}

// The packs of one launch: an activation pack, a weight pack, or both, so the packs of a forward cost
// one launch and run side by side. Grid (x, y, z): z < a_samples is sample a_first_sample + z's
// activation tile (position block x, slot block y), read from the block index (decoding a 1-D index
// took three divisions per warp, a third of a tile's instructions: NOTES v29); past those, the
// weight blocks in (x, y, z) order, or a grid of weight blocks alone.
template <typename T>
struct PackLaunch {
  const T* x;
  T* xp;
  ActivationShape a;
  int a_samples, a_first_sample;
  const T* w;
  T* wp;
  WeightShape ws;
  int w_blocks, w_grid_x;  // weight blocks: ((row, tap) block, slot block)
  int round_tf32;
};

// At most the registers of the activation pack alone (48 / 60), so as many of its blocks fit on an
// SM as before the two packs shared a kernel (v19: 64 / 66 registers cost the headline's pack 6 us).
template <typename T>
__global__ void __launch_bounds__(256, sizeof(T) == 4 ? 5 : 4) pack_kernel(PackLaunch<T> l) {
  const int z = static_cast<int>(blockIdx.z);
  if (z < l.a_samples) {
    pack_activation_block(l.x, l.xp, l.a, l.round_tf32, blockIdx.x, static_cast<int>(blockIdx.y),
                          l.a_first_sample + z);
    return;
  }
  // the grid is under 2^31 blocks: 32-bit block arithmetic
  const int b = static_cast<int>(((z - l.a_samples) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);
  if (b < l.w_blocks) pack_weight_block(l.w, l.wp, l.ws, l.round_tf32, b % l.w_grid_x, b / l.w_grid_x);
}

struct ActivationJob {
  const Tensor* src = nullptr;
  void* dst = nullptr;
  ActivationShape s{};
  int64_t first_sample = 0, samples = 0;  // the samples packed
};

struct WeightJob {
  const Tensor* src = nullptr;
  void* dst = nullptr;
  WeightShape s{};
};

ActivationJob activation_job(const Tensor& src, void* dst, int64_t groups, int64_t Cp, int split_block,
                             int64_t first_sample = 0) {
  ActivationShape s{};
  for (int i = 0; i < 5; ++i) s.stride[i] = src.stride(i);
  s.S = src.size(2) * src.size(3) * src.size(4);
  s.H = static_cast<int>(src.size(3));
  s.W = static_cast<int>(src.size(4));
  s.G = static_cast<int>(groups);
  s.Cg = static_cast<int>(src.size(1) / groups);
  // (TileChannels: one split part per tile, and split tiles of one group)
  STD_TORCH_CHECK(split_block % kPackSlots == 0 && (split_block == 0 || groups == 1),
                  "convt3d: internal error: 3xTF32 split blocks of ", split_block, " channels in ", groups, " groups");
  s.split_block = split_block;
  s.slots_per_group = static_cast<int>(split_block > 0 ? 2 * Cp : Cp);
  s.collapsible = s.stride[2] == src.size(3) * s.stride[3] && s.stride[3] == src.size(4) * s.stride[4];
  // the write side's 16-byte stores: rows of whole 16-byte chunks (Cp is a multiple of 8)
  const int64_t v = 16 / src.element_size();  // PackTile<T>::kVec
  STD_TORCH_CHECK((groups * s.slots_per_group) % v == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0,
                  "convt3d: internal error: misaligned packed activations");
  s.vector_loads = activation_rows_aligned(src);
  return {&src, dst, s, first_sample, src.size(0) - first_sample};
}

WeightShape weight_shape(const Tensor& w, int64_t groups, int64_t Cp, int split_block) {
  WeightShape s{};
  for (int i = 0; i < 5; ++i) s.stride[i] = w.stride(i);
  s.G = groups;
  s.Cin_g = w.size(0) / groups;
  s.Cout_g = w.size(1);
  s.taps = w.size(2) * w.size(3) * w.size(4);
  for (int d = 0; d < 3; ++d) s.k[d] = static_cast<int>(w.size(2 + d));
  s.split_block = split_block;
  s.slots = split_block > 0 ? 2 * Cp : Cp;
  return s;
}

// Launches the given packs (either may be null) as one grid, or as two where the weight blocks would
// take more than the grid's 65535 z planes past the activations'.
void launch_packs(const ActivationJob* a, const WeightJob* w, bool round_tf32, cudaStream_t stream) {
  const ScalarType dtype = a != nullptr ? a->src->scalar_type() : w->src->scalar_type();
  bool separately = false;
  dispatch_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    PackLaunch<T> l{};
    int64_t w_blocks = 0;
    const int64_t row_taps = w != nullptr ? w->s.G * w->s.rows * w->s.taps : 0;
    if (row_taps > 0 && w->s.slots > 0) {
      l.w = static_cast<const T*>(w->src->const_data_ptr());
      l.wp = static_cast<T*>(w->dst);
      l.ws = w->s;
      const int64_t w_grid_x = ceil_div(row_taps, kWeightTile);
      w_blocks = w_grid_x * ceil_div(w->s.slots, kWeightTile);
      l.w_grid_x = static_cast<int>(w_grid_x);  // (below the total's 2^31 bound checked below)
    }
    int64_t grid[3] = {w_blocks, 1, 1};
    if (a != nullptr && a->samples > 0 && a->s.S > 0) {
      STD_TORCH_CHECK(a->src->size(0) <= 65535, "convt3d: batch sizes above 65535 are not supported");
      l.x = static_cast<const T*>(a->src->const_data_ptr());
      l.xp = static_cast<T*>(a->dst);
      l.a = a->s;
      l.a_samples = static_cast<int>(a->samples);
      l.a_first_sample = static_cast<int>(a->first_sample);
      grid[0] = ceil_div(a->s.S, PackTile<T>::kPositions);
      grid[1] = ceil_div(int64_t(a->s.G) * a->s.slots_per_group, kPackSlots);
      STD_TORCH_CHECK(grid[1] <= 65535, "convt3d: more than 2^21 channels are not supported");
      grid[2] = a->samples + ceil_div(w_blocks, grid[0] * grid[1]);
      if (grid[2] > 65535) {
        separately = true;
        return;
      }
    }
    if (grid[0] * grid[1] * grid[2] == 0) return;
    STD_TORCH_CHECK(grid[0] * grid[1] * grid[2] < (int64_t(1) << 31), "convt3d: the operands are too large to pack");
    l.w_blocks = static_cast<int>(w_blocks);
    l.round_tf32 = round_tf32 ? 1 : 0;
    const dim3 blocks(static_cast<unsigned>(grid[0]), static_cast<unsigned>(grid[1]), static_cast<unsigned>(grid[2]));
    pack_kernel<T><<<blocks, 256, 0, stream>>>(l);
  });
  CONVT3D_CHECK_LAUNCH();
  if (separately) {
    launch_packs(a, nullptr, round_tf32, stream);
    launch_packs(nullptr, w, round_tf32, stream);
  }
}

}  // namespace

bool activation_rows_aligned(const Tensor& x) {
  const int64_t v = 16 / x.element_size();
  const int64_t H = x.size(3), W = x.size(4), S = x.size(2) * H * W;
  const bool collapsible = x.stride(2) == H * x.stride(3) && x.stride(3) == W * x.stride(4);
  return collapsible && x.stride(4) == 1 && S % v == 0 && x.stride(1) % v == 0 && x.stride(0) % v == 0 &&
         reinterpret_cast<uintptr_t>(x.const_data_ptr()) % 16 == 0;
}

void pack_activation(const Tensor& src, void* dst, int64_t groups, int64_t Cp, bool round_tf32, cudaStream_t stream,
                     int split_block, int64_t first_sample) {
  const ActivationJob a = activation_job(src, dst, groups, Cp, split_block, first_sample);
  launch_packs(&a, nullptr, round_tf32, stream);
}

void pack_weight(const Tensor& w, void* dst, int64_t groups, int64_t Cp, WeightRows rows, bool round_tf32,
                 cudaStream_t stream) {
  WeightJob job{&w, dst, weight_shape(w, groups, Cp, 0)};
  WeightShape& s = job.s;
  s.rows_are_out = rows == WeightRows::kOutChannels;
  s.rows = s.rows_are_out ? s.Cout_g : s.Cin_g;
  s.plain = true;
  launch_packs(nullptr, &job, round_tf32, stream);
}

void pack_hopper_operands(const Tensor& x, void* xp, const Tensor& w, void* wp, int64_t Cp, int64_t rows_per_phase,
                          IntList stride, IntList padding, GemmForm form, bool round_tf32, int split_block,
                          cudaStream_t stream, int64_t samples) {
  ActivationJob a = activation_job(x, xp, 1, Cp, split_block);
  a.samples = std::min(a.samples, samples);
  WeightJob job{&w, wp, weight_shape(w, 1, Cp, split_block)};
  WeightShape& s = job.s;
  const bool w_subpixel = form == GemmForm::kWSubpixel;
  s.rows_are_out = 1;
  s.form = form;
  s.rows_per_phase = rows_per_phase;
  int64_t phases = 1;
  s.taps = 1;
  for (int d = 0; d < 3; ++d) {
    STD_TORCH_CHECK(s.k[d] % stride[d] == 0, "convt3d: the phase weight layout needs kernel % stride == 0");
    s.conv_stride[d] = static_cast<int>(stride[d]);
    s.conv_pad[d] = static_cast<int>(padding[d]);
    s.sub_k[d] = static_cast<int>(s.k[d] / stride[d]);
    if (d < 2 || !w_subpixel) phases *= stride[d];
  }
  if (w_subpixel) {
    STD_TORCH_CHECK(stride[2] == 2, "convt3d: the W sub-pixel weight layout needs stride 2 along W");
    s.sub_k[2] = subpixel_w_taps(s.k[2], s.conv_pad[2]);
  }
  if (form == GemmForm::kWRows) {
    STD_TORCH_CHECK(stride[0] == 1 && stride[1] == 1 && stride[2] == 1, "convt3d: the W-rows weight layout needs stride 1");
    s.sub_k[2] = 1;
    s.w_row_block = wrows_channel_rows(static_cast<int>(s.Cout_g));
    STD_TORCH_CHECK(s.k[2] * s.w_row_block <= rows_per_phase, "convt3d: the W-rows weight layout has too many rows");
  }
  s.taps = int64_t(s.sub_k[0]) * s.sub_k[1] * s.sub_k[2];
  s.rows = phases * rows_per_phase;
  launch_packs(&a, &job, round_tf32, stream);
}

}  // namespace convt3d
