"""Fake (meta) kernels: output shapes, dtypes and strides without computing.

Every device returns the same layouts (the CPU kernels enforce them too):
- conv_transpose3d_relu and the input gradients of the conv follow x's memory
  format (channels_last_3d in, channels_last_3d out), like cuDNN's;
- GroupNorm outputs (and so fused_forward's y) are contiguous, like PyTorch's
  CUDA GroupNorm; h (saved for backward) and weight gradients are contiguous.
"""
from __future__ import annotations

import torch

from . import _checks


def is_channels_last(x: torch.Tensor) -> bool:
    """x is laid out channels-last (NDHWC) and not plainly contiguous (suggest_memory_format's rule)."""
    return x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


def _empty(shape, like, dtype=None, channels_last=False):
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def conv_transpose3d_relu(x, weight, bias, stride, padding, output_padding, dilation, groups, allow_tf32=True):
    shape = _checks.check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                              "convt3d.conv_transpose3d_relu")
    return _empty(shape, x, channels_last=is_channels_last(x))


def conv_transpose3d_backward(grad_out, x, weight, stride, padding, output_padding, dilation, groups, need_x_grad,
                              need_weight_grad, need_bias_grad, allow_tf32=True):
    op = "convt3d.conv_transpose3d_backward"
    shape = _checks.check_conv_transpose_args(x, weight, None, stride, padding, output_padding, dilation, groups, op)
    _checks.check_float_tensor(grad_out, "grad_out", x, "x", op)
    gx = _empty(x.shape, x, channels_last=is_channels_last(x)) if need_x_grad else x.new_empty(0)
    gw = _empty(weight.shape, x) if need_weight_grad else x.new_empty(0)
    gb = _empty((shape[1],), x) if need_bias_grad else x.new_empty(0)
    return gx, gw, gb


def group_norm(x, weight, bias, num_groups, eps):
    op = "convt3d.group_norm"
    _checks.check_group_norm_input(x, op)
    _checks.check_group_norm_params(x.shape[1], weight, bias, num_groups, eps, x, "weight", "bias", op)
    n = x.shape[0]
    _checks.check_group_norm_values(n, x.shape[1], _checks.spatial_size(x.shape), num_groups, op)
    return (_empty(x.shape, x), _empty((n, num_groups), x, torch.float32), _empty((n, num_groups), x, torch.float32))


def group_norm_backward(grad_y, x, mean, rstd, weight, num_groups, relu_input, need_x_grad, need_weight_grad,
                        need_bias_grad):
    op = "convt3d.group_norm_backward"
    _checks.check_group_norm_input(x, op)
    _checks.check_float_tensor(grad_y, "grad_y", x, "x", op)
    c = x.shape[1]
    pdtype = weight.dtype if weight is not None else x.dtype
    gx = _empty(x.shape, x) if need_x_grad else x.new_empty(0)
    gw = _empty((c,), x, pdtype) if need_weight_grad else x.new_empty(0, dtype=pdtype)
    gb = _empty((c,), x, pdtype) if need_bias_grad else x.new_empty(0, dtype=pdtype)
    return gx, gw, gb


def fused_forward(x, weight, bias, gn_weight, gn_bias, stride, padding, output_padding, dilation, groups, num_groups,
                  eps, allow_tf32=True, save_for_backward=False):
    op = "convt3d.fused_forward"
    shape = _checks.check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups, op)
    _checks.check_group_norm_params(shape[1], gn_weight, gn_bias, num_groups, eps, x, "gn_weight", "gn_bias", op)
    _checks.check_group_norm_values(shape[0], shape[1], _checks.spatial_size(shape), num_groups, op)
    n = shape[0]
    y = _empty(shape, x)
    h = _empty(shape, x) if save_for_backward else x.new_empty(0)
    return y, h, _empty((n, num_groups), x, torch.float32), _empty((n, num_groups), x, torch.float32)
