"""Argument checks shared by the Python API, the CPU kernels and the fake kernels.

The rules and the wording match csrc/kernels/common/conv_args.h, so a bad
argument is rejected with the same message on every device. Errors raised here
are ``ArgumentError``, which is both a ValueError and a RuntimeError (the CUDA
kernels raise RuntimeError), so either ``except`` clause catches them.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# float64 runs on the CPU only (for gradcheck and references); the CUDA kernels are tensor-core kernels.
CPU_ONLY_DTYPES = (torch.float64,)


class ArgumentError(ValueError, RuntimeError):
    """A bad argument to a convt3d op."""


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
            torch.float64: "float64"}.get(dtype, "an unsupported dtype")


def _fail(op: str, message: str):
    raise ArgumentError(f"{op}: {message}")


def triple(value, name: str, op: str) -> list:
    """An int or a sequence of 3 ints -> a list of 3 ints."""
    if isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool):
        return [value, value, value]
    try:
        values = list(value)
    except TypeError:
        _fail(op, f"'{name}' must be an int or a sequence of 3 ints, got {value!r}")
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        _fail(op, f"'{name}' must have 3 values (D, H, W), got {len(values)}")
    return values


def check_dtype(t: torch.Tensor, name: str, op: str) -> None:
    if t.dtype in SUPPORTED_DTYPES or (t.dtype in CPU_ONLY_DTYPES and t.device.type == "cpu"):
        return
    _fail(op, f"'{name}' must be float32, float16 or bfloat16 (or float64 on the CPU), got {_dtype_name(t.dtype)}"
              + ("" if t.device.type == "cpu" else f" on {t.device.type}"))


def check_float_tensor(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str, op: str) -> None:
    if not isinstance(t, torch.Tensor):
        _fail(op, f"'{name}' must be a tensor, got {type(t).__name__}")
    check_dtype(t, name, op)
    if t.dtype != ref.dtype:
        _fail(op, f"'{name}' has dtype {_dtype_name(t.dtype)} but '{ref_name}' has dtype {_dtype_name(ref.dtype)}; "
                  "all tensors must have the same dtype")
    if t.device != ref.device:
        _fail(op, f"'{name}' is on a different device than '{ref_name}' ({t.device} vs {ref.device}); "
                  "all tensors must be on the same device")


def _check_int3(values: Sequence, name: str, min_value: int, op: str) -> None:
    if len(values) != 3:
        _fail(op, f"'{name}' must have 3 values (D, H, W), got {len(values)}")
    for v in values:
        if v < min_value:
            _fail(op, f"'{name}' must be >= {min_value} in every dimension, got {v}")


def conv_transpose_output_size(in_size, k, stride, pad, out_pad, dil):
    return (in_size - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1


def check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, dilation, groups, op) -> list:
    """Validates a transposed conv's arguments; returns the output shape (N, C_out, D, H, W)."""
    if not isinstance(x, torch.Tensor):
        _fail(op, f"'x' must be a tensor, got {type(x).__name__}")
    if x.dim() != 5:
        _fail(op, f"'x' must be a 5-D tensor (N, C_in, D, H, W), got {x.dim()}-D")
    if not isinstance(weight, torch.Tensor):
        _fail(op, f"'weight' must be a tensor, got {type(weight).__name__}")
    if weight.dim() != 5:
        _fail(op, f"'weight' must be a 5-D tensor (C_in, C_out / groups, kD, kH, kW), got {weight.dim()}-D")
    check_dtype(x, "x", op)
    check_float_tensor(weight, "weight", x, "x", op)
    _check_int3(stride, "stride", 1, op)
    _check_int3(padding, "padding", 0, op)
    _check_int3(output_padding, "output_padding", 0, op)
    _check_int3(dilation, "dilation", 1, op)
    if groups < 1:
        _fail(op, f"'groups' must be >= 1, got {groups}")
    n, c_in = x.shape[0], x.shape[1]
    if c_in < 1:
        _fail(op, f"'x' must have at least one channel, got C_in = {c_in}")
    if weight.shape[0] != c_in:
        _fail(op, f"'weight' has {weight.shape[0]} input channels (dim 0) but 'x' has {c_in} channels")
    if c_in % groups != 0:
        _fail(op, f"'groups' ({groups}) must divide the input channels ({c_in})")
    c_out_g = weight.shape[1]
    if c_out_g < 1:
        _fail(op, "'weight' must have at least one output channel")
    out = [n, c_out_g * groups]
    for d in range(3):
        size, k = x.shape[2 + d], weight.shape[2 + d]
        if size < 1:
            _fail(op, f"'x' must have non-empty spatial dimensions, got size {size} in dimension {2 + d}")
        if k < 1:
            _fail(op, f"'weight' must have non-empty kernel dimensions, got size {k} in dimension {2 + d}")
        s, p, op_, dl = stride[d], padding[d], output_padding[d], dilation[d]
        if not (op_ < s or op_ < dl):
            _fail(op, f"'output_padding' must be smaller than either stride or dilation, got output_padding {op_}, "
                      f"stride {s}, dilation {dl}")
        o = conv_transpose_output_size(size, k, s, p, op_, dl)
        if o < 1:
            _fail(op, f"the output would be empty (size {o} in spatial dimension {d}); reduce 'padding' or grow "
                      "the input or kernel")
        out.append(o)
    if bias is not None:
        check_float_tensor(bias, "bias", x, "x", op)
        if bias.dim() != 1 or bias.shape[0] != out[1]:
            _fail(op, f"'bias' must have shape ({out[1]},)")
    return out


def check_group_norm_input(x, op) -> None:
    if not isinstance(x, torch.Tensor):
        _fail(op, f"'x' must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        _fail(op, f"'x' must have at least 2 dimensions (N, C, *), got {x.dim()}-D")
    check_dtype(x, "x", op)
    if x.shape[1] < 1:
        _fail(op, "'x' must have at least one channel")
    for d in range(2, x.dim()):
        if x.shape[d] < 1:
            _fail(op, f"'x' must have non-empty spatial dimensions, got size {x.shape[d]} in dimension {d}")


def spatial_size(shape) -> int:
    size = 1
    for s in shape[2:]:
        size *= s
    return size


def check_group_norm_values(n, channels, spatial, num_groups, op) -> None:
    """As torch.nn.functional.group_norm: a group of one single value has no variance."""
    if n * (channels // num_groups) * spatial == 1:
        _fail(op, "expected more than 1 value per group (N * C / num_groups * spatial size is 1), as "
                  "torch.nn.functional.group_norm does")


def check_group_norm_params(channels, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], num_groups, eps,
                            x, weight_name, bias_name, op) -> None:
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, torch.SymInt)):
        _fail(op, f"'num_groups' must be an int, got {type(num_groups).__name__}")
    if num_groups < 1:
        _fail(op, f"'num_groups' must be >= 1, got {num_groups}")
    if channels % num_groups != 0:
        _fail(op, f"'num_groups' ({num_groups}) must divide the number of channels ({channels})")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, torch.SymFloat)):
        _fail(op, f"'eps' must be a number, got {type(eps).__name__}")
    # comparisons rather than math.isfinite: eps may be symbolic under torch.compile
    if not (eps >= 0 and eps < math.inf):  # also false for NaN
        _fail(op, f"'eps' must be a finite number >= 0, got {eps}")
    for t, name in ((weight, weight_name), (bias, bias_name)):
        if t is not None:
            check_float_tensor(t, name, x, "x", op)
            if t.dim() != 1 or t.shape[0] != channels:
                _fail(op, f"'{name}' must have shape ({channels},)")
