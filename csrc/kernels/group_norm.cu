// GroupNorm forward and backward kernels (see group_norm.h), and the CUDA
// implementations of the ops convt3d::group_norm and convt3d::group_norm_backward.
#include "group_norm.h"

#include <torch/csrc/stable/library.h>

#include "common/conv_args.h"
#include "common/group_norm_moments.cuh"
#include "common/math_mode.cuh"
#include "common/reduce.cuh"

namespace convt3d {
namespace {

constexpr int kThreads = 256;

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

using Welford = WelfordPartial;

// Deterministic block merge of Welford partials: fixed shuffle pattern, then warp results in order
// (the sums: common/reduce.cuh).
__device__ __forceinline__ Welford block_merge(Welford w) {
  __shared__ Welford warp_results[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    Welford o{__shfl_down_sync(0xffffffffu, w.count, offset), __shfl_down_sync(0xffffffffu, w.mean, offset),
              __shfl_down_sync(0xffffffffu, w.m2, offset)};
    w = welford_merge(w, o);
  }
  if ((threadIdx.x & 31) == 0) warp_results[threadIdx.x >> 5] = w;
  __syncthreads();
  if (threadIdx.x == 0) {
    w = warp_results[0];
    for (int i = 1; i < kThreads / 32; ++i) w = welford_merge(w, warp_results[i]);
  }
  __syncthreads();
  return w;  // valid in thread 0
}

// ---- forward ----------------------------------------------------------------

// Partial statistics of one chunk of one group: grid (chunks, groups).
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) gn_stats_partial_kernel(const T* __restrict__ x, Welford* __restrict__ partial,
                                                                  int64_t group_len, int64_t chunk, int chunks,
                                                                  int64_t groups) {
  for (int64_t grp = blockIdx.y; grp < groups; grp += gridDim.y) {
    const T* base = x + grp * group_len;
    const int64_t begin = blockIdx.x * chunk;
    const int64_t end = begin + chunk < group_len ? begin + chunk : group_len;
    Welford w{0.f, 0.f, 0.f};
    for (int64_t i = begin + int64_t(threadIdx.x) * VEC; i < end; i += int64_t(kThreads) * VEC) {
      const Pack<T, VEC> p = *reinterpret_cast<const Pack<T, VEC>*>(base + i);
      float v[VEC], mean = 0.f;
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        v[e] = to_float(p.v[e]);
        mean += v[e];
      }
      mean *= 1.f / VEC;
      float m2 = 0.f;
#pragma unroll
      for (int e = 0; e < VEC; ++e) m2 += (v[e] - mean) * (v[e] - mean);
      w = welford_merge(w, Welford{float(VEC), mean, m2});
    }
    w = block_merge(w);
    if (threadIdx.x == 0) partial[grp * chunks + blockIdx.x] = w;
  }
}

// A warp per (sample, group): merges the group's chunk partials (group_moments), writes mean / rstd and
// the per-channel scale / shift of the affine-folded normalization.
template <typename T>
__global__ void __launch_bounds__(kThreads) gn_finalize_kernel(const Welford* __restrict__ partial, int chunks, int G,
                                                             int cpg, double eps, const T* __restrict__ gamma,
                                                             const T* __restrict__ beta, float* __restrict__ mean_out,
                                                             float* __restrict__ rstd_out, float* __restrict__ scale,
                                                             float* __restrict__ shift, int64_t groups) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31;
  for (int64_t grp = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; grp < groups; grp += int64_t(gridDim.x) * kWarps) {
    const GroupMoments m = group_moments(partial + grp * chunks, chunks, eps, lane);
    if (lane == 0) {
      mean_out[grp] = m.mean;
      rstd_out[grp] = m.rstd;
    }
    const int g = static_cast<int>(grp % G);
    for (int c = lane; c < cpg; c += 32) {  // rows (n, g * cpg + c) of the (N, C) scale and shift
      const ChannelAffine f = channel_affine(m, gamma, beta, g * cpg + c);
      scale[grp * cpg + c] = f.scale;
      shift[grp * cpg + c] = f.shift;
    }
  }
}

