"""Gradients: against float64 autograd of the PyTorch reference on every device,
and torch.autograd.gradcheck in float64 on the CPU."""
import pytest
import torch

import convt3d_ops
from cases import CASE_IDS, CASES, Case
from helpers import (ALL_DEVICES, GRAD_FACTOR, allow_tf32, assert_close_class, poison_cuda_cache, precision_class,
                     reference_chain, seed_for, to64)

MODES = [(torch.float32, True, "fp32-tf32"), (torch.float32, False, "fp32-ieee"), (torch.float16, True, "fp16"),
         (torch.bfloat16, True, "bf16")]
# (device, dtype, allow_tf32) combinations; the CPU path has no TF32 mode, so no separate fp32-ieee run there
DEVICE_MODES = [pytest.param(dev.values[0], dtype, tf32, id=f"{name}-{dev.id}", marks=dev.marks)
                for dev in ALL_DEVICES for dtype, tf32, name in MODES
                if not (dev.values[0] == "cpu" and name == "fp32-ieee")]
NAMES = ("x", "weight", "bias", "gn_weight", "gn_bias")


@pytest.mark.parametrize("device,dtype,tf32", DEVICE_MODES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fused_gradients_match_float64(case, dtype, tf32, device):
    inputs = case.make(dtype, device, seed=seed_for(case.name, "grad", dtype, tf32))
    inputs = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    x, w, b, gw, gb = inputs
    poison_cuda_cache()
    with allow_tf32(tf32):
        y = convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=case.num_groups, eps=case.eps, **case.conv_kwargs())
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed_for(case.name, "up")))
    y.backward(upstream.to(device=device, dtype=dtype))

    with torch.no_grad(), allow_tf32(tf32):  # the ReLU decisions of our forward (same kernel, deterministic)
        mask = convt3d_ops.conv_transpose3d_relu(x, w, b, **case.conv_kwargs()) > 0
    ref_inputs = [to64(t, requires_grad=True) for t in inputs]
    ref, pre = reference_chain(*ref_inputs, num_groups=case.num_groups, eps=case.eps, relu_mask=mask.cpu(),
                               return_pre=True, **case.conv_kwargs())
    (grad_pre,) = torch.autograd.grad(ref, pre, upstream.double(), retain_graph=True)
    ref.backward(upstream.double())
    cls = precision_class(dtype, device, tf32)
    for name, t, r in zip(NAMES, inputs, ref_inputs):
        if t is None:
            continue
        assert t.grad is not None, f"no gradient for {name}"
        assert t.grad.dtype == dtype and t.grad.shape == t.shape
        assert_close_class(t.grad, r.grad, cls, factor=GRAD_FACTOR, what=f"grad of {name}",
                           scale=grad_pre.norm().item() if name == "bias" else 0.0)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("bias", "unet_k2_s2", "groups", "channels_last")],
                         ids=lambda c: c.name)
def test_partial_gradients(case, device):
    """Only some inputs require grad: the others get none, the asked ones are right."""
    x, w, b, gw, gb = case.make(torch.float32, device, seed=seed_for(case.name, "partial"))
    w.requires_grad_()
    gb.requires_grad_()
    with allow_tf32(False):
        y = convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=case.num_groups, eps=case.eps, **case.conv_kwargs())
        y.square().sum().backward()
    ref_w, ref_gb = to64(w, requires_grad=True), to64(gb, requires_grad=True)
    ref = reference_chain(to64(x), ref_w, to64(b), to64(gw), ref_gb, num_groups=case.num_groups, eps=case.eps,
                          **case.conv_kwargs())
    ref.square().sum().backward()
    assert x.grad is None and (b is None or b.grad is None) and gw.grad is None
    assert_close_class(w.grad, ref_w.grad, "fp32", factor=GRAD_FACTOR, what="grad of weight")
    assert_close_class(gb.grad, ref_gb.grad, "fp32", factor=GRAD_FACTOR, what="grad of gn_bias")


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_standalone_op_gradients(device):
    """conv_transpose3d_relu and group_norm on their own, through autograd."""
    case = CASES[2]  # unet_k2_s2, with bias
    x, w, b, gw, gb = [t.detach().requires_grad_() for t in case.make(torch.float32, device, seed=7)]
    with allow_tf32(False):
        h = convt3d_ops.conv_transpose3d_relu(x, w, b, **case.conv_kwargs())
        y = convt3d_ops.group_norm(h, case.num_groups, gw, gb)
        y.backward(torch.ones_like(y).cos_() * torch.linspace(-1, 1, y.numel(), device=device).reshape(y.shape))
    refs = [to64(t, requires_grad=True) for t in (x, w, b, gw, gb)]
    ref = reference_chain(*refs, num_groups=case.num_groups, eps=case.eps, **case.conv_kwargs())
    ref.backward(torch.ones_like(ref).cos_() * torch.linspace(-1, 1, ref.numel(), dtype=torch.float64).reshape(ref.shape))
    for name, t, r in zip(NAMES, (x, w, b, gw, gb), refs):
        assert_close_class(t.grad, r.grad, "fp32", factor=GRAD_FACTOR, what=f"grad of {name}")


