"""CPU implementations of the convt3d ops, composed of torch ops.

float16 / bfloat16 inputs are computed in float32 and cast back (the CPU has no
tensor cores to match, and PyTorch's CPU kernels do not cover every half-precision
case); statistics are float32 like on the GPU. Output layouts are those of the
CUDA kernels (see _fake.py), so a result does not change layout with the device.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from . import _checks
from ._fake import is_channels_last


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _up(t, dtype):
    """t in the compute dtype, contiguous (some PyTorch CPU kernels mishandle other strides)."""
    return None if t is None else t.to(dtype).contiguous()


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


def conv_transpose3d_relu(x, weight, bias, stride, padding, output_padding, dilation, groups, allow_tf32=True):
    _checks.check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                      "convt3d.conv_transpose3d_relu")
    cd = _compute_dtype(x.dtype)
    out = F.conv_transpose3d(_up(x, cd), _up(weight, cd), _up(bias, cd), list(stride), list(padding),
                             list(output_padding), groups, list(dilation))
    fmt = torch.channels_last_3d if is_channels_last(x) else torch.contiguous_format
    return torch.relu(out).to(x.dtype).contiguous(memory_format=fmt)


def conv_transpose3d_backward(grad_out, x, weight, stride, padding, output_padding, dilation, groups, need_x_grad,
                              need_weight_grad, need_bias_grad, allow_tf32=True):
    op = "convt3d.conv_transpose3d_backward"
    out_shape = _checks.check_conv_transpose_args(x, weight, None, stride, padding, output_padding, dilation, groups, op)
    _checks.check_float_tensor(grad_out, "grad_out", x, "x", op)
    if list(grad_out.shape) != out_shape:
        raise _checks.ArgumentError(f"{op}: 'grad_out' has shape {tuple(grad_out.shape)}, expected {tuple(out_shape)} "
                                    "(the shape of the forward output)")
    cd = _compute_dtype(x.dtype)
    # PyTorch 2.14's oneDNN kernel returns NaN (and corrupts memory) for the weight gradient of a
    # dilated float32 transposed conv (found by tests/test_fuzz.py); its native kernel is right
    avoid_onednn = need_weight_grad and any(d != 1 for d in dilation)
    with torch.backends.mkldnn.flags(enabled=False) if avoid_onednn else contextlib.nullcontext():
        gx, gw, gb = torch.ops.aten.convolution_backward(
            _up(grad_out, cd), _up(x, cd), _up(weight, cd), [out_shape[1]] if need_bias_grad else None, list(stride),
            list(padding), list(dilation), True, list(output_padding), groups,
            [need_x_grad, need_weight_grad, need_bias_grad])
    fmt = torch.channels_last_3d if is_channels_last(x) else torch.contiguous_format
    gx = gx.to(x.dtype).contiguous(memory_format=fmt) if need_x_grad else _empty(x)
    gw = gw.to(x.dtype).contiguous() if need_weight_grad else _empty(x)
    gb = gb.to(x.dtype) if need_bias_grad else _empty(x)
    return gx, gw, gb


def group_norm(x, weight, bias, num_groups, eps):
    op = "convt3d.group_norm"
    _checks.check_group_norm_input(x, op)
    _checks.check_group_norm_params(x.shape[1], weight, bias, num_groups, eps, x, "weight", "bias", op)
    n, c = x.shape[0], x.shape[1]
    _checks.check_group_norm_values(n, c, _checks.spatial_size(x.shape), num_groups, op)
    cd = _compute_dtype(x.dtype)
    y, mean, rstd = torch.ops.aten.native_group_norm(_up(x, cd), _up(weight, cd), _up(bias, cd), n, c, _checks.spatial_size(x.shape),
                                                    num_groups, eps)
    return y.to(x.dtype).contiguous(), mean.reshape(n, num_groups).float(), rstd.reshape(n, num_groups).float()


def group_norm_backward(grad_y, x, mean, rstd, weight, num_groups, relu_input, need_x_grad, need_weight_grad,
                        need_bias_grad):
    op = "convt3d.group_norm_backward"
    _checks.check_group_norm_input(x, op)
    _checks.check_group_norm_params(x.shape[1], weight, None, num_groups, 0.0, x, "weight", "bias", op)
    _checks.check_float_tensor(grad_y, "grad_y", x, "x", op)
    if grad_y.shape != x.shape:
        raise _checks.ArgumentError(f"{op}: 'grad_y' must have the shape of 'x'")
    n, c = x.shape[0], x.shape[1]
    cd = _compute_dtype(x.dtype)
    pdtype = weight.dtype if weight is not None else x.dtype
    xc = _up(x, cd)
    gx, gw, gb = torch.ops.aten.native_group_norm_backward(
        _up(grad_y, cd), xc, _up(mean, cd), _up(rstd, cd), _up(weight, cd), n, c, _checks.spatial_size(x.shape), num_groups,
        [need_x_grad, need_weight_grad, need_bias_grad])
    if need_x_grad:
        if relu_input:
            gx = torch.where(xc <= 0, torch.zeros_like(gx), gx)  # threshold_backward: NaN keeps its gradient
        gx = gx.to(x.dtype).contiguous()
    else:
        gx = _empty(x)
    # With N == 0 there are no samples: the parameter gradients are zero.
    gw = (gw.to(pdtype) if gw is not None else x.new_zeros(c, dtype=pdtype)) if need_weight_grad else _empty(x)
    gb = (gb.to(pdtype) if gb is not None else x.new_zeros(c, dtype=pdtype)) if need_bias_grad else _empty(x)
    return gx, gw, gb


def fused_forward(x, weight, bias, gn_weight, gn_bias, stride, padding, output_padding, dilation, groups, num_groups,
                  eps, allow_tf32=True, save_for_backward=False):
    op = "convt3d.fused_forward"
    out_shape = _checks.check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                                  op)
    _checks.check_group_norm_params(out_shape[1], gn_weight, gn_bias, num_groups, eps, x, "gn_weight", "gn_bias", op)
    _checks.check_group_norm_values(out_shape[0], out_shape[1], _checks.spatial_size(out_shape), num_groups, op)
    h = conv_transpose3d_relu(x, weight, bias, stride, padding, output_padding, dilation, groups, allow_tf32)
    y, mean, rstd = group_norm(h, gn_weight, gn_bias, num_groups, eps)
    return y, (h.contiguous() if save_for_backward else _empty(x)), mean, rstd


def forward_path(x, weight, stride, padding, output_padding, dilation, groups, allow_tf32=True):
    _checks.check_conv_transpose_args(x, weight, None, stride, padding, output_padding, dilation, groups,
                                      "convt3d.forward_path")
    return "cpu"