constexpr int kUnroll = 4;

// y = x * scale[row] + shift[row] over rows of length S: grid (row chunks, rows).
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) gn_apply_kernel(const T* x, T* y, const float* __restrict__ scale,
                                                          const float* __restrict__ shift, int64_t S, int64_t rows) {
  const int64_t stride = int64_t(gridDim.x) * kThreads * VEC;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const float a = scale[row], b = shift[row];
    const T* xr = x + row * S;
    T* yr = y + row * S;
    for (int64_t i0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * VEC; i0 < S; i0 += stride * kUnroll) {
      Pack<T, VEC> p[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (i0 + u * stride < S) p[u] = *reinterpret_cast<const Pack<T, VEC>*>(xr + i0 + u * stride);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (i0 + u * stride < S) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) p[u].v[e] = normalize_value(p[u].v[e], a, b);
          *reinterpret_cast<Pack<T, VEC>*>(yr + i0 + u * stride) = p[u];
        }
    }
  }
}

// ---- backward ---------------------------------------------------------------

// Per (n, c) row, per chunk: sum(dy * x) and sum(dy). grid (chunks, rows).
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) gn_bwd_row_sums_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                                 float* __restrict__ ds_part,
                                                                 float* __restrict__ db_part, int64_t S, int64_t chunk,
                                                                 int chunks, int64_t rows) {
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t begin = blockIdx.x * chunk;
    const int64_t end = begin + chunk < S ? begin + chunk : S;
    float ds = 0.f, db = 0.f;
    for (int64_t i = begin + int64_t(threadIdx.x) * VEC; i < end; i += int64_t(kThreads) * VEC) {
      const Pack<T, VEC> g = *reinterpret_cast<const Pack<T, VEC>*>(dy + row * S + i);
      const Pack<T, VEC> v = *reinterpret_cast<const Pack<T, VEC>*>(x + row * S + i);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const float gv = to_float(g.v[e]);
        ds += gv * to_float(v.v[e]);
        db += gv;
      }
    }
    ds = block_sum<kThreads>(ds);
    db = block_sum<kThreads>(db);
    if (threadIdx.x == 0) {
      ds_part[row * chunks + blockIdx.x] = ds;
      db_part[row * chunks + blockIdx.x] = db;
    }
  }
}

// Per (n, g): the channel sums ds, db and the coefficients of
// dx = rstd*gamma*dy + c2*x + c3. One block per group.
template <typename T>
__global__ void __launch_bounds__(kThreads) gn_bwd_coeffs_kernel(const float* __restrict__ ds_part,
                                                               const float* __restrict__ db_part, int chunks, int G,
                                                               int cpg, int64_t S, const T* __restrict__ gamma,
                                                               const float* __restrict__ mean,
                                                               const float* __restrict__ rstd, float* __restrict__ ds,
                                                               float* __restrict__ db, float* __restrict__ c2,
                                                               float* __restrict__ c3, int64_t groups) {
  for (int64_t grp = blockIdx.x; grp < groups; grp += gridDim.x) {
    const int64_t n_idx = grp / G;
    const int g = static_cast<int>(grp - n_idx * G);
    float s1 = 0.f, s2 = 0.f;
    for (int c = threadIdx.x; c < cpg; c += kThreads) {
      const int64_t row = n_idx * G * cpg + g * cpg + c;
      float dsum = 0.f, bsum = 0.f;
      for (int j = 0; j < chunks; ++j) {
        dsum += ds_part[row * chunks + j];
        bsum += db_part[row * chunks + j];
      }
      ds[row] = dsum;
      db[row] = bsum;
      const float gm = gamma ? to_float(gamma[g * cpg + c]) : 1.f;
      s1 += dsum * gm;
      s2 += bsum * gm;
    }
    s1 = block_sum<kThreads>(s1);
    s2 = block_sum<kThreads>(s2);
    if (threadIdx.x == 0) {
      const float m = mean[grp], r = rstd[grp];
      const float inv_count = 1.f / (float(cpg) * float(S));
      const float cx = (s2 * m - s1) * r * r * r * inv_count;
      c2[grp] = cx;
      c3[grp] = -cx * m - s2 * r * inv_count;
    }
  }
}

