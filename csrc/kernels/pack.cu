// Operand packing kernels (see pack.h).
#include "pack.h"

#include "common/gemm_forms.h"
#include "common/math_mode.cuh"
#include "common/pack_tile.cuh"

namespace convt3d {
namespace {

template <typename T>
__device__ __forceinline__ T maybe_round(T v, bool round_tf32) {
  if constexpr (std::is_same_v<T, float>) {
    if (round_tf32) return __uint_as_float(tf32_round(v));
  }
  return v;
}

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
  if constexpr (std::is_same_v<T, float>) {
    if (part >= 0) {
      uint32_t big, small;
      tf32_split(__float_as_uint(v), big, small);
      return __uint_as_float(part == 0 ? big : small);
    }
  }
  return maybe_round(v, round_tf32);
}

struct ActivationShape {
  int64_t stride[5];  // n, c, d, h, w of the source
  int64_t S;          // D*H*W
  int H, W, G, Cg;
  int slots_per_group;  // Cp, or 2 * Cp with split_block
  int split_block;
  int collapsible;    // spatial dims form one stride (NCDHW, NDHWC): position p is at p * stride[4]
  int vector_loads;   // positions contiguous and every channel row 16-byte aligned: 16-byte loads along them
};

// A tile of 32 slots x PackTile::kPositions positions (common/pack_tile.cuh) transposed through
// shared memory; a slot is (group, padded channel). 16-byte accesses on both sides where the layout
// allows (NCDHW with aligned rows: always on the write side), so a block keeps 16 KB in flight
// with 4 loads per thread. (Scalar accesses, 16 per thread, ran at 2.8 TB/s for fp32 and 1.5 for
// bf16 on an H200: NOTES v6, v15.)
// One block of the activation pack: tile (position block bx, slot block by) of sample n.
template <typename T>
__device__ __forceinline__ void pack_activation_block(const T* __restrict__ src, T* __restrict__ dst,
                                                      const ActivationShape& s, int round_tf32, int64_t bx, int by,
                                                      int64_t n) {
  using Tile = PackTile<T>;
  constexpr int kVec = Tile::kVec, kP = Tile::kPositions;
  __shared__ __align__(16) T tile[kPackSlots * kP];
  const int tid = threadIdx.x;
  const int64_t s0 = bx * kP;
  const int slot0 = by * kPackSlots;
  const int slots = s.G * s.slots_per_group;
  const T* src_n = src + n * s.stride[0];
  // the source channel offset of tile slot q, or -1 for a padding slot; and its 3xTF32 part
  auto channel_of = [&](int q, int& part) -> int64_t {
    part = -1;
    const int slot = slot0 + q;
    if (slot >= slots) return -1;
    const int g = slot / s.slots_per_group;
    const int c = static_cast<int>(split_channel(slot - g * s.slots_per_group, s.split_block, part));
    return c < s.Cg ? int64_t(g * s.Cg + c) * s.stride[1] : -1;
  };
  if (s.vector_loads) {
    // 32 slots x 32 chunks: a warp reads one slot's 512 contiguous bytes
    constexpr int kLoads = kPackSlots * Tile::kChunks / 256;
    uint4 v[kLoads];
    int part[kLoads];
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int q = (tid + 256 * k) / Tile::kChunks, chunk = (tid + 256 * k) % Tile::kChunks;
      const int64_t c = channel_of(q, part[k]);
      const int64_t pos = s0 + chunk * kVec;
      v[k] = make_uint4(0, 0, 0, 0);
      if (c >= 0 && pos < s.S) v[k] = *reinterpret_cast<const uint4*>(src_n + c + pos);
    }
#pragma unroll
    for (int k = 0; k < kLoads; ++k) {
      const int q = (tid + 256 * k) / Tile::kChunks, chunk = (tid + 256 * k) % Tile::kChunks;
      T* e = reinterpret_cast<T*>(&v[k]);
#pragma unroll
      for (int i = 0; i < kVec; ++i) e[i] = operand_value(e[i], round_tf32, part[k]);
      *reinterpret_cast<uint4*>(&tile[Tile::index(q, chunk * kVec)]) = v[k];
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
      int part;
      const int64_t c = channel_of(q, part);
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
        v[k] = operand_value(src_n[c + offset], round_tf32, part);
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
  // kVec consecutive slots of one position per thread: 32 / kVec threads write a position's 32 slots
  constexpr int kPerPosition = kPackSlots / kVec;
#pragma unroll
  for (int k = 0; k < kP * kPerPosition / 256; ++k) {
    const int p = (tid + 256 * k) / kPerPosition, q0 = (tid % kPerPosition) * kVec;
    const int64_t pos = s0 + p;
    if (pos >= s.S || slot0 + q0 >= slots) continue;
    uint4 out;
    T* e = reinterpret_cast<T*>(&out);
#pragma unroll
    for (int i = 0; i < kVec; ++i) e[i] = tile[Tile::index(q0 + i, p)];
    *reinterpret_cast<uint4*>(dst + (n * s.S + pos) * slots + slot0 + q0) = out;
  }
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

// The packs of one launch: an activation pack, a weight pack, or both (each a block range of a 1-D
// grid, so the packs of a forward cost one launch and run side by side).
template <typename T>
struct PackLaunch {
  const T* x;
  T* xp;
  ActivationShape a;
  int a_blocks, a_grid_x, a_grid_y;  // activation blocks: (position block, slot block, sample)
  int a_first_sample;
  const T* w;
  T* wp;
  WeightShape ws;
  int w_grid_x;                      // weight blocks: ((row, tap) block, slot block)
  int round_tf32;
};

// At most the registers of the activation pack alone (48 / 60), so as many of its blocks fit on an
// SM as before the two packs shared a kernel (v19: 64 / 66 registers cost the headline's pack 6 us).
template <typename T>
__global__ void __launch_bounds__(256, sizeof(T) == 4 ? 5 : 4) pack_kernel(PackLaunch<T> l) {
  int b = blockIdx.x;  // the grid is under 2^31 blocks: 32-bit block arithmetic
  if (b < l.a_blocks) {
    pack_activation_block(l.x, l.xp, l.a, l.round_tf32, b % l.a_grid_x, b / l.a_grid_x % l.a_grid_y,
                          l.a_first_sample + b / (l.a_grid_x * l.a_grid_y));
    return;
  }
  b -= l.a_blocks;
  pack_weight_block(l.w, l.wp, l.ws, l.round_tf32, b % l.w_grid_x, b / l.w_grid_x);
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

// Launches the given packs (either may be null) as one grid.
void launch_packs(const ActivationJob* a, const WeightJob* w, bool round_tf32, cudaStream_t stream) {
  const ScalarType dtype = a != nullptr ? a->src->scalar_type() : w->src->scalar_type();
  dispatch_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    PackLaunch<T> l{};
    int64_t a_blocks = 0;
    if (a != nullptr && a->samples > 0 && a->s.S > 0) {
      STD_TORCH_CHECK(a->src->size(0) <= 65535, "convt3d: batch sizes above 65535 are not supported");
      l.x = static_cast<const T*>(a->src->const_data_ptr());
      l.xp = static_cast<T*>(a->dst);
      l.a = a->s;
      const int64_t grid_x = ceil_div(a->s.S, PackTile<T>::kPositions);
      const int64_t grid_y = ceil_div(int64_t(a->s.G) * a->s.slots_per_group, kPackSlots);
      a_blocks = grid_x * grid_y * a->samples;
      l.a_first_sample = static_cast<int>(a->first_sample);
      l.a_grid_x = static_cast<int>(grid_x);  // (both below the total's 2^31 bound checked below)
      l.a_grid_y = static_cast<int>(grid_y);
    }
    int64_t w_blocks = 0;
    const int64_t row_taps = w != nullptr ? w->s.G * w->s.rows * w->s.taps : 0;
    if (row_taps > 0 && w->s.slots > 0) {
      l.w = static_cast<const T*>(w->src->const_data_ptr());
      l.wp = static_cast<T*>(w->dst);
      l.ws = w->s;
      const int64_t w_grid_x = ceil_div(row_taps, kWeightTile);
      w_blocks = w_grid_x * ceil_div(w->s.slots, kWeightTile);
      l.w_grid_x = static_cast<int>(w_grid_x);
    }
    l.round_tf32 = round_tf32 ? 1 : 0;
    const int64_t blocks = a_blocks + w_blocks;
    if (blocks == 0) return;
    STD_TORCH_CHECK(blocks < (int64_t(1) << 31), "convt3d: the operands are too large to pack");
    l.a_blocks = static_cast<int>(a_blocks);
    pack_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(l);
  });
  CONVT3D_CHECK_LAUNCH();
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
