// Op schemas of the convt3d namespace (the one STABLE_TORCH_LIBRARY block) and
// the Python module stub that lets `import convt3d_ops._C` load this library.
//
// CUDA kernels register themselves per file (STABLE_TORCH_LIBRARY_IMPL in
// csrc/kernels/*.cu); CPU, fake (meta) and autograd implementations are
// registered from Python (convt3d_ops/_registrations.py).
#include <Python.h>

#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY(convt3d, m) {
  // ConvTranspose3d with the ReLU applied in the same kernel.
  m.def(
      "conv_transpose3d_relu(Tensor x, Tensor weight, Tensor? bias, int[3] stride, int[3] padding, "
      "int[3] output_padding, int[3] dilation, int groups, bool allow_tf32=True) -> Tensor");
  // Gradients of a ConvTranspose3d given the gradient of its (pre-activation) output.
  // Gradients not asked for come back as empty tensors.
  m.def(
      "conv_transpose3d_backward(Tensor grad_out, Tensor x, Tensor weight, int[3] stride, int[3] padding, "
      "int[3] output_padding, int[3] dilation, int groups, bool need_x_grad, bool need_weight_grad, "
      "bool need_bias_grad, bool allow_tf32=True) -> (Tensor, Tensor, Tensor)");
  // GroupNorm over any (N, C, *spatial) input: returns (y, mean, rstd), statistics in float32, shape (N, G).
  m.def("group_norm(Tensor x, Tensor? weight, Tensor? bias, int num_groups, float eps) -> (Tensor, Tensor, Tensor)");
  // GroupNorm gradients. relu_input=True also applies the gradient of the ReLU that produced x
  // (x > 0), which turns the gradient w.r.t. x into the gradient w.r.t. the pre-activation.
  m.def(
      "group_norm_backward(Tensor grad_y, Tensor x, Tensor mean, Tensor rstd, Tensor? weight, int num_groups, "
      "bool relu_input, bool need_x_grad, bool need_weight_grad, bool need_bias_grad) -> (Tensor, Tensor, Tensor)");
  // The whole chain ConvTranspose3d -> ReLU -> GroupNorm. Returns (y, h, mean, rstd) where h is the
  // ReLU output kept for backward when save_for_backward=True (an empty tensor otherwise).
  m.def(
      "fused_forward(Tensor x, Tensor weight, Tensor? bias, Tensor? gn_weight, Tensor? gn_bias, int[3] stride, "
      "int[3] padding, int[3] output_padding, int[3] dilation, int groups, int num_groups, float eps, "
      "bool allow_tf32=True, bool save_for_backward=False) -> (Tensor, Tensor, Tensor, Tensor)");
  // Which forward kernel path fused_forward / conv_transpose3d_relu take for these arguments on
  // this device ("hopper" or "portable"); for tests, benchmarks and users who want to know.
  m.def(
      "forward_path(Tensor x, Tensor weight, int[3] stride, int[3] padding, int[3] output_padding, "
      "int[3] dilation, int groups, bool allow_tf32=True) -> str");
}

extern "C" {
// A module with no methods: importing it runs the static registrations above.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
