"""The Python API: thin wrappers over the convt3d ops.

They accept ints or triples for the conv parameters (like torch.nn.functional),
reject a bad argument with ``ArgumentError`` (a ValueError and a RuntimeError)
naming it, follow ``torch.backends.cudnn.allow_tf32`` for float32 inputs
(PyTorch's precision policy for convolutions), follow ``torch.autocast("cuda")``
as PyTorch's own ops do, and keep the tensors that backward needs only when
autograd will need them.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _checks

__all__ = ["conv_transpose3d_relu", "group_norm", "fused_forward"]


def _conv_params(stride, padding, output_padding, dilation, op):
    return (_checks.triple(stride, "stride", op), _checks.triple(padding, "padding", op),
            _checks.triple(output_padding, "output_padding", op), _checks.triple(dilation, "dilation", op))


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _autocast_dtype(x: torch.Tensor):
    """The autocast compute dtype for x's device, or None outside autocast (or on the CPU)."""
    if isinstance(x, torch.Tensor) and x.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return None


def _cast(dtype, *tensors):
    return [t.to(dtype) if (t is not None and t.is_floating_point()) else t for t in tensors]


def _run_op(call, check_arguments, needs_grad: bool):
    """call() (the op), with ArgumentError for a bad argument.

    Every op checks all its arguments itself, with the rules and wording of _checks
    (tests/test_bad_inputs.py holds each op to that), but the CUDA kernels raise RuntimeError. So the
    Python checks run only when the op raises, to give a bad argument's error its ArgumentError type;
    run up front they took ~15 us of each call on the lent GPU machine's host (NOTES v21). Under
    torch.compile they run first, at trace time, where they cost nothing at run time.

    Where no input needs a gradient, the call goes straight to the kernels below the autograd layer:
    the op's autograd kernel (torch.library.register_autograd, Python) would only redispatch there,
    after ~9 us on our CPU (NOTES v21)."""
    if torch.compiler.is_compiling():
        check_arguments()
        return call()
    try:
        if needs_grad:
            return call()
        with torch._C._AutoDispatchBelowAutograd():
            return call()
    except Exception as op_error:  # also what a wrong type does to the call (TypeError, ValueError, ...)
        if isinstance(op_error, _checks.ArgumentError):
            raise
        error = op_error
    check_arguments()  # raises ArgumentError (outside the except block: no chained traceback)
    raise error  # not an argument's fault (out of memory, a CUDA error): the op's own error


def conv_transpose3d_relu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                          padding=0, output_padding=0, groups: int = 1, dilation=1) -> torch.Tensor:
    """relu(conv_transpose3d(x, weight, bias, ...)) in one kernel; arguments as torch.nn.functional.conv_transpose3d."""
    op = "convt3d.conv_transpose3d_relu"
    stride, padding, output_padding, dilation = _conv_params(stride, padding, output_padding, dilation, op)
    amp = _autocast_dtype(x)
    if amp is not None:  # like conv_transpose3d under autocast: computed in the autocast dtype
        x, weight, bias = _cast(amp, x, weight, bias)
    return _run_op(
        lambda: torch.ops.convt3d.conv_transpose3d_relu(x, weight, bias, stride, padding, output_padding, dilation,
                                                        groups, torch.backends.cudnn.allow_tf32),
        lambda: _checks.check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                                  op),
        _needs_grad(x, weight, bias))


def group_norm(x: torch.Tensor, num_groups: int, weight: Optional[torch.Tensor] = None,
               bias: Optional[torch.Tensor] = None, eps: float = 1e-5,
               return_stats: bool = False):
    """GroupNorm of any (N, C, *) input, arguments as torch.nn.functional.group_norm.

    With return_stats=True returns (y, mean, rstd), the statistics float32 of shape (N, num_groups)."""
    op = "convt3d.group_norm"
    if _autocast_dtype(x) is not None:  # like group_norm under autocast: computed in float32
        x, weight, bias = _cast(torch.float32, x, weight, bias)

    def check_arguments():
        _checks.check_group_norm_input(x, op)
        _checks.check_group_norm_params(x.shape[1], weight, bias, num_groups, eps, x, "weight", "bias", op)
        _checks.check_group_norm_values(x.shape[0], x.shape[1], _checks.spatial_size(x.shape), num_groups, op)

    y, mean, rstd = _run_op(lambda: torch.ops.convt3d.group_norm(x, weight, bias, num_groups, float(eps)),
                            check_arguments, _needs_grad(x, weight, bias))
    return (y, mean, rstd) if return_stats else y


def fused_forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  gn_weight: Optional[torch.Tensor] = None, gn_bias: Optional[torch.Tensor] = None, *, num_groups: int,
                  eps: float = 1e-5, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1,
                  return_stats: bool = False):
    """group_norm(relu(conv_transpose3d(x, weight, bias, ...)), num_groups, gn_weight, gn_bias, eps).

    With return_stats=True returns (y, mean, rstd) (GroupNorm statistics, float32, shape (N, num_groups))."""
    op = "convt3d.fused_forward"
    stride, padding, output_padding, dilation = _conv_params(stride, padding, output_padding, dilation, op)
    amp = _autocast_dtype(x)
    if amp is not None:
        # Under autocast PyTorch runs the conv in the autocast dtype and GroupNorm in float32 (so the
        # result is float32); the fused kernel runs in the autocast dtype with float32 statistics.
        x, weight, bias, gn_weight, gn_bias = _cast(amp, x, weight, bias, gn_weight, gn_bias)

    def check_arguments():
        shape = _checks.check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                                  op)
        _checks.check_group_norm_params(shape[1], gn_weight, gn_bias, num_groups, eps, x, "gn_weight", "gn_bias", op)
        _checks.check_group_norm_values(shape[0], shape[1], _checks.spatial_size(shape), num_groups, op)

    needs_grad = _needs_grad(x, weight, bias, gn_weight, gn_bias)
    y, _h, mean, rstd = _run_op(
        lambda: torch.ops.convt3d.fused_forward(
            x, weight, bias, gn_weight, gn_bias, stride, padding, output_padding, dilation, groups, num_groups,
            float(eps), torch.backends.cudnn.allow_tf32, needs_grad),
        check_arguments, needs_grad)
    if amp is not None:
        y = y.float()
    return (y, mean, rstd) if return_stats else y


def forward_path(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, output_padding=0, groups: int = 1,
                 dilation=1) -> str:
    """Which forward kernel fused_forward runs for these arguments: "hopper", "portable" (CUDA) or "cpu".

    conv_transpose3d_relu runs the same kernel, except for a channels_last_3d x, whose
    channels-last output only the portable kernel writes."""
    op = "convt3d.forward_path"
    stride, padding, output_padding, dilation = _conv_params(stride, padding, output_padding, dilation, op)
    return torch.ops.convt3d.forward_path(x, weight, stride, padding, output_padding, dilation, groups,
                                          torch.backends.cudnn.allow_tf32)
