"""Property-based fuzzing against float64: random valid shapes and parameters, forward and
backward, on the CPU and on CUDA (whichever kernel path the draw lands on).

A fixed-seed profile of CONVT3D_FUZZ_EXAMPLES cases (default 300) per device runs in the
suite; set the variable higher for a longer run on a GPU.
"""
import os

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convt3d_ops
from convt3d_ops._checks import conv_transpose_output_size
from cases import Case
from helpers import (ALL_DEVICES, GRAD_FACTOR, allow_tf32, assert_close_class, precision_class, reference_chain, report,
                     to64)

EXAMPLES = int(os.environ.get("CONVT3D_FUZZ_EXAMPLES", "300"))
PATHS_SEEN = {}  # device:path:dtype -> number of cases


@st.composite
def problems(draw):
    # half the draws are shaped for the Hopper kernel's GEMM forms (ungrouped, dilation 1: stride 1;
    # kernel a multiple of the stride with the output too; kernel == stride with kW == 2 and no
    # padding), so they are not left to chance
    flavor = draw(st.sampled_from(["any", "any", "any", "direct", "phases", "subpixel"]))
    groups = 1 if flavor != "any" else draw(st.sampled_from([1, 1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 96 // groups if groups > 1 else 96))
    c_out = groups * draw(st.integers(1, 32))
    divisors = [d for d in range(1, c_out + 1) if c_out % d == 0]
    num_groups = draw(st.sampled_from(divisors))
    size = tuple(draw(st.integers(1, 20)) for _ in range(3))
    if flavor == "subpixel":
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), 2)
        stride, dilation, padding, output_padding = kernel, (1, 1, 1), (0, 0, 0), (0, 0, 0)
    elif flavor == "phases":
        stride = tuple(draw(st.sampled_from([1, 2, 2, 3])) for _ in range(3))
        kernel = tuple(s * draw(st.integers(1, 5 // s)) for s in stride)
        dilation = (1, 1, 1)
        padding = tuple(draw(st.integers(0, k - 1)) for k in kernel)
        output_padding = tuple(2 * p % s for p, s in zip(padding, stride))  # output a multiple of the stride
    else:
        kernel = tuple(draw(st.integers(1, 5)) for _ in range(3))
        stride = (1, 1, 1) if flavor == "direct" else tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(3))
        dilation = (1, 1, 1) if flavor == "direct" else tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(3))
        padding = tuple(draw(st.integers(0, dilation[d] * (kernel[d] - 1))) for d in range(3))
        output_padding = tuple(draw(st.integers(0, max(stride[d], dilation[d]) - 1)) for d in range(3))
    out = [conv_transpose_output_size(size[d], kernel[d], stride[d], padding[d], output_padding[d], dilation[d])
           for d in range(3)]
    assume(all(o >= 1 for o in out))
    n = draw(st.integers(1, 8))
    assume(n * (c_out // num_groups) * out[0] * out[1] * out[2] > 1)  # one-value groups are rejected (as PyTorch)
    # keep the float64 reference affordable on a 2-core CPU
    assume(n * c_out * out[0] * out[1] * out[2] <= 150_000 and n * c_in * size[0] * size[1] * size[2] <= 150_000)
    return Case("fuzz", n=n, c_in=c_in, c_out=c_out, size=size, kernel=kernel, stride=stride, padding=padding,
                output_padding=output_padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                num_groups=num_groups, eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])), affine=draw(st.booleans()),
                layout=draw(st.sampled_from(["contiguous", "contiguous", "channels_last", "strided"])))


def natural_gradient_scales(case, refs, pre, mask, upstream):
    """The size the x and weight gradients have when nothing cancels by structure.

    GroupNorm's invariances can make those gradients vanish exactly (a group whose active
    outputs are all proportional to one input value, e.g. one input position and one channel,
    or two values per group): the reference is then ~0 and any relative error is noise. The
    classical bound on a rounded sum is relative to the sum of |terms|; this is that sum,
    computed with |upstream| * rstd * |gamma| (ReLU mask applied) as the pre-activation gradient
    and |weight| / |x|, divided by sqrt(terms per element): the size of a sum of that many
    random-sign terms. Also the GroupNorm affine gradients' natural sizes (see below)."""
    x, weight, gamma = refs[0].detach(), refs[1].detach(), refs[3]
    mask = mask.to(pre.dtype)
    n, c = pre.shape[:2]
    h = (pre.detach() * mask).reshape(n, case.num_groups, -1)
    rstd = (h.var(-1, unbiased=False) + case.eps).rsqrt().repeat_interleave(c // case.num_groups, 1)
    g = upstream.abs() * mask * rstd.reshape(n, c, 1, 1, 1)
    if gamma is not None:
        g = g * gamma.detach().abs().reshape(1, c, 1, 1, 1)
    abs_x, abs_w = x.abs().requires_grad_(), weight.abs().requires_grad_()
    out = torch.nn.functional.conv_transpose3d(abs_x, abs_w, None, **case.conv_kwargs())
    grad_x, grad_w = torch.autograd.grad(out, (abs_x, abs_w), g)
    taps = case.kernel[0] * case.kernel[1] * case.kernel[2]
    # GroupNorm's affine gradients are sums over a channel of upstream * normalized h and of
    # upstream: random-sign sums that can cancel far below their terms (one channel, one group);
    # the terms' L2 norm is their natural size (bf16 rounding of upstream alone errs at that scale)
    x_hat = torch.nn.functional.group_norm(h.reshape(pre.shape), case.num_groups, eps=case.eps)
    return {"x": grad_x.norm().item() / ((c // case.groups) * taps) ** 0.5,
            "weight": grad_w.norm().item() / (n * pre[0, 0].numel()) ** 0.5,
            "gn_weight": (upstream * x_hat).norm().item(), "gn_bias": upstream.norm().item()}


def _modes(device):
    if device == "cpu":
        return st.sampled_from([(torch.float32, True), (torch.bfloat16, True), (torch.float64, True)])
    return st.sampled_from([(torch.float32, True), (torch.float32, False), (torch.float16, True),
                            (torch.bfloat16, True)])


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_fuzz_forward_and_backward_against_float64(device):
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=problems(), mode=_modes(device), seed=st.integers(0, 2**31 - 1), backward=st.booleans())
    def check(case, mode, seed, backward):
        dtype, tf32 = mode
        inputs = case.make(dtype, device, seed)
        with allow_tf32(tf32):
            path = convt3d_ops.forward_path(inputs[0], inputs[1], **case.conv_kwargs())
        key = f"{device}:{path}:{str(dtype).split('.')[-1]}{'' if tf32 or dtype != torch.float32 else '-ieee'}"
        PATHS_SEEN[key] = PATHS_SEEN.get(key, 0) + 1
        cls = "fp32" if dtype == torch.float64 else precision_class(dtype, device, tf32)
        leaves = [t.detach().requires_grad_() if (t is not None and backward) else t for t in inputs]
        with allow_tf32(tf32):
            y = convt3d_ops.fused_forward(*leaves, num_groups=case.num_groups, eps=case.eps, **case.conv_kwargs())
            mask = convt3d_ops.conv_transpose3d_relu(*inputs[:3], **case.conv_kwargs()) > 0 if backward else None
        assert y.dtype == dtype and y.device.type == device
        refs = [to64(t, requires_grad=backward) for t in inputs]
        ref, pre = reference_chain(*refs, num_groups=case.num_groups, eps=case.eps,
                                   relu_mask=None if mask is None else mask.cpu(), return_pre=True, **case.conv_kwargs())
        if not backward:
            assert_close_class(y, ref, cls, what=f"forward {case} {dtype} tf32={tf32}")
            return
        upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        y.backward(upstream.to(device=device, dtype=dtype))
        (grad_pre,) = torch.autograd.grad(ref, pre, upstream, retain_graph=True)
        ref.backward(upstream)
        # the conv-bias gradient sums grad_pre over each channel: ||grad_pre|| is its natural size
        # (GroupNorm's shift invariance can make it vanish, e.g. one channel per group)
        scales = dict(natural_gradient_scales(case, refs, pre, mask.cpu(), upstream), bias=grad_pre.norm().item())
        for name, t, r in zip(("x", "weight", "bias", "gn_weight", "gn_bias"), leaves, refs):
            if t is not None:
                assert_close_class(t.grad, r.grad, cls, factor=GRAD_FACTOR, scale=scales.get(name, 0.0),
                                   what=f"grad of {name} {case} {dtype} tf32={tf32}")

    check()
    report(f"fuzz ({EXAMPLES} examples on {device}): cases per device:path:dtype {dict(sorted(PATHS_SEEN.items()))}")
