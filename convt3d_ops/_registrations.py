"""Registers the Python-side kernels of the ops defined in csrc/bindings.cpp:
CPU kernels (_cpu), fake kernels (_fake) and autograd formulas (_autograd)."""
import torch

from . import _autograd, _cpu, _fake

_OPS = ("conv_transpose3d_relu", "conv_transpose3d_backward", "group_norm", "group_norm_backward", "fused_forward")

for _name in _OPS:
    torch.library.register_kernel(f"convt3d::{_name}", "cpu", getattr(_cpu, _name))
    torch.library.register_fake(f"convt3d::{_name}", getattr(_fake, _name))
torch.library.register_kernel("convt3d::forward_path", "cpu", _cpu.forward_path)

_autograd.register()
