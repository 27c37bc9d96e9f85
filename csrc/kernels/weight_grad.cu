// Weight and bias gradients of the transposed conv (see weight_grad.h).
//
// Block tile: 64 input channels (M) x 128 (tap, output channel) columns (N),
// 32 input positions of K per stage, a 3-stage cp.async pipeline, 8 warps of
// mma.sync (each 32 x 32). Both operands arrive position-major (channels
// contiguous), i.e. M- and N-contiguous in shared memory: fp32 fragments are
// read with scalar loads from rows padded to a bank-conflict-free stride,
// 16-bit fragments with ldmatrix.trans.
#include "weight_grad.h"

#include <climits>

#include "pack.h"

namespace convt3d {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 64;
constexpr int kBN = 128;
constexpr int kBK = 32;  // input positions per stage
constexpr int kStages = 3;

struct WeightGradParams {
  const void* x;     // [N][S_in][G][Cpx]
  const void* gout;  // [N][S_out][G][Cpo]
  float* ws;         // [splits][G][Mpad][Ntot]
  int G, Cpx, Cpo, Ntot, Mpad;
  int in_dims[3], out_dims[3], k[3], stride[3], pad[3], dil[3];
  int64_t Ktot, k_per_split;
};

template <typename T>
struct WgradLayout {
  static constexpr int kCh = 16 / sizeof(T);
  static constexpr int kAWords = kBM * sizeof(T) / 4;
  static constexpr int kBWords = kBN * sizeof(T) / 4;
  // fp32 fragments are scalar loads: stride = 8 (mod 32) words; ldmatrix rows: 4 (mod 32) words
  static constexpr int kPad = sizeof(T) == 4 ? 8 : 4;
  static constexpr int kLdA = kAWords + kPad;
  static constexpr int kLdB = kBWords + kPad;
  static constexpr int kAChunksPerThread = kBM / kCh / 8;
  static constexpr int kBChunksPerThread = kBN / kCh / 8;
  static constexpr int kSmemBytes = kStages * kBK * (kLdA + kLdB) * 4;
};

template <class Cfg>
__global__ void __launch_bounds__(kThreads, 1) weight_grad_kernel(const WeightGradParams p) {
  using T = typename Cfg::T;
  using L = WgradLayout<T>;
  extern __shared__ __align__(128) uint32_t smem[];
  uint32_t* sA = smem;                            // [kStages][kBK][kLdA]
  uint32_t* sB = smem + kStages * kBK * L::kLdA;  // [kStages][kBK][kLdB]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n0 = blockIdx.x * kBN;
  const int m_tiles = p.Mpad / kBM;
  const int g = blockIdx.y / m_tiles;
  const int m0 = (blockIdx.y - g * m_tiles) * kBM;
  const int64_t kbeg = int64_t(blockIdx.z) * p.k_per_split;
  const int64_t kend = kbeg + p.k_per_split < p.Ktot ? kbeg + p.k_per_split : p.Ktot;
  const int KT = static_cast<int>((kend - kbeg + kBK - 1) / kBK);
  const int64_t S_in = int64_t(p.in_dims[0]) * p.in_dims[1] * p.in_dims[2];
  const int64_t S_out = int64_t(p.out_dims[0]) * p.out_dims[1] * p.out_dims[2];
  const int in_hw = p.in_dims[1] * p.in_dims[2];

  // This thread always loads K-row `row` and the same chunk columns of every stage.
  const int row = tid & 31, col_group = tid >> 5;
  int b_co[L::kBChunksPerThread], b_od[L::kBChunksPerThread], b_oh[L::kBChunksPerThread],
      b_ow[L::kBChunksPerThread];
#pragma unroll
  for (int i = 0; i < L::kBChunksPerThread; ++i) {
    const int n = n0 + (col_group + 8 * i) * L::kCh;
    if (n < p.Ntot) {
      const int tap = n / p.Cpo;
      b_co[i] = n - tap * p.Cpo;
      const int td = tap / (p.k[1] * p.k[2]), thw = tap - td * p.k[1] * p.k[2];
      const int th = thw / p.k[2], tw = thw - th * p.k[2];
      b_od[i] = td * p.dil[0] - p.pad[0];
      b_oh[i] = th * p.dil[1] - p.pad[1];
      b_ow[i] = tw * p.dil[2] - p.pad[2];
    } else {
      b_co[i] = 0;
      b_od[i] = INT_MIN / 2;  // never in range
      b_oh[i] = 0;
      b_ow[i] = 0;
    }
  }

  const T* x = static_cast<const T*>(p.x);
  const T* gout = static_cast<const T*>(p.gout);

  auto load_stage = [&](int stage, int kt) {
    const int64_t pos = kbeg + int64_t(kt) * kBK + row;
    const bool pos_valid = pos < kend;
    const int64_t nb = pos_valid ? pos / S_in : 0;
    const int rem = pos_valid ? static_cast<int>(pos - nb * S_in) : 0;
    const int id = rem / in_hw, ihw = rem - id * in_hw;
    const int ih = ihw / p.in_dims[2], iw = ihw - ih * p.in_dims[2];
    uint32_t* a_row = sA + (stage * kBK + row) * L::kLdA;
    uint32_t* b_row = sB + (stage * kBK + row) * L::kLdB;
#pragma unroll
    for (int i = 0; i < L::kAChunksPerThread; ++i) {
      const int chunk = col_group + 8 * i;
      const int ci = m0 + chunk * L::kCh;
      const bool valid = pos_valid && ci < p.Cpx;
      const T* ptr = valid ? x + (pos * p.G + g) * p.Cpx + ci : x;
      cp_async_16(smem_u32(a_row + chunk * 4), ptr, valid);
    }
#pragma unroll
    for (int i = 0; i < L::kBChunksPerThread; ++i) {
      const int chunk = col_group + 8 * i;
      const int od = id * p.stride[0] + b_od[i];
      const int oh = ih * p.stride[1] + b_oh[i];
      const int ow = iw * p.stride[2] + b_ow[i];
      const bool valid = pos_valid && od >= 0 && od < p.out_dims[0] && oh >= 0 && oh < p.out_dims[1] && ow >= 0 &&
                         ow < p.out_dims[2];
      const T* ptr = gout;
      if (valid)
        ptr = gout + ((nb * S_out + (int64_t(od) * p.out_dims[1] + oh) * p.out_dims[2] + ow) * p.G + g) * p.Cpo +
              b_co[i];
      cp_async_16(smem_u32(b_row + chunk * 4), ptr, valid);
    }
  };

  float acc[2][4][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nf = 0; nf < 4; ++nf)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][nf][e] = 0.f;

