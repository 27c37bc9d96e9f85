// Argument checks and the geometry of a ConvTranspose3d, on the host.
// The same rules and wording as convt3d_ops/_checks.py (the CPU and fake
// kernels), so every device rejects a bad argument with the same message.
#pragma once

#include <cmath>

#include "common/host_utils.h"

namespace convt3d {

struct ConvTransposeGeometry {
  int64_t N, Cin, Cout, G, Cin_g, Cout_g;
  int64_t in[3], out[3], k[3], stride[3], pad[3], out_pad[3], dil[3];
  int64_t taps() const { return k[0] * k[1] * k[2]; }
  int64_t in_positions() const { return in[0] * in[1] * in[2]; }
  int64_t out_positions() const { return out[0] * out[1] * out[2]; }
};

inline void check_float_tensor(const Tensor& t, const char* op, const char* name, const Tensor& ref,
                               const char* ref_name) {
  STD_TORCH_CHECK(is_supported_float(t.scalar_type()), op, ": '", name,
                  "' must be float32, float16 or bfloat16 (or float64 on the CPU), got ", dtype_name(t.scalar_type()));
  STD_TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": '", name, "' has dtype ",
                  dtype_name(t.scalar_type()), " but '", ref_name, "' has dtype ", dtype_name(ref.scalar_type()),
                  "; all tensors must have the same dtype");
  STD_TORCH_CHECK(t.is_cuda() && t.get_device_index() == ref.get_device_index(), op, ": '", name,
                  "' is on a different device than '", ref_name, "'; all tensors must be on the same device");
}

inline void check_int3(IntList v, const char* op, const char* name, int64_t min_value) {
  STD_TORCH_CHECK(v.size() == 3, op, ": '", name, "' must have 3 values (D, H, W), got ", v.size());
  for (size_t i = 0; i < 3; ++i)
    STD_TORCH_CHECK(v[i] >= min_value, op, ": '", name, "' must be >= ", min_value, " in every dimension, got ",
                    v[i]);
}

inline ConvTransposeGeometry check_conv_transpose_args(const Tensor& x, const Tensor& weight,
                                                       const std::optional<Tensor>& bias, IntList stride,
                                                       IntList padding, IntList output_padding, IntList dilation,
                                                       int64_t groups, const char* op) {
  STD_TORCH_CHECK(x.dim() == 5, op, ": 'x' must be a 5-D tensor (N, C_in, D, H, W), got ", x.dim(), "-D");
  STD_TORCH_CHECK(weight.dim() == 5, op, ": 'weight' must be a 5-D tensor (C_in, C_out / groups, kD, kH, kW), got ",
                  weight.dim(), "-D");
  STD_TORCH_CHECK(is_supported_float(x.scalar_type()), op, ": 'x' must be float32, float16 or bfloat16 (or float64 on the CPU), got ",
                  dtype_name(x.scalar_type()));
  check_float_tensor(weight, op, "weight", x, "x");
  check_int3(stride, op, "stride", 1);
  check_int3(padding, op, "padding", 0);
  check_int3(output_padding, op, "output_padding", 0);
  check_int3(dilation, op, "dilation", 1);
  STD_TORCH_CHECK(groups >= 1, op, ": 'groups' must be >= 1, got ", groups);

  ConvTransposeGeometry g{};
  g.N = x.size(0);
  g.Cin = x.size(1);
  g.G = groups;
  STD_TORCH_CHECK(g.Cin >= 1, op, ": 'x' must have at least one channel, got C_in = ", g.Cin);
  STD_TORCH_CHECK(weight.size(0) == g.Cin, op, ": 'weight' has ", weight.size(0),
                  " input channels (dim 0) but 'x' has ", g.Cin, " channels");
  STD_TORCH_CHECK(g.Cin % groups == 0, op, ": 'groups' (", groups, ") must divide the input channels (", g.Cin, ")");
  g.Cin_g = g.Cin / groups;
  g.Cout_g = weight.size(1);
  STD_TORCH_CHECK(g.Cout_g >= 1, op, ": 'weight' must have at least one output channel");
  g.Cout = g.Cout_g * groups;
  for (int d = 0; d < 3; ++d) {
    g.in[d] = x.size(2 + d);
    g.k[d] = weight.size(2 + d);
    g.stride[d] = stride[d];
    g.pad[d] = padding[d];
    g.out_pad[d] = output_padding[d];
    g.dil[d] = dilation[d];
    STD_TORCH_CHECK(g.in[d] >= 1, op, ": 'x' must have non-empty spatial dimensions, got size ", g.in[d],
                    " in dimension ", 2 + d);
    STD_TORCH_CHECK(g.k[d] >= 1, op, ": 'weight' must have non-empty kernel dimensions, got size ", g.k[d],
                    " in dimension ", 2 + d);
    STD_TORCH_CHECK(g.out_pad[d] < g.stride[d] || g.out_pad[d] < g.dil[d], op,
                    ": 'output_padding' must be smaller than either stride or dilation, got output_padding ",
                    g.out_pad[d], ", stride ", g.stride[d], ", dilation ", g.dil[d]);
    g.out[d] = (g.in[d] - 1) * g.stride[d] - 2 * g.pad[d] + g.dil[d] * (g.k[d] - 1) + g.out_pad[d] + 1;
    STD_TORCH_CHECK(g.out[d] >= 1, op, ": the output would be empty (size ", g.out[d], " in spatial dimension ", d,
                    "); reduce 'padding' or grow the input or kernel");
  }
  if (bias.has_value()) {
    check_float_tensor(*bias, op, "bias", x, "x");
    STD_TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.Cout, op, ": 'bias' must have shape (", g.Cout, ",)");
  }
  return g;
}

inline void check_group_norm_params(int64_t C, const std::optional<Tensor>& weight, const std::optional<Tensor>& bias,
                                    int64_t num_groups, double eps, const Tensor& x, const char* x_name,
                                    const char* weight_name, const char* bias_name, const char* op) {
  STD_TORCH_CHECK(num_groups >= 1, op, ": 'num_groups' must be >= 1, got ", num_groups);
  STD_TORCH_CHECK(C % num_groups == 0, op, ": 'num_groups' (", num_groups, ") must divide the number of channels (",
                  C, ")");
  STD_TORCH_CHECK(std::isfinite(eps) && eps >= 0, op, ": 'eps' must be a finite number >= 0, got ", eps);
  if (weight.has_value()) {
    check_float_tensor(*weight, op, weight_name, x, x_name);
    STD_TORCH_CHECK(weight->dim() == 1 && weight->size(0) == C, op, ": '", weight_name, "' must have shape (", C,
                    ",)");
  }
  if (bias.has_value()) {
    check_float_tensor(*bias, op, bias_name, x, x_name);
    STD_TORCH_CHECK(bias->dim() == 1 && bias->size(0) == C, op, ": '", bias_name, "' must have shape (", C, ",)");
  }
}

// As torch.nn.functional.group_norm: a group of one single value has no variance.
inline void check_group_norm_values(int64_t N, int64_t C, int64_t spatial, int64_t num_groups, const char* op) {
  STD_TORCH_CHECK(N * (C / num_groups) * spatial != 1, op,
                  ": expected more than 1 value per group (N * C / num_groups * spatial size is 1), as "
                  "torch.nn.functional.group_norm does");
}

}  // namespace convt3d