// dgamma[c] = sum_n (ds - mean*db) * rstd, dbeta[c] = sum_n db (zero when N == 0).
template <typename T>
__global__ void gn_bwd_param_grads_kernel(const float* __restrict__ ds, const float* __restrict__ db,
                                          const float* __restrict__ mean, const float* __restrict__ rstd,
                                          T* __restrict__ dgamma, T* __restrict__ dbeta, int64_t N, int C, int G) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int g = c / (C / G);
  float sg = 0.f, sb = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    const float d = ds[n * C + c], b = db[n * C + c];
    sg += (d - mean[n * G + g] * b) * rstd[n * G + g];
    sb += b;
  }
  if (dgamma) dgamma[c] = from_float<T>(sg);
  if (dbeta) dbeta[c] = from_float<T>(sb);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) gn_bwd_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                                           T* __restrict__ dx, const T* __restrict__ gamma,
                                                           const float* __restrict__ rstd, const float* __restrict__ c2,
                                                           const float* __restrict__ c3, int64_t S, int C, int G,
                                                           int64_t rows, int relu_input) {
  const int64_t stride = int64_t(gridDim.x) * kThreads * VEC;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t n_idx = row / C;
    const int c = static_cast<int>(row - n_idx * C);
    const int64_t grp = n_idx * G + c / (C / G);
    const float a = rstd[grp] * (gamma ? to_float(gamma[c]) : 1.f), bx = c2[grp], cc = c3[grp];
    for (int64_t i0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * VEC; i0 < S; i0 += stride * kUnroll) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t i = i0 + u * stride;
        if (i >= S) continue;
        const Pack<T, VEC> g = *reinterpret_cast<const Pack<T, VEC>*>(dy + row * S + i);
        const Pack<T, VEC> v = *reinterpret_cast<const Pack<T, VEC>*>(x + row * S + i);
        Pack<T, VEC> out;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const float xv = to_float(v.v[e]);
          float r = a * to_float(g.v[e]) + bx * xv + cc;
          if (relu_input && xv <= 0.f) r = 0.f;  // threshold_backward: NaN inputs keep their gradient
          out.v[e] = from_float<T>(r);
        }
        *reinterpret_cast<Pack<T, VEC>*>(dx + row * S + i) = out;
      }
    }
  }
}

// ---- launch helpers ---------------------------------------------------------

unsigned grid_y(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535)); }

// Calls fn(T{}, std::integral_constant<int, VEC>{}) with 16-byte vectors when
// every row start is aligned to them, scalar access otherwise.
template <typename Fn>
void dispatch_vec(ScalarType dtype, int64_t row_len, const void* p0, const void* p1, Fn&& fn) {
  dispatch_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kVec = 16 / sizeof(T);
    const bool aligned = row_len % kVec == 0 && reinterpret_cast<uintptr_t>(p0) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(p1) % 16 == 0;
    if (aligned)
      fn(T{}, std::integral_constant<int, kVec>{});
    else
      fn(T{}, std::integral_constant<int, 1>{});
  });
}

template <typename T>
const T* optional_ptr(const std::optional<Tensor>& t) {
  return t.has_value() ? static_cast<const T*>(t->const_data_ptr()) : nullptr;
}

}  // namespace