GRADCHECK_CASES = [
    Case("base", n=1, c_in=2, c_out=4, size=(2, 3, 2), num_groups=2),
    Case("bias_k2_s2", n=1, c_in=2, c_out=4, size=(2, 2, 2), kernel=(2, 2, 2), stride=(2, 2, 2), bias=True,
         num_groups=2),
    Case("mixed", n=1, c_in=2, c_out=3, size=(2, 2, 2), kernel=(2, 3, 2), stride=(1, 2, 3), padding=(0, 1, 0),
         output_padding=(0, 1, 1), dilation=(2, 1, 1), bias=True, num_groups=3),
    Case("groups", n=2, c_in=4, c_out=4, size=(2, 2, 2), kernel=(2, 2, 2), groups=2, num_groups=2, bias=True),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=lambda c: c.name)
def test_gradcheck_float64_cpu(case):
    """The autograd formulas (and the backward ops they call) in float64 on the CPU."""
    x, w, b, gw, gb = [t.double().requires_grad_() if t is not None else None
                       for t in case.make(torch.float32, "cpu", seed=seed_for(case.name, "gradcheck"))]
    kw = case.conv_kwargs()
    tol = dict(eps=1e-6, atol=1e-6, rtol=1e-5)
    assert torch.autograd.gradcheck(
        lambda x, w, b, gw, gb: convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=case.num_groups, eps=case.eps,
                                                          **kw), (x, w, b, gw, gb), **tol)
    assert torch.autograd.gradcheck(lambda x, w, b: convt3d_ops.conv_transpose3d_relu(x, w, b, **kw), (x, w, b), **tol)
    h = torch.randn((2, case.c_out, 3, 2, 2), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, gw, gb: convt3d_ops.group_norm(h, case.num_groups, gw, gb), (h, gw, gb),
                                    **tol)


def test_backward_without_saved_h_is_a_clear_error():
    x = torch.randn(1, 2, 2, 2, 2, requires_grad=True)
    w = torch.randn(2, 4, 2, 2, 2)
    y, _, _, _ = torch.ops.convt3d.fused_forward(x, w, None, None, None, [1] * 3, [0] * 3, [0] * 3, [1] * 3, 1, 2,
                                                 1e-5, True, False)
    with pytest.raises(RuntimeError, match="save_for_backward"):
        y.sum().backward()


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_vmap_matches_a_loop_over_its_batch(device):
    # torch.vmap runs our ops through PyTorch's per-slice fallback (no batching rule): one call per slice
    x = torch.rand(3, 2, 4, 5, 4, 6, device=device)
    w = torch.randn(4, 8, 3, 3, 3, device=device) * 0.2
    gw, gb = torch.rand(8, device=device) + 0.5, torch.randn(8, device=device)
    with allow_tf32(False):
        batched = torch.vmap(lambda xi: convt3d_ops.fused_forward(xi, w, None, gw, gb, num_groups=2))(x)
        looped = torch.stack([convt3d_ops.fused_forward(xi, w, None, gw, gb, num_groups=2) for xi in x])
    assert torch.equal(batched, looped)


@pytest.mark.xfail(strict=True, raises=RuntimeError,
                   reason="PyTorch: ops with torch.library.register_autograd reject torch.func.grad / jacrev / jvp "
                          "('must override the setup_context staticmethod'; pytorch/pytorch#168393, #179652). When "
                          "this passes, PyTorch has fixed it: update README Limitations and make this a real test.")
def test_functorch_grad():
    x = torch.rand(1, 2, 3, 3, 3, dtype=torch.float64)
    w = torch.randn(2, 4, 2, 2, 2, dtype=torch.float64)
    torch.func.grad(lambda x: convt3d_ops.conv_transpose3d_relu(x, w).sum())(x)


def test_dilated_weight_gradient_on_cpu_avoids_the_onednn_bug():
    """PyTorch 2.14's oneDNN kernel returned NaN (and corrupted memory) for this weight gradient;
    the CPU path computes it without oneDNN (found by the fuzz test)."""
    kw = dict(stride=[2, 1, 1], padding=[3, 1, 4], output_padding=[0, 0, 0], dilation=[1, 1, 2], groups=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 34, 3, 18, 11, generator=g)
    w = torch.randn(34, 19, 4, 2, 4, generator=g) / 34 ** 0.5
    grad_out = torch.randn(3, 19, 2, 17, 9, generator=g)
    _, gw, _ = torch.ops.convt3d.conv_transpose3d_backward(grad_out, x, w, kw["stride"], kw["padding"],
                                                           kw["output_padding"], kw["dilation"], kw["groups"],
                                                           False, True, False)
    w64 = w.double().requires_grad_()
    torch.nn.functional.conv_transpose3d(x.double(), w64, None, **kw).backward(grad_out.double())
    assert_close_class(gw, w64.grad, "fp32")
