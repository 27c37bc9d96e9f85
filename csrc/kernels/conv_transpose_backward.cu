// CUDA implementation of the op convt3d::conv_transpose3d_backward: gradients
// of a transposed conv from the gradient of its (pre-activation) output.
//   grad_x: a direct conv of grad_out with the same weights (the implicit-GEMM
//           kernel in its direct-conv direction),
//   grad_w: the split-K weight-gradient GEMM,
//   grad_b: per-channel sums of grad_out.
#include <torch/csrc/stable/library.h>

#include "common/math_mode.cuh"
#include "common/conv_args.h"
#include "common/reduce.cuh"
#include "implicit_gemm.h"
#include "pack.h"
#include "weight_grad.h"

namespace convt3d {
namespace {

// ---- bias gradient: per-channel sums of grad_out, deterministic ----------------

// grid (C, splits): block (c, split) sums channel c over all samples and one range
// of positions; t's spatial dims are collapsible to one stride sS.
template <typename T>
__global__ void __launch_bounds__(256) channel_sums_partial_kernel(const T* __restrict__ t, float* __restrict__ partial,
                                                                 int64_t N, int64_t S, int64_t sN, int64_t sC,
                                                                 int64_t sS, int64_t per_split) {
  const int64_t c = blockIdx.x;
  const int64_t beg = int64_t(blockIdx.y) * per_split;
  const int64_t end = beg + per_split < S ? beg + per_split : S;
  float sum = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    const T* row = t + n * sN + c * sC;
    for (int64_t pos = beg + threadIdx.x; pos < end; pos += 256) sum += to_float(row[pos * sS]);
  }
  sum = block_sum<256>(sum);
  if (threadIdx.x == 0) partial[int64_t(blockIdx.y) * gridDim.x + c] = sum;
}

template <typename T>
__global__ void channel_sums_final_kernel(const float* __restrict__ partial, T* __restrict__ out, int splits, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sum = 0.f;
  for (int s = 0; s < splits; ++s) sum += partial[int64_t(s) * C + c];
  out[c] = from_float<T>(sum);
}

// out[c] = sum over n, d, h, w of t[n, c, d, h, w] (t 5-D, out 1-D of t's dtype).
void channel_sums(const Tensor& t_in, Tensor& out, cudaStream_t stream) {
  const bool collapsible = t_in.stride(2) == t_in.size(3) * t_in.stride(3) &&
                           t_in.stride(3) == t_in.size(4) * t_in.stride(4);
  const Tensor t = collapsible ? t_in : torch::stable::contiguous(t_in);
  const int64_t N = t.size(0), C = t.size(1), S = t.size(2) * t.size(3) * t.size(4);
  const int sms = device_info(t.get_device_index()).sm_count;
  const int64_t splits = std::max<int64_t>(1, std::min<int64_t>(ceil_div(4 * sms, C), ceil_div(S, 1024)));
  const int64_t per_split = ceil_div(S, splits);
  Tensor partial = new_tensor(t, {splits * C}, ScalarType::Float);
  dispatch_float_type(t.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    channel_sums_partial_kernel<T><<<dim3(static_cast<unsigned>(C), static_cast<unsigned>(splits)), 256, 0, stream>>>(
        static_cast<const T*>(t.const_data_ptr()), static_cast<float*>(partial.mutable_data_ptr()), N, S, t.stride(0),
        t.stride(1), t.stride(4), per_split);
    CONVT3D_CHECK_LAUNCH();
    channel_sums_final_kernel<T><<<static_cast<unsigned>(ceil_div(C, 256)), 256, 0, stream>>>(
        static_cast<const float*>(partial.const_data_ptr()), static_cast<T*>(out.mutable_data_ptr()),
        static_cast<int>(splits), static_cast<int>(C));
    CONVT3D_CHECK_LAUNCH();
  });
}

// ---- the op --------------------------------------------------------------------