void group_norm_finalize(const WelfordPartial* partial, int64_t chunks, int64_t N, int64_t C, int64_t num_groups,
                         double eps, const std::optional<Tensor>& weight, const std::optional<Tensor>& bias,
                         ScalarType dtype, Tensor& mean, Tensor& rstd, float* scale, float* shift,
                         cudaStream_t stream) {
  const int64_t groups = N * num_groups;
  if (groups == 0) return;
  STD_TORCH_CHECK(chunks < (int64_t(1) << 31), "convt3d: group too large");
  dispatch_float_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t blocks = ceil_div(groups, kThreads / 32);
    gn_finalize_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(blocks, 1 << 30)), kThreads, 0, stream>>>(
        partial, static_cast<int>(chunks), static_cast<int>(num_groups), static_cast<int>(C / num_groups), eps,
        optional_ptr<T>(weight), optional_ptr<T>(bias), static_cast<float*>(mean.mutable_data_ptr()),
        static_cast<float*>(rstd.mutable_data_ptr()), scale, shift, groups);
    CONVT3D_CHECK_LAUNCH();
  });
}

void group_norm_statistics(const Tensor& x, int64_t num_groups, double eps, const std::optional<Tensor>& weight,
                           const std::optional<Tensor>& bias, Tensor& mean, Tensor& rstd, float* scale, float* shift,
                           cudaStream_t stream) {
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t groups = N * num_groups;
  if (groups == 0) return;
  const int64_t S = x.numel() / (N * C);
  const int64_t group_len = C / num_groups * S;
  constexpr int64_t kChunk = int64_t(kThreads) * 64;  // elements per partial
  const int64_t chunks = ceil_div(group_len, kChunk);
  Tensor partial = new_tensor(x, {groups * chunks * 3}, ScalarType::Float);
  Welford* part = reinterpret_cast<Welford*>(partial.mutable_data_ptr());
  dispatch_vec(x.scalar_type(), group_len, x.const_data_ptr(), x.const_data_ptr(), [&](auto tag, auto vec) {
    using T = decltype(tag);
    gn_stats_partial_kernel<T, decltype(vec)::value><<<dim3(static_cast<unsigned>(chunks), grid_y(groups)), kThreads,
                                                       0, stream>>>(static_cast<const T*>(x.const_data_ptr()), part,
                                                                    group_len, kChunk, static_cast<int>(chunks),
                                                                    groups);
    CONVT3D_CHECK_LAUNCH();
  });
  group_norm_finalize(part, chunks, N, C, num_groups, eps, weight, bias, x.scalar_type(), mean, rstd, scale, shift,
                      stream);
}

void group_norm_apply(const Tensor& x, const float* scale, const float* shift, Tensor& y, cudaStream_t stream) {
  const int64_t rows = x.size(0) * x.size(1);
  if (rows == 0) return;
  const int64_t S = x.numel() / rows;
  dispatch_vec(x.scalar_type(), S, x.const_data_ptr(), y.const_data_ptr(), [&](auto tag, auto vec) {
    using T = decltype(tag);
    constexpr int kVec = decltype(vec)::value;
    const int64_t per_block = int64_t(kThreads) * kVec * kUnroll;
    gn_apply_kernel<T, kVec><<<dim3(static_cast<unsigned>(ceil_div(S, per_block)), grid_y(rows)), kThreads, 0,
                               stream>>>(static_cast<const T*>(x.const_data_ptr()),
                                         static_cast<T*>(y.mutable_data_ptr()),
                                         scale, shift, S, rows);
    CONVT3D_CHECK_LAUNCH();
  });
}

