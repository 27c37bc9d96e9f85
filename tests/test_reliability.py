"""Execution contexts and long-run behaviour: determinism, CUDA graphs, reduce-overhead
compile, autocast, a second device, large tensors (int64 indexing), and a soak run."""
import pytest
import torch
import torch.nn.functional as F

import convt3d_ops
from helpers import (ALL_DEVICES, HAS_CUDA, allow_tf32, assert_close_class, precision_class, report, requires_cuda,
                     to64)

gpu = [pytest.mark.gpu, requires_cuda]


def _model_and_input(device, dtype=torch.float32, n=2, size=(6, 7, 5)):
    torch.manual_seed(0)
    model = convt3d_ops.ConvTranspose3dReLUGroupNorm(16, 32, 3, bias=True, num_groups=4).to(device=device, dtype=dtype)
    x = torch.randn(n, 16, *size, device=device, dtype=dtype)
    return model, x


def _forward_backward(model, x, upstream):
    xg = x.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    y = model(xg)
    y.backward(upstream)
    return [y.detach(), xg.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype,tf32", [(torch.float32, True), (torch.float32, False), (torch.bfloat16, True)],
                         ids=["fp32-tf32", "fp32-ieee", "bf16"])
def test_forward_and_gradients_are_bitwise_deterministic(device, dtype, tf32):
    """No atomics anywhere: repeated runs on the same inputs give identical bits."""
    model, x = _model_and_input(device, dtype)
    upstream = torch.randn(2, 32, 8, 9, 7, device=device, dtype=dtype)
    with allow_tf32(tf32):
        first = _forward_backward(model, x, upstream)
        for _ in range(3):
            again = _forward_backward(model, x, upstream)
            for a, b in zip(first, again):
                assert torch.equal(a, b)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=gpu)])
def test_cuda_graph_capture_and_replay(device):
    model, x = _model_and_input(device)
    static_x = x.clone()
    with torch.no_grad():
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm-up outside the graph
            model(static_x)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = model(static_x)
        for seed in range(3):
            new_x = torch.randn(x.shape, device=device, generator=torch.Generator(device).manual_seed(seed))
            static_x.copy_(new_x)
            graph.replay()
            torch.testing.assert_close(static_y, model(new_x), atol=0, rtol=0)


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=gpu)])
def test_compile_reduce_overhead(device):
    torch._dynamo.reset()
    model, x = _model_and_input(device)
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for _ in range(3):
            out = compiled(x)
        torch.testing.assert_close(out, model(x))
    torch._dynamo.reset()


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=gpu)])
@pytest.mark.parametrize("amp_dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_autocast_behaves_like_pytorch(device, amp_dtype):
    """Under autocast the conv runs in the autocast dtype and GroupNorm in float32, as PyTorch's modules do."""
    model, x = _model_and_input(device)
    ref = torch.nn.Sequential(model.conv_transpose, model.relu, model.group_norm)
    x.requires_grad_()
    with torch.autocast("cuda", dtype=amp_dtype):
        ours = model(x)
        theirs = ref(x)
        h = convt3d_ops.conv_transpose3d_relu(x, model.conv_transpose.weight, model.conv_transpose.bias)
    assert ours.dtype == theirs.dtype == torch.float32
    assert h.dtype == amp_dtype
    ref64 = F.group_norm(torch.relu(F.conv_transpose3d(to64(x).to(amp_dtype).double(),
                                                       to64(model.conv_transpose.weight).to(amp_dtype).double(),
                                                       to64(model.conv_transpose.bias).to(amp_dtype).double())),
                         4, to64(model.group_norm.weight), to64(model.group_norm.bias)).to(device)
    assert_close_class(ours, ref64, precision_class(amp_dtype, device, True))
    ours.sum().backward()  # differentiable under autocast
    assert x.grad is not None and x.grad.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA or torch.cuda.device_count() < 2, reason="needs a second CUDA device")
def test_second_device():
    model, x = _model_and_input("cuda:1")
    with torch.cuda.device(0):  # the current device is another one: the op must follow its inputs
        out = model(x)
    assert out.device == torch.device("cuda:1")
    torch.testing.assert_close(out, model.cpu()(x.cpu()).to("cuda:1"), atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_soak_varying_shapes_no_memory_growth(device):
    """Forward+backward iterations over changing shapes: no error, and (on CUDA) no growth of
    allocated memory once every shape has been seen."""
    iterations = 1000 if device == "cuda" else 60
    torch.manual_seed(0)
    model = convt3d_ops.ConvTranspose3dReLUGroupNorm(8, 16, 3, stride=(1, 2, 1), padding=1, output_padding=(0, 1, 0),
                                                     bias=True, num_groups=4).to(device)
    shapes = [(1, 8, 4, 5, 6), (3, 8, 6, 4, 5), (2, 8, 7, 7, 3), (4, 8, 3, 3, 3)]
    inputs = [torch.randn(s, device=device) for s in shapes]
    baseline = None
    for i in range(iterations):
        x = inputs[i % len(inputs)].requires_grad_()
        y = model(x)
        y.square().mean().backward()
        x.grad = None
        model.zero_grad(set_to_none=True)
        if device == "cuda" and i == 2 * len(shapes):
            torch.cuda.synchronize()
            baseline = torch.cuda.memory_allocated()
    if device == "cuda":
        torch.cuda.synchronize()
        grown = torch.cuda.memory_allocated() - baseline
        report(f"soak: {iterations} forward+backward iterations over {len(shapes)} shapes, allocated memory "
               f"after warm-up {baseline} B, growth {grown} B")
        assert grown <= 0


@pytest.mark.slow
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=gpu)])
def test_output_over_2_31_elements(device):
    """An output of 2.3e9 elements (int64 indexing everywhere; bf16, so the Hopper path on an H100)
    against PyTorch's float32 result on the same bf16 inputs."""
    torch.manual_seed(0)
    x = torch.rand(1, 8, 328, 328, 328, device=device, dtype=torch.bfloat16)
    w = (torch.randn(8, 64, 3, 3, 3, device=device) / 15).to(torch.bfloat16)
    assert 64 * 330 ** 3 > 2 ** 31
    with torch.no_grad():
        ours = convt3d_ops.fused_forward(x, w, num_groups=8)
        theirs = F.group_norm(torch.relu(F.conv_transpose3d(x.float(), w.float())), 8)
        # compare in slices to keep the float64 error computation in memory
        for start in range(0, 64, 16):
            assert_close_class(ours[:, start:start + 16], theirs[:, start:start + 16], "bf16",
                               what=f"channels {start}..{start + 15}")
        # the last elements, past 2^31, explicitly
        torch.testing.assert_close(ours[0, -1, -1, -1, -8:].float(), theirs[0, -1, -1, -1, -8:], atol=0.05, rtol=0.05)
