// CUDA implementation of the op convt3d::fused_forward:
// ConvTranspose3d -> ReLU -> GroupNorm in one call.
//
// h = relu(conv_transpose(x)) is written once (contiguous NCDHW), its GroupNorm
// statistics are reduced (in the conv epilogue on the Hopper path, by a separate
// pass otherwise), and the normalize+affine pass writes y: inside the conv kernel,
// a sample behind its tiles, where the Hopper path can (stride 1), else as passes
// after it. Without save_for_backward the normalization runs in place in h's
// buffer, so no second output-sized tensor is allocated.
#include <torch/csrc/stable/library.h>

#include "conv_transpose.h"
#include "group_norm.h"

namespace convt3d {
namespace {

std::tuple<Tensor, Tensor, Tensor, Tensor> fused_forward_cuda(Tensor x, Tensor weight, std::optional<Tensor> bias,
                                                              std::optional<Tensor> gn_weight,
                                                              std::optional<Tensor> gn_bias, IntList stride,
                                                              IntList padding, IntList output_padding,
                                                              IntList dilation, int64_t groups, int64_t num_groups,
                                                              double eps, bool allow_tf32, bool save_for_backward) {
  const char* op = "convt3d.fused_forward";
  const auto geo =
      check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups, op);
  check_group_norm_params(geo.Cout, gn_weight, gn_bias, num_groups, eps, x, "x", "gn_weight", "gn_bias", op);
  check_group_norm_values(geo.N, geo.Cout, geo.out_positions(), num_groups, op);
  torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  cudaStream_t stream = current_stream(x);

  Tensor h, y, mean, rstd;
  const ForwardOutputs outputs{&h, false, [&] {
    h = new_tensor(x, {geo.N, geo.Cout, geo.out[0], geo.out[1], geo.out[2]}, x.scalar_type());
    y = save_for_backward ? new_tensor(h, h.sizes(), h.scalar_type()) : h;
    mean = new_tensor(x, {geo.N, num_groups}, ScalarType::Float);
    rstd = new_tensor(x, {geo.N, num_groups}, ScalarType::Float);
  }};
  auto result = [&] {
    return save_for_backward ? std::make_tuple(y, h, mean, rstd)
                             : std::make_tuple(h, empty_on(x, x.scalar_type()), mean, rstd);
  };
  Workspace ws;  // scale and shift; the conv adds its packed operands and statistics partials
  const int scale_slice = ws.reserve(geo.N * geo.Cout * int64_t(sizeof(float)));
  const int shift_slice = ws.reserve(geo.N * geo.Cout * int64_t(sizeof(float)));
  const GroupNormRequest norm{&y, &gn_weight, &gn_bias, eps, &mean, &rstd};
  const auto stats = conv_transpose_relu_forward(geo, x, weight, bias, outputs,
                                                 math_mode(x.scalar_type(), allow_tf32), stream, ws, num_groups, &norm);
  if (stats.has_value() && stats->normalized) return result();  // the conv kernel applied the GroupNorm too
  float* scale = ws.slice<float>(scale_slice);
  float* shift = ws.slice<float>(shift_slice);
  if (stats.has_value()) {  // the conv epilogue already reduced h: only the merge is left
    group_norm_finalize(stats->partial, stats->chunks, geo.N, geo.Cout, num_groups, eps, gn_weight, gn_bias,
                        x.scalar_type(), mean, rstd, scale, shift, stream);
  } else {
    group_norm_statistics(h, num_groups, eps, gn_weight, gn_bias, mean, rstd, scale, shift, stream);
  }
  group_norm_apply(h, scale, shift, y, stream);
  return result();
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(convt3d, CUDA, m) { m.impl("fused_forward", TORCH_BOX(&fused_forward_cuda)); }

}  // namespace convt3d