  const int warp_m = warp & 1, warp_n = warp >> 1;
  const int gq = lane >> 2, tq = lane & 3;

  // Each stage's products are summed in stage_acc (inside the tensor cores), then added
  // to acc with round-to-nearest fp32 adds: the tensor cores truncate their accumulation,
  // which would bias a running sum over this kernel's very long K.
  float stage_acc[2][4][4];
  auto mma_all = [&](uint32_t (&af)[2][4], uint32_t (&bf)[4][2]) {
    auto& acc = stage_acc;
    if constexpr (Cfg::kSplit) {
      uint32_t a_big[2][4], a_small[2][4], b_big[4][2], b_small[4][2];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int e = 0; e < 4; ++e) tf32_split(af[mi][e], a_big[mi][e], a_small[mi][e]);
#pragma unroll
      for (int nf = 0; nf < 4; ++nf)
#pragma unroll
        for (int e = 0; e < 2; ++e) tf32_split(bf[nf][e], b_big[nf][e], b_small[nf][e]);
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int nf = 0; nf < 4; ++nf) {
          Cfg::Mma::mma(acc[mi][nf], a_small[mi], b_big[nf]);
          Cfg::Mma::mma(acc[mi][nf], a_big[mi], b_small[nf]);
          Cfg::Mma::mma(acc[mi][nf], a_big[mi], b_big[nf]);
        }
    } else {
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int nf = 0; nf < 4; ++nf) Cfg::Mma::mma(acc[mi][nf], af[mi], bf[nf]);
    }
  };

  auto compute_stage = [&](int stage) {
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nf = 0; nf < 4; ++nf)
#pragma unroll
        for (int e = 0; e < 4; ++e) stage_acc[mi][nf][e] = 0.f;
    const uint32_t* a_st = sA + stage * kBK * L::kLdA;
    const uint32_t* b_st = sB + stage * kBK * L::kLdB;
    if constexpr (sizeof(T) == 4) {
#pragma unroll
      for (int ks = 0; ks < kBK / 8; ++ks) {
        const uint32_t* a0 = a_st + (ks * 8 + tq) * L::kLdA + warp_m * 32 + gq;
        const uint32_t* b0 = b_st + (ks * 8 + tq) * L::kLdB + warp_n * 32 + gq;
        uint32_t af[2][4], bf[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          af[mi][0] = a0[mi * 16];
          af[mi][1] = a0[mi * 16 + 8];
          af[mi][2] = a0[4 * L::kLdA + mi * 16];
          af[mi][3] = a0[4 * L::kLdA + mi * 16 + 8];
        }
#pragma unroll
        for (int nf = 0; nf < 4; ++nf) {
          bf[nf][0] = b0[nf * 8];
          bf[nf][1] = b0[4 * L::kLdB + nf * 8];
        }
        mma_all(af, bf);
      }
    } else {
      const uint32_t a_base = smem_u32(a_st), b_base = smem_u32(b_st);
#pragma unroll
      for (int ks = 0; ks < kBK / 16; ++ks) {
        uint32_t af[2][4], bf[4][2];
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          const int k = ks * 16 + (lane & 7) + 8 * (lane >> 4);
          const int m = warp_m * 32 + mi * 16 + 8 * ((lane >> 3) & 1);
          ldmatrix_x4_trans(af[mi], a_base + k * L::kLdA * 4 + m * 2);
        }
#pragma unroll
        for (int np = 0; np < 2; ++np) {
          const int k = ks * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
          const int n = warp_n * 32 + np * 16 + 8 * (lane >> 4);
          uint32_t r[4];
          ldmatrix_x4_trans(r, b_base + k * L::kLdB * 4 + n * 2);
          bf[2 * np][0] = r[0];
          bf[2 * np][1] = r[1];
          bf[2 * np + 1][0] = r[2];
          bf[2 * np + 1][1] = r[3];
        }
        mma_all(af, bf);
      }
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nf = 0; nf < 4; ++nf)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mi][nf][e] += stage_acc[mi][nf][e];
  };

  cp_async_pipeline<kStages>(KT, load_stage, compute_stage);

  // partial tile of this split -> workspace
  float* ws = p.ws + (int64_t(blockIdx.z) * p.G + g) * p.Mpad * int64_t(p.Ntot);
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int m = m0 + warp_m * 32 + mi * 16 + hh * 8 + gq;
#pragma unroll
      for (int nf = 0; nf < 4; ++nf)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = n0 + warp_n * 32 + nf * 8 + 2 * tq + e;
          if (n < p.Ntot) ws[int64_t(m) * p.Ntot + n] = acc[mi][nf][hh * 2 + e];
        }
    }
}

