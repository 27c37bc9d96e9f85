"""torch.compile: ModelNew forward and backward with fullgraph=True (no graph break),
and dynamic shapes without recompiling."""
import pytest
import torch

import convt3d_ops
from helpers import ALL_DEVICES, allow_tf32


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_compile_fullgraph_forward_backward(device):
    torch.manual_seed(0)
    model = convt3d_ops.ModelNew(4, 8, 3, 2, True).to(device)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 4, 4, 5, 3, device=device, requires_grad=True)
    with allow_tf32(False):
        y_eager = model(x)
        g_eager = torch.autograd.grad(y_eager.square().sum(), [x] + list(model.parameters()))
        y = compiled(x)
        g = torch.autograd.grad(y.square().sum(), [x] + list(model.parameters()))
    torch.testing.assert_close(y, y_eager, atol=1e-5, rtol=1e-5)
    for a, b in zip(g, g_eager):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_compile_dynamic_shapes_do_not_recompile(device):
    model = convt3d_ops.ModelNew(4, 8, 3, 2).to(device)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        # sizes distinct from the channel count: dynamo's duck sizing would tie equal sizes
        # to one symbol, which the (static) channel count then specializes
        compiled(torch.randn(2, 4, 5, 6, 7, device=device))
        with torch._dynamo.config.patch(error_on_recompile=True):
            for shape in [(3, 4, 6, 5, 7), (5, 4, 5, 9, 3)]:  # no size 0 or 1 (PyTorch specializes those)
                x = torch.randn(shape, device=device)
                torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_compile_inference_mode(device):
    model = convt3d_ops.ModelNew(4, 8, 3, 2).to(device).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(1, 4, 3, 3, 3, device=device)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model(x))
