"""torch.library.opcheck on every op: schema, fake kernels, autograd registration and
AOT dispatch (dynamic shapes), on the CPU and on CUDA."""
import pytest
import torch

import convt3d_ops  # noqa: F401  (registers the ops)
from cases import Case
from helpers import ALL_DEVICES, seed_for

ops = torch.ops.convt3d
CASES = [
    Case("plain", n=2, c_in=4, c_out=8, size=(3, 4, 3), num_groups=2),
    Case("strided_bias", n=1, c_in=4, c_out=6, size=(3, 3, 2), kernel=(2, 3, 2), stride=(2, 1, 2), padding=(0, 1, 0),
         output_padding=(1, 0, 1), bias=True, num_groups=3),
    Case("groups_cl", n=2, c_in=4, c_out=4, size=(2, 3, 3), groups=2, num_groups=2, layout="channels_last"),
]


def _conv_args(case):
    kw = case.conv_kwargs()
    return [kw["stride"], kw["padding"], kw["output_padding"], kw["dilation"], kw["groups"]]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_opcheck_forward_ops(case, device):
    x, w, b, gw, gb = case.make(torch.float32, device, seed=seed_for(case.name, "opcheck"))
    for t in (x, w, b, gw, gb):
        if t is not None:
            t.requires_grad_()
    conv = _conv_args(case)
    torch.library.opcheck(ops.conv_transpose3d_relu.default, (x, w, b, *conv, False))
    h = torch.relu(torch.randn(case.n, case.c_out, 3, 4, 2, device=device)).requires_grad_()
    torch.library.opcheck(ops.group_norm.default, (h, gw, gb, case.num_groups, 1e-5))
    torch.library.opcheck(ops.fused_forward.default,
                          (x, w, b, gw, gb, *conv, case.num_groups, 1e-5, False, True))
    # inference form: no gradient, h not kept
    with torch.no_grad():
        torch.library.opcheck(ops.fused_forward.default,
                              (x.detach(), w.detach(), b, gw.detach(), gb.detach(), *conv, case.num_groups, 1e-5,
                               True, False), test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_opcheck_backward_ops(case, device):
    x, w, b, gw, gb = case.make(torch.float32, device, seed=seed_for(case.name, "opcheck-bwd"))
    conv = _conv_args(case)
    with torch.no_grad():
        out = ops.conv_transpose3d_relu(x, w, b, *conv, False)
    grad_out = torch.randn_like(out)
    torch.library.opcheck(ops.conv_transpose3d_backward.default, (grad_out, x, w, *conv, True, True, True, False))
    torch.library.opcheck(ops.conv_transpose3d_backward.default, (grad_out, x, w, *conv, False, True, False, False))
    y, mean, rstd = ops.group_norm(out, gw, gb, case.num_groups, 1e-5)
    for relu_input in (False, True):
        torch.library.opcheck(ops.group_norm_backward.default,
                              (torch.randn_like(y), out, mean, rstd, gw, case.num_groups, relu_input, True, True, True))
