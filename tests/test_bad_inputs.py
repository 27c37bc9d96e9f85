"""Bad inputs: a clear error naming the argument and what was expected, on every device
and through every entry point (Python API, raw op); never a crash or a wrong result.
NaN / Inf inputs propagate as PyTorch's do."""
import math

import pytest
import torch
import torch.nn.functional as F

import convt3d_ops
from helpers import ALL_DEVICES, HAS_CUDA

ops = torch.ops.convt3d


def _args(device, **over):
    """Valid fused_forward arguments, with some replaced."""
    a = dict(x=torch.randn(2, 4, 3, 3, 3, device=device), weight=torch.randn(4, 8, 3, 3, 3, device=device),
             bias=None, gn_weight=None, gn_bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
             num_groups=2, eps=1e-5)
    a.update(over)
    return a


def _call_api(a):
    return convt3d_ops.fused_forward(a["x"], a["weight"], a["bias"], a["gn_weight"], a["gn_bias"],
                                     num_groups=a["num_groups"], eps=a["eps"], stride=a["stride"],
                                     padding=a["padding"], output_padding=a["output_padding"], groups=a["groups"],
                                     dilation=a["dilation"])


def _three(v):
    return list(v) if isinstance(v, (list, tuple)) else [v] * 3


def _call_op(a):
    return ops.fused_forward(a["x"], a["weight"], a["bias"], a["gn_weight"], a["gn_bias"], _three(a["stride"]),
                             _three(a["padding"]), _three(a["output_padding"]), _three(a["dilation"]), a["groups"],
                             a["num_groups"], a["eps"], True, False)