struct WeightGradReduce {
  int64_t st[5];  // strides of grad_w (ci, co, kd, kh, kw)
  int G, Cin_g, Cout_g, Cpo, T, kh, kw, Mpad, Ntot, splits;
};

template <typename T>
__global__ void weight_grad_reduce_kernel(const float* __restrict__ ws, T* __restrict__ grad_w, WeightGradReduce r) {
  const int64_t total = int64_t(r.G) * r.Cin_g * r.Cout_g * r.T;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int tap = static_cast<int>(i % r.T);
    int64_t rest = i / r.T;
    const int co = static_cast<int>(rest % r.Cout_g);
    rest /= r.Cout_g;
    const int ci = static_cast<int>(rest % r.Cin_g);
    const int g = static_cast<int>(rest / r.Cin_g);
    const int64_t col = int64_t(tap) * r.Cpo + co;
    float sum = 0.f;
    for (int s = 0; s < r.splits; ++s) sum += ws[((int64_t(s) * r.G + g) * r.Mpad + ci) * r.Ntot + col];
    const int kd = tap / (r.kh * r.kw), khw = tap - kd * r.kh * r.kw;
    grad_w[(int64_t(g) * r.Cin_g + ci) * r.st[0] + co * r.st[1] + kd * r.st[2] + (khw / r.kw) * r.st[3] +
           (khw % r.kw) * r.st[4]] = from_float<T>(sum);
  }
}

}  // namespace