void group_norm_backward_impl(const Tensor& grad_y, const Tensor& x, const Tensor& mean, const Tensor& rstd,
                              const std::optional<Tensor>& weight, int64_t num_groups, bool relu_input,
                              Tensor* grad_x, Tensor* grad_weight, Tensor* grad_bias, cudaStream_t stream) {
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t rows = N * C;
  const int64_t S = rows > 0 ? x.numel() / rows : 0;
  const int64_t cpg = C / num_groups;
  const int64_t groups = N * num_groups;
  constexpr int64_t kChunk = int64_t(kThreads) * 64;
  const int64_t chunks = std::max<int64_t>(1, ceil_div(S, kChunk));
  // float32 scratch: ds/db partials per chunk, ds/db per (n, c), c2/c3 per (n, g)
  Tensor scratch = new_tensor(x, {std::max<int64_t>(1, rows * chunks * 2 + rows * 2 + groups * 2)}, ScalarType::Float);
  float* ds_part = static_cast<float*>(scratch.mutable_data_ptr());
  float* db_part = ds_part + rows * chunks;
  float* ds = db_part + rows * chunks;
  float* db = ds + rows;
  float* c2 = db + rows;
  float* c3 = c2 + groups;
  const float* mean_p = static_cast<const float*>(mean.const_data_ptr());
  const float* rstd_p = static_cast<const float*>(rstd.const_data_ptr());

  dispatch_vec(x.scalar_type(), S, x.const_data_ptr(), grad_y.const_data_ptr(), [&](auto tag, auto vec) {
    using T = decltype(tag);
    constexpr int kVec = decltype(vec)::value;
    const T* gamma = optional_ptr<T>(weight);
    if (rows > 0) {
      gn_bwd_row_sums_kernel<T, kVec><<<dim3(static_cast<unsigned>(chunks), grid_y(rows)), kThreads, 0, stream>>>(
          static_cast<const T*>(grad_y.const_data_ptr()), static_cast<const T*>(x.const_data_ptr()), ds_part, db_part,
          S, kChunk, static_cast<int>(chunks), rows);
      CONVT3D_CHECK_LAUNCH();
      gn_bwd_coeffs_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(groups, 1 << 30)), kThreads, 0, stream>>>(
          ds_part, db_part, static_cast<int>(chunks), static_cast<int>(num_groups), static_cast<int>(cpg), S, gamma,
          mean_p, rstd_p, ds, db, c2, c3, groups);
      CONVT3D_CHECK_LAUNCH();
    }
    if (grad_weight != nullptr || grad_bias != nullptr) {
      T* dgamma = grad_weight ? static_cast<T*>(grad_weight->mutable_data_ptr()) : nullptr;
      T* dbeta = grad_bias ? static_cast<T*>(grad_bias->mutable_data_ptr()) : nullptr;
      gn_bwd_param_grads_kernel<T><<<static_cast<unsigned>(ceil_div(C, 256)), 256, 0, stream>>>(
          ds, db, mean_p, rstd_p, dgamma, dbeta, N, static_cast<int>(C), static_cast<int>(num_groups));
      CONVT3D_CHECK_LAUNCH();
    }
    if (grad_x != nullptr && rows > 0) {
      const int64_t per_block = int64_t(kThreads) * kVec * kUnroll;
      gn_bwd_dx_kernel<T, kVec><<<dim3(static_cast<unsigned>(ceil_div(S, per_block)), grid_y(rows)), kThreads, 0,
                                  stream>>>(
          static_cast<const T*>(grad_y.const_data_ptr()), static_cast<const T*>(x.const_data_ptr()),
          static_cast<T*>(grad_x->mutable_data_ptr()), gamma, rstd_p, c2, c3, S, static_cast<int>(C),
          static_cast<int>(num_groups), rows, relu_input ? 1 : 0);
      CONVT3D_CHECK_LAUNCH();
    }
  });
}

// ---- ops ----------------------------------------------------------------------