BAD = [  # (id, replacement builder(device), message regex)
    ("x_4d", lambda d: dict(x=torch.randn(4, 3, 3, 3, device=d)), r"'x' must be a 5-D tensor"),
    ("weight_4d", lambda d: dict(weight=torch.randn(4, 8, 3, 3, device=d)), r"'weight' must be a 5-D tensor"),
    ("channel_mismatch", lambda d: dict(weight=torch.randn(5, 8, 3, 3, 3, device=d)),
     r"'weight' has 5 input channels .* 'x' has 4 channels"),
    ("groups_not_dividing", lambda d: dict(groups=3, weight=torch.randn(4, 8, 3, 3, 3, device=d)),
     r"'groups' \(3\) must divide the input channels \(4\)"),
    ("num_groups_not_dividing", lambda d: dict(num_groups=3), r"'num_groups' \(3\) must divide the number of channels"),
    ("num_groups_zero", lambda d: dict(num_groups=0), r"'num_groups' must be >= 1"),
    ("output_padding_too_big", lambda d: dict(output_padding=1), r"'output_padding' must be smaller than either stride"),
    ("stride_zero", lambda d: dict(stride=0), r"'stride' must be >= 1"),
    ("dilation_zero", lambda d: dict(dilation=(1, 0, 1)), r"'dilation' must be >= 1"),
    ("padding_negative", lambda d: dict(padding=-1), r"'padding' must be >= 0"),
    ("groups_zero", lambda d: dict(groups=0), r"'groups' must be >= 1"),
    ("empty_output", lambda d: dict(padding=3), r"the output would be empty"),
    ("zero_spatial", lambda d: dict(x=torch.randn(2, 4, 0, 3, 3, device=d)), r"'x' must have non-empty spatial"),
    ("zero_channels", lambda d: dict(x=torch.randn(2, 0, 3, 3, 3, device=d), weight=torch.randn(0, 8, 3, 3, 3, device=d)),
     r"'x' must have at least one channel"),
    ("zero_kernel", lambda d: dict(weight=torch.randn(4, 8, 0, 3, 3, device=d)), r"'weight' must have non-empty kernel"),
    ("dtype_mismatch", lambda d: dict(weight=torch.randn(4, 8, 3, 3, 3, device=d, dtype=torch.float16)),
     r"'weight' has dtype float16 but 'x' has dtype float32"),
    ("integer_x", lambda d: dict(x=torch.ones(2, 4, 3, 3, 3, device=d, dtype=torch.int64)),
     r"'x' must be float32, float16 or bfloat16"),
    ("bias_shape", lambda d: dict(bias=torch.randn(7, device=d)), r"'bias' must have shape \(8,\)"),
    ("gn_weight_shape", lambda d: dict(gn_weight=torch.randn(4, device=d)), r"'gn_weight' must have shape \(8,\)"),
    ("gn_bias_dtype", lambda d: dict(gn_bias=torch.randn(8, device=d, dtype=torch.bfloat16)),
     r"'gn_bias' has dtype bfloat16"),
    ("eps_nan", lambda d: dict(eps=math.nan), r"'eps' must be a finite number >= 0"),
    ("eps_inf", lambda d: dict(eps=math.inf), r"'eps' must be a finite number >= 0"),
    ("eps_negative", lambda d: dict(eps=-1e-5), r"'eps' must be a finite number >= 0"),
    ("one_value_groups", lambda d: dict(x=torch.randn(1, 4, 1, 1, 1, device=d), weight=torch.randn(4, 2, 1, 1, 1, device=d),
                                        num_groups=2), r"expected more than 1 value per group"),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,build,message", BAD, ids=[b[0] for b in BAD])
def test_bad_argument_python_api(name, build, message, device):
    with pytest.raises(convt3d_ops.ArgumentError, match=message):
        _call_api(_args(device, **build(device)))


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("name,build,message", BAD, ids=[b[0] for b in BAD])
def test_bad_argument_raw_op(name, build, message, device):
    """The op itself (as torch.ops.convt3d.fused_forward users call it) checks too: RuntimeError."""
    with pytest.raises(RuntimeError, match=message):
        _call_op(_args(device, **build(device)))


@pytest.mark.parametrize("name,build,message", BAD, ids=[b[0] for b in BAD])
def test_bad_argument_meta_tensors(name, build, message):
    """Under torch.compile the fake kernels see the arguments first: the same errors."""
    a = _args("meta", **build("meta"))
    with pytest.raises(RuntimeError, match=message):
        _call_op(a)


def test_meta_cpu_mixture():
    a = _args("meta", weight=torch.randn(4, 8, 3, 3, 3))
    with pytest.raises(RuntimeError, match=r"'weight' is on a different device than 'x'"):
        _call_op(a)
    with pytest.raises(convt3d_ops.ArgumentError, match=r"'weight' is on a different device than 'x'"):
        _call_api(a)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("which", ["weight", "x", "gn_weight"])
def test_cuda_cpu_mixture(which):
    a = _args("cuda")
    a[which] = (a[which] if a[which] is not None else torch.ones(8, device="cuda")).cpu()
    with pytest.raises(RuntimeError, match=r"on a different device"):
        _call_op(a)
    with pytest.raises(convt3d_ops.ArgumentError, match=r"on a different device"):
        _call_api(a)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_float64_is_cpu_only():
    a = _args("cuda", x=torch.randn(2, 4, 3, 3, 3, device="cuda", dtype=torch.float64),
              weight=torch.randn(4, 8, 3, 3, 3, device="cuda", dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"'x' must be float32, float16 or bfloat16 \(or float64 on the CPU\)"):
        _call_op(a)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_every_python_wrapper_raises_argument_error(device):
    """The wrappers check arguments only when the op fails (functional._run_op): the error is still
    ArgumentError naming the argument, also where the op's schema rejects the call first."""
    x = torch.randn(1, 4, 2, 2, 2, device=device)
    with pytest.raises(convt3d_ops.ArgumentError, match=r"'weight' has 3 input channels"):
        convt3d_ops.conv_transpose3d_relu(x, torch.randn(3, 4, 2, 2, 2, device=device))
    with pytest.raises(convt3d_ops.ArgumentError, match=r"'num_groups' \(3\) must divide"):
        convt3d_ops.group_norm(x, 3)
    with pytest.raises(convt3d_ops.ArgumentError, match=r"'x' must be a tensor, got list"):
        convt3d_ops.fused_forward([1.0], torch.randn(4, 8, 3, 3, 3, device=device), num_groups=2)
    with pytest.raises(convt3d_ops.ArgumentError, match=r"'eps' must be a finite number"):
        convt3d_ops.group_norm(x, 2, eps=-1.0)


def test_an_op_failure_that_is_no_bad_argument_is_raised_unchanged(monkeypatch):
    """Valid arguments and a failing op (as out of memory would be): the op's own error, not hidden."""
    class Lost(RuntimeError):
        pass

    def failing(*args):
        raise Lost("the op failed")

    monkeypatch.setattr(torch.ops.convt3d, "fused_forward", failing)
    with pytest.raises(Lost, match="the op failed"):
        _call_api(_args("cpu"))


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_group_norm_and_conv_ops_check_too(device):
    with pytest.raises(RuntimeError, match=r"'num_groups' \(3\) must divide"):
        ops.group_norm(torch.randn(2, 4, 5, device=device), None, None, 3, 1e-5)
    with pytest.raises(RuntimeError, match=r"'x' must have at least 2 dimensions"):
        ops.group_norm(torch.randn(4, device=device), None, None, 1, 1e-5)
    with pytest.raises(RuntimeError, match=r"'weight' has 3 input channels"):
        ops.conv_transpose3d_relu(torch.randn(1, 4, 2, 2, 2, device=device), torch.randn(3, 4, 2, 2, 2, device=device),
                                  None, [1] * 3, [0] * 3, [0] * 3, [1] * 3, 1, True)
    x = torch.randn(1, 4, 2, 2, 2, device=device)
    w = torch.randn(4, 4, 2, 2, 2, device=device)
    with pytest.raises(RuntimeError, match=r"'grad_out' has"):
        ops.conv_transpose3d_backward(torch.randn(1, 4, 2, 2, 2, device=device), x, w, [1] * 3, [0] * 3, [0] * 3,
                                      [1] * 3, 1, True, True, True, True)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_nan_and_inf_propagate_like_pytorch(device):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 4, 4, 4, device=device)
    x[0, 1, 2, 2, 2] = float("nan")
    x[1, 0, 0, 0, 0] = float("inf")
    w = torch.randn(4, 8, 3, 3, 3, device=device)
    ours = convt3d_ops.fused_forward(x, w, num_groups=2)
    theirs = F.group_norm(torch.relu(F.conv_transpose3d(x, w)), 2)
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
