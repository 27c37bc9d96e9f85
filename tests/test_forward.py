"""Forward results of every op against a float64 reference, every parameter set,
dtype and device; fresh random inputs per check, poisoned output memory on CUDA."""
import pytest
import torch

import convt3d_ops
from cases import CASE_IDS, CASES
from helpers import (ALL_DEVICES, allow_tf32, assert_close_class, poison_cuda_cache, precision_class, reference_chain,
                     reference_group_stats, seed_for, to64)

MODES = [(torch.float32, True, "fp32-tf32"), (torch.float32, False, "fp32-ieee"), (torch.float16, True, "fp16"),
         (torch.bfloat16, True, "bf16")]
# (device, dtype, allow_tf32) combinations; the CPU path has no TF32 mode, so no separate fp32-ieee run there
DEVICE_MODES = [pytest.param(dev.values[0], dtype, tf32, id=f"{name}-{dev.id}", marks=dev.marks)
                for dev in ALL_DEVICES for dtype, tf32, name in MODES
                if not (dev.values[0] == "cpu" and name == "fp32-ieee")]


@pytest.mark.parametrize("device,dtype,tf32", DEVICE_MODES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fused_forward_matches_float64(case, dtype, tf32, device):
    x, w, b, gw, gb = case.make(dtype, device, seed=seed_for(case.name, dtype, tf32))
    poison_cuda_cache()
    with allow_tf32(tf32):
        y, mean, rstd = convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=case.num_groups, eps=case.eps,
                                                  return_stats=True, **case.conv_kwargs())
    ref, pre = reference_chain(to64(x), to64(w), to64(b), to64(gw), to64(gb), num_groups=case.num_groups,
                               eps=case.eps, return_pre=True, **case.conv_kwargs())
    assert y.dtype == dtype and y.device.type == device
    assert mean.dtype == torch.float32 and mean.shape == (case.n, case.num_groups)
    assert rstd.dtype == torch.float32 and rstd.shape == (case.n, case.num_groups)
    cls = precision_class(dtype, device, tf32)
    assert_close_class(y, ref, cls)
    ref_mean, ref_rstd = reference_group_stats(pre, case.num_groups, case.eps)
    assert_close_class(mean, ref_mean, cls, what="mean")
    assert_close_class(rstd, ref_rstd, cls, what="rstd")


@pytest.mark.parametrize("device,dtype,tf32", DEVICE_MODES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_conv_transpose3d_relu_matches_float64(case, dtype, tf32, device):
    x, w, b, _, _ = case.make(dtype, device, seed=seed_for(case.name, "conv", dtype, tf32))
    poison_cuda_cache()
    with allow_tf32(tf32):
        out = convt3d_ops.conv_transpose3d_relu(x, w, b, **case.conv_kwargs())
    ref = torch.relu(torch.nn.functional.conv_transpose3d(to64(x), to64(w), to64(b), **case.conv_kwargs()))
    assert out.dtype == dtype
    if case.layout == "channels_last":  # the output keeps the input's memory format, like cuDNN's
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close_class(out, ref, precision_class(dtype, device, tf32))


GN_SHAPES = [
    pytest.param((3, 12, 5, 6, 7), 4, id="5d"),
    pytest.param((2, 6, 9), 3, id="3d"),
    pytest.param((2, 8, 3, 5), 8, id="4d-cpg1"),
    pytest.param((1, 32, 1, 1, 1), 4, id="one-position"),
    pytest.param((2, 16, 17, 13, 11), 2, id="odd-spatial"),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("shape,groups", GN_SHAPES)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_group_norm_matches_float64(shape, groups, dtype, device, affine):
    g = torch.Generator().manual_seed(seed_for(shape, dtype, affine))
    # an offset mean checks that the statistics are computed stably (two-pass / Welford)
    x = (torch.randn(shape, generator=g) * 2 + 3).to(device=device, dtype=dtype)
    c = shape[1]
    w = (torch.randn(c, generator=g) * 0.3 + 1).to(device=device, dtype=dtype) if affine else None
    b = (torch.randn(c, generator=g) * 0.3).to(device=device, dtype=dtype) if affine else None
    poison_cuda_cache()
    y, mean, rstd = convt3d_ops.group_norm(x, groups, w, b, eps=1e-5, return_stats=True)
    x64 = to64(x)
    ref = torch.nn.functional.group_norm(x64, groups, to64(w), to64(b), 1e-5)
    grouped = x64.reshape(shape[0], groups, -1)
    assert_close_class(y, ref, precision_class(dtype, device, False), what="y")
    assert_close_class(mean, grouped.mean(-1), "fp32", what="mean")
    assert_close_class(rstd, (grouped.var(-1, unbiased=False) + 1e-5).rsqrt(), "fp32", what="rstd")


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_zero_batch(device):
    x = torch.randn(0, 4, 3, 3, 3, device=device)
    w = torch.randn(4, 8, 3, 3, 3, device=device)
    y = convt3d_ops.fused_forward(x, w, num_groups=2)
    assert y.shape == (0, 8, 5, 5, 5)
    h = convt3d_ops.conv_transpose3d_relu(x, w)
    assert h.shape == (0, 8, 5, 5, 5)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_no_grad_forward_does_not_keep_h(device):
    """Without autograd the op returns an empty h (nothing kept for backward)."""
    x = torch.randn(1, 4, 3, 3, 3, device=device)
    w = torch.randn(4, 8, 3, 3, 3, device=device)
    y, h, mean, rstd = torch.ops.convt3d.fused_forward(x, w, None, None, None, [1] * 3, [0] * 3, [0] * 3, [1] * 3, 1, 2,
                                                       1e-5, True, False)
    assert h.numel() == 0 and y.shape == (1, 8, 5, 5, 5)
    y2, h2, _, _ = torch.ops.convt3d.fused_forward(x, w, None, None, None, [1] * 3, [0] * 3, [0] * 3, [1] * 3, 1, 2,
                                                   1e-5, True, True)
    assert h2.shape == y2.shape
    torch.testing.assert_close(h2, convt3d_ops.conv_transpose3d_relu(x, w))
