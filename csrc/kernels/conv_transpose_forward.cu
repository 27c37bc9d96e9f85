// The forward transposed conv + ReLU (see conv_transpose.h) and the CUDA
// implementation of the op convt3d::conv_transpose3d_relu.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

#include "conv_transpose.h"
#include "hopper_conv.h"
#include "implicit_gemm.h"
#include "pack.h"

namespace convt3d {

ForwardPath choose_forward_path(const ConvTransposeGeometry& geo, MathMode mode, int device_index) {
  return hopper_supports(geo, mode, device_index) ? ForwardPath::kHopper : ForwardPath::kPortable;
}

const char* forward_path_name(ForwardPath path) { return path == ForwardPath::kHopper ? "hopper" : "portable"; }

namespace {

void portable_forward(const ConvTransposeGeometry& geo, const Tensor& x, const Tensor& weight,
                      const std::optional<Tensor>& bias, Tensor& out, MathMode mode, cudaStream_t stream,
                      Workspace& ws) {
  const bool round = mode == MathMode::kTf32;
  const int64_t Cp = padded_channels(geo.Cin_g);
  const int64_t eb = x.element_size();
  const int xp_slice = ws.reserve(geo.N * geo.in_positions() * geo.G * Cp * eb);
  const int wp_slice = ws.reserve(geo.G * geo.Cout_g * geo.taps() * Cp * eb);
  ws.allocate(x);
  void* xp = ws.slice<void>(xp_slice);
  void* wp = ws.slice<void>(wp_slice);
  pack_activation(x, xp, geo.G, Cp, round, stream);
  pack_weight(weight, wp, geo.G, Cp, WeightRows::kOutChannels, round, stream);

  GatherConvParams p{};
  p.src = xp;
  p.wpk = wp;
  p.bias = bias.has_value() ? bias->const_data_ptr() : nullptr;
  p.out = out.mutable_data_ptr();
  for (int i = 0; i < 5; ++i) p.os[i] = out.stride(i);
  p.N = static_cast<int>(geo.N);
  p.G = static_cast<int>(geo.G);
  p.Cp = static_cast<int>(Cp);
  p.rows = static_cast<int>(geo.Cout_g);
  p.T = static_cast<int>(geo.taps());
  for (int d = 0; d < 3; ++d) {
    p.in_dims[d] = static_cast<int>(geo.in[d]);
    p.out_dims[d] = static_cast<int>(geo.out[d]);
    p.k[d] = static_cast<int>(geo.k[d]);
    p.out_mul[d] = 1;
    p.base[d] = static_cast<int>(geo.pad[d]);
    p.tap_step[d] = -static_cast<int>(geo.dil[d]);
    p.in_div[d] = static_cast<int>(geo.stride[d]);
  }
  p.relu = 1;
  launch_gather_conv(p, mode, stream);
}

}  // namespace

std::optional<ForwardStats> conv_transpose_relu_forward(const ConvTransposeGeometry& geo, const Tensor& x,
                                                        const Tensor& weight, const std::optional<Tensor>& bias,
                                                        const ForwardOutputs& outputs, MathMode mode,
                                                        cudaStream_t stream, Workspace& ws, int64_t stats_groups,
                                                        const GroupNormRequest* norm) {
  if (geo.N > 0 && choose_forward_path(geo, mode, x.get_device_index()) == ForwardPath::kHopper) {
    if (!outputs.channels_last)
      return hopper_conv_transpose_relu(geo, x, weight, bias, *outputs.out, outputs.allocate, mode, stream, ws,
                                        std::max<int64_t>(stats_groups, 0), norm);
    // The Hopper kernel writes NCDHW: for a channels-last output (the conv+ReLU op keeps x's memory
    // format) it writes a contiguous one, and one pass lays that out channels-last (a read and a write
    // of the output; the portable kernel took 2-4x the whole forward: NOTES v32). Channels-last is
    // [N][positions][Cout], the activation pack's layout where Cout needs no padding (a multiple of 8);
    // the pack moves it at ~3.7 TB/s, PyTorch's copy_ at ~1.3 (NOTES v32), which does the other Cout.
    STD_TORCH_CHECK(stats_groups <= 0 && norm == nullptr, "convt3d: a channels-last output has no statistics");
    Tensor dense;
    hopper_conv_transpose_relu(geo, x, weight, bias, dense, [&] {
      dense = new_tensor(x, {geo.N, geo.Cout, geo.out[0], geo.out[1], geo.out[2]}, x.scalar_type());
    }, mode, stream, ws, 0, nullptr);
    outputs.allocate();
    if (geo.Cout == padded_channels(geo.Cout))
      pack_activation(dense, outputs.out->mutable_data_ptr(), 1, geo.Cout, false, stream);
    else
      torch::stable::copy_(*outputs.out, dense);
    return std::nullopt;
  }
  outputs.allocate();
  if (geo.N == 0) {
    ws.allocate(x);
    return std::nullopt;
  }
  portable_forward(geo, x, weight, bias, *outputs.out, mode, stream, ws);
  return std::nullopt;
}

namespace {

Tensor conv_transpose3d_relu_cuda(Tensor x, Tensor weight, std::optional<Tensor> bias, IntList stride, IntList padding,
                                  IntList output_padding, IntList dilation, int64_t groups, bool allow_tf32) {
  const auto geo = check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                             "convt3d.conv_transpose3d_relu");
  STD_TORCH_CHECK(x.is_cuda(), "convt3d.conv_transpose3d_relu: 'x' must be a CUDA tensor here");
  torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  cudaStream_t stream = current_stream(x);
  Tensor out;
  const bool channels_last = is_channels_last_3d(x);
  const ForwardOutputs outputs{&out, channels_last, [&] {
    out = new_tensor(x, {geo.N, geo.Cout, geo.out[0], geo.out[1], geo.out[2]}, x.scalar_type(), channels_last);
  }};
  Workspace ws;
  conv_transpose_relu_forward(geo, x, weight, bias, outputs, math_mode(x.scalar_type(), allow_tf32), stream, ws);
  return out;
}

std::string forward_path_cuda(Tensor x, Tensor weight, IntList stride, IntList padding, IntList output_padding,
                              IntList dilation, int64_t groups, bool allow_tf32) {
  const auto geo = check_conv_transpose_args(x, weight, std::nullopt, stride, padding, output_padding, dilation,
                                             groups, "convt3d.forward_path");
  return forward_path_name(
      choose_forward_path(geo, math_mode(x.scalar_type(), allow_tf32), x.get_device_index()));
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(convt3d, CUDA, m) {
  m.impl("conv_transpose3d_relu", TORCH_BOX(&conv_transpose3d_relu_cuda));
  m.impl("forward_path", TORCH_BOX(&forward_path_cuda));
}

}  // namespace convt3d