namespace {

void check_group_norm_input(const Tensor& x, const char* op) {
  STD_TORCH_CHECK(x.dim() >= 2, op, ": 'x' must have at least 2 dimensions (N, C, *), got ", x.dim(), "-D");
  STD_TORCH_CHECK(is_supported_float(x.scalar_type()), op, ": 'x' must be float32, float16 or bfloat16 (or float64 on the CPU), got ",
                  dtype_name(x.scalar_type()));
  STD_TORCH_CHECK(x.size(1) >= 1, op, ": 'x' must have at least one channel");
  for (int64_t d = 2; d < x.dim(); ++d)
    STD_TORCH_CHECK(x.size(d) >= 1, op, ": 'x' must have non-empty spatial dimensions, got size ", x.size(d),
                    " in dimension ", d);
}

Tensor as_contiguous(const Tensor& t) { return t.is_contiguous() ? t : torch::stable::contiguous(t); }

std::tuple<Tensor, Tensor, Tensor> group_norm_cuda(Tensor x, std::optional<Tensor> weight, std::optional<Tensor> bias,
                                                   int64_t num_groups, double eps) {
  const char* op = "convt3d.group_norm";
  check_group_norm_input(x, op);
  check_group_norm_params(x.size(1), weight, bias, num_groups, eps, x, "x", "weight", "bias", op);
  const int64_t N = x.size(0), C = x.size(1);
  check_group_norm_values(N, C, N * C > 0 ? x.numel() / (N * C) : 1, num_groups, op);
  torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  cudaStream_t stream = current_stream(x);
  const Tensor xc = as_contiguous(x);
  Tensor y = new_tensor(xc, xc.sizes(), xc.scalar_type());
  Tensor mean = new_tensor(x, {N, num_groups}, ScalarType::Float);
  Tensor rstd = new_tensor(x, {N, num_groups}, ScalarType::Float);
  Tensor scale_shift = new_tensor(x, {2, N, C}, ScalarType::Float);
  float* scale = static_cast<float*>(scale_shift.mutable_data_ptr());
  group_norm_statistics(xc, num_groups, eps, weight, bias, mean, rstd, scale, scale + N * C, stream);
  group_norm_apply(xc, scale, scale + N * C, y, stream);
  return {y, mean, rstd};
}

std::tuple<Tensor, Tensor, Tensor> group_norm_backward_cuda(Tensor grad_y, Tensor x, Tensor mean, Tensor rstd,
                                                            std::optional<Tensor> weight, int64_t num_groups,
                                                            bool relu_input, bool need_x_grad, bool need_weight_grad,
                                                            bool need_bias_grad) {
  const char* op = "convt3d.group_norm_backward";
  check_group_norm_input(x, op);
  check_group_norm_params(x.size(1), weight, std::nullopt, num_groups, 0.0, x, "x", "weight", "bias", op);
  check_float_tensor(grad_y, op, "grad_y", x, "x");
  STD_TORCH_CHECK(grad_y.dim() == x.dim(), op, ": 'grad_y' must have the shape of 'x'");
  for (int64_t d = 0; d < x.dim(); ++d)
    STD_TORCH_CHECK(grad_y.size(d) == x.size(d), op, ": 'grad_y' must have the shape of 'x'");
  const int64_t N = x.size(0), C = x.size(1);
  for (const Tensor* t : {&mean, &rstd}) {
    STD_TORCH_CHECK(t->scalar_type() == ScalarType::Float && t->numel() == N * num_groups && t->is_cuda() &&
                        t->get_device_index() == x.get_device_index(),
                    op, ": 'mean' and 'rstd' must be float32 tensors of shape (N, num_groups) on the device of 'x'");
  }
  torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  cudaStream_t stream = current_stream(x);
  const Tensor xc = as_contiguous(x), gc = as_contiguous(grad_y), mc = as_contiguous(mean), rc = as_contiguous(rstd);
  const ScalarType pdtype = weight.has_value() ? weight->scalar_type() : x.scalar_type();
  Tensor gx = need_x_grad ? new_tensor(xc, xc.sizes(), xc.scalar_type()) : empty_on(x, x.scalar_type());
  Tensor gw = need_weight_grad ? new_tensor(x, {C}, pdtype) : empty_on(x, pdtype);
  Tensor gb = need_bias_grad ? new_tensor(x, {C}, pdtype) : empty_on(x, pdtype);
  group_norm_backward_impl(gc, xc, mc, rc, weight, num_groups, relu_input, need_x_grad ? &gx : nullptr,
                           need_weight_grad ? &gw : nullptr, need_bias_grad ? &gb : nullptr, stream);
  return {gx, gw, gb};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(convt3d, CUDA, m) {
  m.impl("group_norm", TORCH_BOX(&group_norm_cuda));
  m.impl("group_norm_backward", TORCH_BOX(&group_norm_backward_cuda));
}

}  // namespace convt3d