void launch_weight_grad(const ConvTransposeGeometry& geo, const void* x_packed, int64_t Cpx, const void* gout_packed,
                        int64_t Cpo, Tensor& grad_w, MathMode mode, cudaStream_t stream) {
  WeightGradParams p{};
  p.x = x_packed;
  p.gout = gout_packed;
  p.G = static_cast<int>(geo.G);
  p.Cpx = static_cast<int>(Cpx);
  p.Cpo = static_cast<int>(Cpo);
  p.Ntot = static_cast<int>(geo.taps() * Cpo);
  const int64_t m_tiles = ceil_div(geo.Cin_g, kBM);
  p.Mpad = static_cast<int>(m_tiles * kBM);
  for (int d = 0; d < 3; ++d) {
    p.in_dims[d] = static_cast<int>(geo.in[d]);
    p.out_dims[d] = static_cast<int>(geo.out[d]);
    p.k[d] = static_cast<int>(geo.k[d]);
    p.stride[d] = static_cast<int>(geo.stride[d]);
    p.pad[d] = static_cast<int>(geo.pad[d]);
    p.dil[d] = static_cast<int>(geo.dil[d]);
  }
  p.Ktot = geo.N * geo.in_positions();
  const int64_t n_tiles = ceil_div(p.Ntot, kBN);
  const int64_t tiles = n_tiles * m_tiles * geo.G;
  STD_TORCH_CHECK(n_tiles <= INT_MAX && m_tiles * geo.G <= 65535, "convt3d: weight too large for the weight-gradient kernel");
  const int sms = device_info(grad_w.get_device_index()).sm_count;
  // Enough blocks to fill the GPU twice; each split keeps at least 4 stages of work.
  // An empty batch has no splits: the reduction then writes zeros.
  int64_t splits = 0;
  p.k_per_split = kBK;
  if (p.Ktot > 0) {
    splits = std::max<int64_t>(1, std::min<int64_t>(ceil_div(2 * sms, tiles), ceil_div(p.Ktot, 4 * kBK)));
    splits = std::min<int64_t>(splits, 65535);
    p.k_per_split = round_up(ceil_div(p.Ktot, splits), kBK);
    splits = ceil_div(p.Ktot, p.k_per_split);
  }

  Tensor ws = new_tensor(grad_w, {std::max<int64_t>(1, splits * geo.G * p.Mpad * p.Ntot)}, ScalarType::Float);
  p.ws = static_cast<float*>(ws.mutable_data_ptr());

  WeightGradReduce r{};
  for (int i = 0; i < 5; ++i) r.st[i] = grad_w.stride(i);
  r.G = p.G;
  r.Cin_g = static_cast<int>(geo.Cin_g);
  r.Cout_g = static_cast<int>(geo.Cout_g);
  r.Cpo = p.Cpo;
  r.T = static_cast<int>(geo.taps());
  r.kh = static_cast<int>(geo.k[1]);
  r.kw = static_cast<int>(geo.k[2]);
  r.Mpad = p.Mpad;
  r.Ntot = p.Ntot;
  r.splits = static_cast<int>(splits);

  dispatch_math(mode, [&](auto cfg) {
    using Cfg = decltype(cfg);
    using T = typename Cfg::T;
    if (splits > 0) {
      auto kernel = weight_grad_kernel<Cfg>;
      set_dynamic_smem(kernel, WgradLayout<T>::kSmemBytes);
      kernel<<<dim3(static_cast<unsigned>(n_tiles), static_cast<unsigned>(m_tiles * geo.G),
                    static_cast<unsigned>(splits)),
               kThreads, WgradLayout<T>::kSmemBytes, stream>>>(p);
      CONVT3D_CHECK_LAUNCH();
    }
    const int64_t total = geo.G * geo.Cin_g * geo.Cout_g * geo.taps();
    const int blocks = static_cast<int>(std::min<int64_t>(ceil_div(total, 256), 65535));
    weight_grad_reduce_kernel<T><<<blocks, 256, 0, stream>>>(p.ws, static_cast<T*>(grad_w.mutable_data_ptr()), r);
    CONVT3D_CHECK_LAUNCH();
  });
}

}  // namespace convt3d
