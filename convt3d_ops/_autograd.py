"""Autograd formulas of the differentiable ops, written with the backward ops
(themselves custom ops, so AOTAutograd traces them). First-order only."""
from __future__ import annotations

import torch

_ops = torch.ops.convt3d


def _grad_or_none(t: torch.Tensor, needed: bool):
    return t if needed else None


# ---- conv_transpose3d_relu ------------------------------------------------------

def _conv_relu_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, output_padding, dilation, groups, allow_tf32 = inputs
    ctx.save_for_backward(x, weight, output)
    ctx.conv = (stride, padding, output_padding, dilation, groups)
    ctx.allow_tf32 = allow_tf32


def _conv_relu_backward(ctx, grad):
    x, weight, out = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    grad_pre = torch.ops.aten.threshold_backward(grad, out, 0)  # exactly nn.ReLU's gradient
    gx, gw, gb = _ops.conv_transpose3d_backward(grad_pre, x, weight, *ctx.conv, need_x, need_w, need_b,
                                                ctx.allow_tf32)
    return (_grad_or_none(gx, need_x), _grad_or_none(gw, need_w), _grad_or_none(gb, need_b),
            None, None, None, None, None, None)


# ---- group_norm -------------------------------------------------------------------

def _group_norm_setup(ctx, inputs, output):
    x, weight, bias, num_groups, eps = inputs
    y, mean, rstd = output
    ctx.save_for_backward(x, weight, mean, rstd)
    ctx.num_groups = num_groups
    ctx.mark_non_differentiable(mean, rstd)


def _group_norm_backward(ctx, grad_y, _grad_mean, _grad_rstd):
    x, weight, mean, rstd = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = _ops.group_norm_backward(grad_y, x, mean, rstd, weight, ctx.num_groups, False, need_x, need_w,
                                          need_b)
    return _grad_or_none(gx, need_x), _grad_or_none(gw, need_w), _grad_or_none(gb, need_b), None, None


# ---- fused_forward ------------------------------------------------------------------

def _fused_setup(ctx, inputs, output):
    (x, weight, bias, gn_weight, gn_bias, stride, padding, output_padding, dilation, groups, num_groups, eps,
     allow_tf32, save_for_backward) = inputs
    y, h, mean, rstd = output
    ctx.save_for_backward(x, weight, gn_weight, h, mean, rstd)
    ctx.conv = (stride, padding, output_padding, dilation, groups)
    ctx.num_groups = num_groups
    ctx.allow_tf32 = allow_tf32
    ctx.saved_h = save_for_backward
    ctx.mark_non_differentiable(h, mean, rstd)


def _fused_backward(ctx, grad_y, _grad_h, _grad_mean, _grad_rstd):
    if not ctx.saved_h:
        raise RuntimeError(
            "convt3d.fused_forward: backward needs the ReLU output, but the op ran with save_for_backward=False. "
            "Call convt3d_ops.fused_forward (or the modules), which set it, or pass save_for_backward=True.")
    x, weight, gn_weight, h, mean, rstd = ctx.saved_tensors
    need_x, need_w, need_b, need_gw, need_gb = ctx.needs_input_grad[:5]
    need_conv = need_x or need_w or need_b
    # GroupNorm backward and the ReLU mask in one pass: the gradient w.r.t. the conv output.
    grad_pre, g_gw, g_gb = _ops.group_norm_backward(grad_y, h, mean, rstd, gn_weight, ctx.num_groups, True, need_conv,
                                                    need_gw, need_gb)
    gx = gw = gb = None
    if need_conv:
        gx, gw, gb = _ops.conv_transpose3d_backward(grad_pre, x, weight, *ctx.conv, need_x, need_w, need_b,
                                                    ctx.allow_tf32)
    return (_grad_or_none(gx, need_x), _grad_or_none(gw, need_w), _grad_or_none(gb, need_b),
            _grad_or_none(g_gw, need_gw), _grad_or_none(g_gb, need_gb)) + (None,) * 9


def register() -> None:
    torch.library.register_autograd("convt3d::conv_transpose3d_relu", _conv_relu_backward,
                                    setup_context=_conv_relu_setup)
    torch.library.register_autograd("convt3d::group_norm", _group_norm_backward, setup_context=_group_norm_setup)
    torch.library.register_autograd("convt3d::fused_forward", _fused_backward, setup_context=_fused_setup)