std::tuple<Tensor, Tensor, Tensor> conv_transpose3d_backward_cuda(Tensor grad_out, Tensor x, Tensor weight,
                                                                  IntList stride, IntList padding,
                                                                  IntList output_padding, IntList dilation,
                                                                  int64_t groups, bool need_x_grad,
                                                                  bool need_weight_grad, bool need_bias_grad,
                                                                  bool allow_tf32) {
  const char* op = "convt3d.conv_transpose3d_backward";
  const auto geo =
      check_conv_transpose_args(x, weight, std::nullopt, stride, padding, output_padding, dilation, groups, op);
  check_float_tensor(grad_out, op, "grad_out", x, "x");
  const int64_t expected[5] = {geo.N, geo.Cout, geo.out[0], geo.out[1], geo.out[2]};
  STD_TORCH_CHECK(grad_out.dim() == 5, op, ": 'grad_out' must be 5-D");
  for (int d = 0; d < 5; ++d)
    STD_TORCH_CHECK(grad_out.size(d) == expected[d], op, ": 'grad_out' has size ", grad_out.size(d), " in dimension ",
                    d, ", expected ", expected[d], " (the shape of the forward output)");

  torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  cudaStream_t stream = current_stream(x);
  const MathMode mode = math_mode(x.scalar_type(), allow_tf32);
  const bool round = mode == MathMode::kTf32;
  const ScalarType dtype = x.scalar_type();

  Tensor gx = need_x_grad ? new_tensor(x, {geo.N, geo.Cin, geo.in[0], geo.in[1], geo.in[2]}, dtype,
                                             is_channels_last_3d(x))
                          : empty_on(x, dtype);
  Tensor gw = need_weight_grad ? new_tensor(x, {geo.Cin, geo.Cout_g, geo.k[0], geo.k[1], geo.k[2]}, x.scalar_type())
                               : empty_on(x, dtype);
  Tensor gb = need_bias_grad ? new_tensor(x, {geo.Cout}, x.scalar_type()) : empty_on(x, dtype);
  if (!need_x_grad && !need_weight_grad && !need_bias_grad) return {gx, gw, gb};

  if (need_bias_grad) channel_sums(grad_out, gb, stream);
  if (!need_x_grad && !need_weight_grad) return {gx, gw, gb};

  // grad_out, channels innermost, per group padded: the operand of both GEMMs
  const int64_t Cpo = padded_channels(geo.Cout_g);
  Tensor gp = new_tensor(x, {std::max<int64_t>(1, geo.N * geo.out_positions() * geo.G * Cpo)}, x.scalar_type());
  pack_activation(grad_out, gp.mutable_data_ptr(), geo.G, Cpo, round, stream);

  if (need_x_grad && geo.N > 0) {
    Tensor wp = new_tensor(x, {geo.G * geo.Cin_g * geo.taps() * Cpo}, x.scalar_type());
    pack_weight(weight, wp.mutable_data_ptr(), geo.G, Cpo, WeightRows::kInChannels, round, stream);
    GatherConvParams p{};
    p.src = gp.const_data_ptr();
    p.wpk = wp.const_data_ptr();
    p.bias = nullptr;
    p.out = gx.mutable_data_ptr();
    for (int i = 0; i < 5; ++i) p.os[i] = gx.stride(i);
    p.N = static_cast<int>(geo.N);
    p.G = static_cast<int>(geo.G);
    p.Cp = static_cast<int>(Cpo);
    p.rows = static_cast<int>(geo.Cin_g);
    p.T = static_cast<int>(geo.taps());
    for (int d = 0; d < 3; ++d) {
      p.in_dims[d] = static_cast<int>(geo.out[d]);  // the gather reads grad_out ...
      p.out_dims[d] = static_cast<int>(geo.in[d]);  // ... and writes at the positions of x
      p.k[d] = static_cast<int>(geo.k[d]);
      p.out_mul[d] = static_cast<int>(geo.stride[d]);
      p.base[d] = -static_cast<int>(geo.pad[d]);
      p.tap_step[d] = static_cast<int>(geo.dil[d]);
      p.in_div[d] = 1;
    }
    p.relu = 0;
    launch_gather_conv(p, mode, stream);
  }
  if (need_weight_grad) {
    const int64_t Cpx = padded_channels(geo.Cin_g);
    Tensor xp = new_tensor(x, {std::max<int64_t>(1, geo.N * geo.in_positions() * geo.G * Cpx)}, x.scalar_type());
    pack_activation(x, xp.mutable_data_ptr(), geo.G, Cpx, round, stream);
    launch_weight_grad(geo, xp.const_data_ptr(), Cpx, gp.const_data_ptr(), Cpo, gw, mode, stream);
  }
  return {gx, gw, gb};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(convt3d, CUDA, m) {
  m.impl("conv_transpose3d_backward", TORCH_BOX(&conv_transpose3d_backward_cuda));
}

}  // namespace convt3d
