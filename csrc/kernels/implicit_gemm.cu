// The portable implicit-GEMM convolution kernel (see implicit_gemm.h).
//
// Block tile: 128 output positions (M) x BN output channels (N), K in 128-byte
// steps (32 fp32 or 64 half elements), a 3-stage cp.async pipeline, 8 warps of
// mma.sync (each warp 32 x BN/2), ldmatrix fragment loads from rows padded to
// 144 bytes (conflict-free). The epilogue adds the bias, applies the ReLU and
// stores straight to the strided output.
#include "implicit_gemm.h"

#include <climits>

namespace convt3d {
namespace {

constexpr int kThreads = 256;
constexpr int kBM = 128;
constexpr int kLdWords = 36;  // 32 data words + 4 padding words per shared-memory row
constexpr int kStages = 3;

// One spatial dimension of one output phase: which taps contribute, and where
// they read. Tap index i (0..ntaps) is kernel tap t0 + i*q and reads source
// coordinate src_first + i*src_step + j*out_mul for phase-local output j.
struct DimPhase {
  int count;  // output positions of this phase in this dimension
  int ntaps, t0, q, src_first, src_step;
};

__device__ __forceinline__ int floor_mod(int a, int b) {
  const int r = a % b;
  return r < 0 ? r + b : r;
}

__device__ __forceinline__ int gcd_int(int a, int b) {
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

__device__ __forceinline__ DimPhase make_dim_phase(int r, int out_dim, int k, int out_mul, int base, int tap_step,
                                                   int in_div) {
  DimPhase dp{};
  dp.count = r < out_dim ? (out_dim - r + in_div - 1) / in_div : 0;
  dp.t0 = -1;
  for (int t = 0; t < k; ++t) {
    if (floor_mod(r * out_mul + base + t * tap_step, in_div) == 0) {
      dp.t0 = t;
      break;
    }
  }
  if (dp.t0 < 0) {
    dp.ntaps = 0;
    dp.t0 = 0;
    dp.q = 1;
    return dp;
  }
  dp.q = in_div / gcd_int(in_div, tap_step < 0 ? -tap_step : tap_step);
  dp.ntaps = (k - 1 - dp.t0) / dp.q + 1;
  dp.src_first = (r * out_mul + base + dp.t0 * tap_step) / in_div;  // exact division
  dp.src_step = dp.q * tap_step / in_div;                           // exact division
  return dp;
}

template <class Cfg, int BN>
__global__ void __launch_bounds__(kThreads, 1) gather_conv_kernel(const GatherConvParams p) {
  using T = typename Cfg::T;
  constexpr int kCh = 16 / sizeof(T);   // elements per 16-byte chunk
  constexpr int kBK = 128 / sizeof(T);  // elements of K per stage
  constexpr int kARows = kBM / 32;      // A rows loaded per thread per stage
  constexpr int kBRows = BN / 32;       // B rows loaded per thread per stage
  constexpr int kNF = BN / 16;          // n8 fragments per warp (warp covers BN/2 channels)

  extern __shared__ __align__(128) uint32_t smem[];
  uint32_t* sA = smem;                                // [kStages][kBM][kLdWords]
  uint32_t* sB = smem + kStages * kBM * kLdWords;     // [kStages][BN][kLdWords]

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = blockIdx.z % p.G;
  int phase = blockIdx.z / p.G;
  const int rw = phase % p.in_div[2];
  phase /= p.in_div[2];
  const int rh = phase % p.in_div[1];
  const int rd = phase / p.in_div[1];
  const DimPhase pd = make_dim_phase(rd, p.out_dims[0], p.k[0], p.out_mul[0], p.base[0], p.tap_step[0], p.in_div[0]);
  const DimPhase ph = make_dim_phase(rh, p.out_dims[1], p.k[1], p.out_mul[1], p.base[1], p.tap_step[1], p.in_div[1]);
  const DimPhase pw = make_dim_phase(rw, p.out_dims[2], p.k[2], p.out_mul[2], p.base[2], p.tap_step[2], p.in_div[2]);

  const int64_t phase_positions = int64_t(pd.count) * ph.count * pw.count;
  const int64_t M = phase_positions * p.N;
  const int64_t m0 = int64_t(blockIdx.x) * kBM;
  if (m0 >= M) return;
  const int n0 = blockIdx.y * BN;
  const int K = pd.ntaps * ph.ntaps * pw.ntaps * p.Cp;
  const int KT = (K + kBK - 1) / kBK;
  const int64_t S_in = int64_t(p.in_dims[0]) * p.in_dims[1] * p.in_dims[2];
  const int HWp = ph.count * pw.count;

  // ---- per-thread A rows: batch offset and phase-local source coordinates ----
  const int chunk_col = tid & 7;
  int64_t a_batch[kARows];
  int a_d[kARows], a_h[kARows], a_w[kARows];
#pragma unroll
  for (int i = 0; i < kARows; ++i) {
    const int64_t m = m0 + (tid >> 3) + 32 * i;
    if (m < M) {
      const int64_t nb = m / phase_positions;
      const int rem = static_cast<int>(m - nb * phase_positions);
      const int jd = rem / HWp, jhw = rem - jd * HWp;
      const int jh = jhw / pw.count, jw = jhw - jh * pw.count;
      a_batch[i] = nb * S_in;
      a_d[i] = jd * p.out_mul[0];
      a_h[i] = jh * p.out_mul[1];
      a_w[i] = jw * p.out_mul[2];
    } else {
      a_batch[i] = 0;
      a_d[i] = INT_MIN / 2;  // fails the range check below
      a_h[i] = 0;
      a_w[i] = 0;
    }
  }

  const T* src = static_cast<const T*>(p.src);
  const T* wpk = static_cast<const T*>(p.wpk);

  auto load_stage = [&](int stage, int kt) {
    const int k = kt * kBK + chunk_col * kCh;
    const bool k_valid = k < K;
    const int tap = k / p.Cp, c = k - tap * p.Cp;
    const int iw = tap % pw.ntaps, t2 = tap / pw.ntaps;
    const int ih = t2 % ph.ntaps, id = t2 / ph.ntaps;
    const int sd0 = pd.src_first + id * pd.src_step;
    const int sh0 = ph.src_first + ih * ph.src_step;
    const int sw0 = pw.src_first + iw * pw.src_step;
    const int wtap = ((pd.t0 + id * pd.q) * p.k[1] + (ph.t0 + ih * ph.q)) * p.k[2] + (pw.t0 + iw * pw.q);
    uint32_t* a_dst = sA + stage * kBM * kLdWords + chunk_col * 4;
#pragma unroll
    for (int i = 0; i < kARows; ++i) {
      const int row = (tid >> 3) + 32 * i;
      const int sd = sd0 + a_d[i], sh = sh0 + a_h[i], sw = sw0 + a_w[i];
      const bool valid = k_valid && sd >= 0 && sd < p.in_dims[0] && sh >= 0 && sh < p.in_dims[1] && sw >= 0 &&
                         sw < p.in_dims[2];
      const T* ptr = src;
      if (valid)
        ptr = src + ((a_batch[i] + (int64_t(sd) * p.in_dims[1] + sh) * p.in_dims[2] + sw) * p.G + g) * p.Cp + c;
      cp_async_16(smem_u32(a_dst + row * kLdWords), ptr, valid);
    }
    uint32_t* b_dst = sB + stage * BN * kLdWords + chunk_col * 4;
#pragma unroll
    for (int j = 0; j < kBRows; ++j) {
      const int row = (tid >> 3) + 32 * j;
      const int n = n0 + row;
      const bool valid = k_valid && n < p.rows;
      const T* ptr = wpk;
      if (valid) ptr = wpk + ((int64_t(g) * p.rows + n) * p.T + wtap) * p.Cp + c;
      cp_async_16(smem_u32(b_dst + row * kLdWords), ptr, valid);
    }
  };

  float acc[2][kNF][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][nf][e] = 0.f;

  const int warp_m = warp & 3, warp_n = warp >> 2;
  // ldmatrix source rows/words of this lane (see the fragment layout in ptx.cuh)
  const int a_lane_row = warp_m * 32 + (lane & 7) + 8 * ((lane >> 3) & 1);
  const int a_lane_word = 4 * (lane >> 4);
  const int b_lane_row = warp_n * (BN / 2) + (lane & 7) + 8 * (lane >> 4);
  const int b_lane_word = 4 * ((lane >> 3) & 1);

  auto compute_stage = [&](int stage) {
    const uint32_t a_base = smem_u32(sA + stage * kBM * kLdWords);
    const uint32_t b_base = smem_u32(sB + stage * BN * kLdWords);
    // 3xTF32 keeps the four k-steps rolled: unrolled, their fragments stay live together and spill
#pragma unroll(Cfg::kSplit ? 1 : 4)
    for (int ks = 0; ks < 4; ++ks) {
      uint32_t af[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
        ldmatrix_x4(af[mi], a_base + ((a_lane_row + mi * 16) * kLdWords + ks * 8 + a_lane_word) * 4);
      uint32_t bf[kNF][2];
#pragma unroll
      for (int np = 0; np < kNF / 2; ++np) {
        uint32_t r[4];
        ldmatrix_x4(r, b_base + ((b_lane_row + np * 16) * kLdWords + ks * 8 + b_lane_word) * 4);
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
      if constexpr (Cfg::kSplit) {
        uint32_t b_big[kNF][2], b_small[kNF][2];
#pragma unroll
        for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
          for (int e = 0; e < 2; ++e) tf32_split(bf[nf][e], b_big[nf][e], b_small[nf][e]);
        // Small terms first, then the big product, into a fresh k-step sum that is added
        // to the accumulator with a round-to-nearest fp32 add: the tensor cores truncate
        // their accumulation, which over a long K biases a running sum (measured 6e-6
        // relative error on the headline problem when accumulating inside the MMAs).
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          uint32_t a_big[4], a_small[4];  // split per row block: fewer live registers
#pragma unroll
          for (int e = 0; e < 4; ++e) tf32_split(af[mi][e], a_big[e], a_small[e]);
#pragma unroll
          for (int nf = 0; nf < kNF; ++nf) {
            float step[4] = {0.f, 0.f, 0.f, 0.f};
            Cfg::Mma::mma(step, a_small, b_big[nf]);
            Cfg::Mma::mma(step, a_big, b_small[nf]);
            Cfg::Mma::mma(step, a_big, b_big[nf]);
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mi][nf][e] += step[e];
          }
        }
      } else {
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
          for (int nf = 0; nf < kNF; ++nf) Cfg::Mma::mma(acc[mi][nf], af[mi], bf[nf]);
      }
    }
  };

  cp_async_pipeline<kStages>(KT, load_stage, compute_stage);

  // ---- epilogue: bias, ReLU, strided store ----
  const int gq = lane >> 2, tq = lane & 3;
  const T* bias = static_cast<const T*>(p.bias);
  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int64_t m = m0 + warp_m * 32 + mi * 16 + hh * 8 + gq;
      if (m >= M) continue;
      const int64_t nb = m / phase_positions;
      const int rem = static_cast<int>(m - nb * phase_positions);
      const int jd = rem / HWp, jhw = rem - jd * HWp;
      const int jh = jhw / pw.count, jw = jhw - jh * pw.count;
      const int64_t row_off = nb * p.os[0] + int64_t(rd + jd * p.in_div[0]) * p.os[2] +
                              int64_t(rh + jh * p.in_div[1]) * p.os[3] + int64_t(rw + jw * p.in_div[2]) * p.os[4];
#pragma unroll
      for (int nf = 0; nf < kNF; ++nf)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = n0 + warp_n * (BN / 2) + nf * 8 + 2 * tq + e;
          if (n >= p.rows) continue;
          const int channel = g * p.rows + n;
          float v = acc[mi][nf][hh * 2 + e];
          if (bias != nullptr) v += to_float(bias[channel]);
          if (p.relu) v = relu(v);
          out[row_off + int64_t(channel) * p.os[1]] = from_float<T>(v);
        }
    }
}

template <class Cfg, int BN>
void launch_tile(const GatherConvParams& p, cudaStream_t stream) {
  {
  int64_t max_phase_positions = 1;
  int phases = 1;
  for (int d = 0; d < 3; ++d) {
    max_phase_positions *= ceil_div(p.out_dims[d], p.in_div[d]);
    phases *= p.in_div[d];
  }
  const int64_t m_tiles = ceil_div(max_phase_positions * p.N, kBM);
  const int64_t n_tiles = ceil_div(p.rows, BN);
  const int64_t z = int64_t(phases) * p.G;
  STD_TORCH_CHECK(m_tiles < INT_MAX && n_tiles <= 65535 && z <= 65535,
                  "convt3d: problem too large for the portable kernel's grid");
  const int smem = kStages * (kBM + BN) * kLdWords * 4;
  auto kernel = gather_conv_kernel<Cfg, BN>;
  set_dynamic_smem(kernel, smem);
  kernel<<<dim3(static_cast<unsigned>(m_tiles), static_cast<unsigned>(n_tiles), static_cast<unsigned>(z)), kThreads,
           smem, stream>>>(p);
  CONVT3D_CHECK_LAUNCH();
  }
}

}  // namespace

void launch_gather_conv(const GatherConvParams& p, MathMode mode, cudaStream_t stream) {
  if (p.N == 0) return;
  dispatch_math(mode, [&](auto cfg) {
    using Cfg = decltype(cfg);
    if (p.rows <= 32)
      launch_tile<Cfg, 32>(p, stream);
    else if (p.rows <= 64)
      launch_tile<Cfg, 64>(p, stream);
    else
      launch_tile<Cfg, 128>(p, stream);
  });
}

}  // namespace convt3d
