// CUDA implementation of the op convt3d::fused_forward:
// ConvTranspose3d -> ReLU -> GroupNorm in one call.
//
// h = relu(conv_transpose(x)) is written once (contiguous NCDHW) and normalized into y. On
// the Hopper path the conv kernel does all of it (statistics in its epilogue, the normalize
// pass by its spare warps while later samples are computed); otherwise a statistics pass and a
// normalize pass follow the conv. Without save_for_backward the normalization runs in place in
// h's buffer, so no second output-sized tensor is allocated.
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

  Tensor h = new_tensor(x, {geo.N, geo.Cout, geo.out[0], geo.out[1], geo.out[2]}, x.scalar_type());
  Tensor y = save_for_backward ? new_tensor(h, h.sizes(), h.scalar_type()) : h;  // else in place
  Tensor mean = new_tensor(x, {geo.N, num_groups}, ScalarType::Float);
  Tensor rstd = new_tensor(x, {geo.N, num_groups}, ScalarType::Float);
  Workspace ws;  // scale and shift; the conv adds its packed operands and statistics partials
  const FusedGroupNorm gn{num_groups, eps, gn_weight, gn_bias, y, mean, rstd,
                          ws.reserve(geo.N * geo.Cout * int64_t(sizeof(float))),
                          ws.reserve(geo.N * geo.Cout * int64_t(sizeof(float)))};
  const bool normalized = conv_transpose_relu_forward(geo, x, weight, bias, h,
                                                      math_mode(x.scalar_type(), allow_tf32), stream, ws, &gn);
  if (!normalized) {  // a path without the fused GroupNorm: statistics pass, then normalize
    float* scale = ws.slice<float>(gn.scale_slice);
    float* shift = ws.slice<float>(gn.shift_slice);
    group_norm_statistics(h, num_groups, eps, gn_weight, gn_bias, mean, rstd, scale, shift, stream);
    group_norm_apply(h, scale, shift, y, stream);
  }
  if (save_for_backward) return {y, h, mean, rstd};
  return {h, empty_on(x, x.scalar_type()), mean, rstd};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(convt3d, CUDA, m) { m.impl("fused_forward", TORCH_BOX(&fused_forward_cuda)); }

}  // namespace convt3d
