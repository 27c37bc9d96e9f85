"""ModelNew against the reference Model, the fused module, and the package API."""
import pytest
import torch

import convt3d_ops
from convt3d_ops import reference
from helpers import ALL_DEVICES, allow_tf32, assert_close_class, precision_class, reference_chain, to64


def test_get_inputs_and_init_inputs_match_the_reference():
    assert convt3d_ops.get_init_inputs() == [64, 128, 3, 8, False]
    (x,) = convt3d_ops.get_inputs()
    assert x.shape == (16, 64, 32, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min().item() and x.max().item() < 1.0  # torch.rand


def test_same_seed_gives_identical_parameters_and_rng_state():
    init = [8, 16, 3, 4, False]
    torch.manual_seed(1234)
    ref = reference.Model(*init)
    state_after_ref = torch.get_rng_state()
    torch.manual_seed(1234)
    new = convt3d_ops.ModelNew(*init)
    assert torch.equal(torch.get_rng_state(), state_after_ref), "ModelNew consumed the RNG differently"
    assert list(ref.state_dict().keys()) == list(new.state_dict().keys())
    for (name, a), (_, b) in zip(ref.state_dict().items(), new.state_dict().items()):
        assert torch.equal(a, b), name
    assert [n for n, _ in ref.named_modules()] == [n for n, _ in new.named_modules()]


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_modelnew_matches_model(device):
    init = [8, 16, 3, 4, True]
    torch.manual_seed(0)
    ref = reference.Model(*init).to(device)
    torch.manual_seed(0)
    new = convt3d_ops.ModelNew(*init).to(device)
    x = torch.rand(2, 8, 6, 5, 4, device=device)
    with allow_tf32(False):
        out = new(x)
        theirs = ref(x)
    ref64 = reference_chain(to64(x), to64(ref.conv_transpose.weight), to64(ref.conv_transpose.bias),
                            to64(ref.group_norm.weight), to64(ref.group_norm.bias), stride=1, padding=0,
                            output_padding=0, dilation=1, groups=1, num_groups=4, eps=1e-5)
    assert_close_class(out, ref64, "fp32")
    torch.testing.assert_close(out, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_load_state_dict_from_trained_model(device):
    init = [4, 8, 3, 2, True]
    ref = reference.Model(*init).to(device)
    with torch.no_grad():  # "train" it: move every parameter away from its initial value
        for p in ref.parameters():
            p.add_(torch.randn_like(p))
    new = convt3d_ops.ModelNew(*init).to(device)
    new.load_state_dict(ref.state_dict())
    x = torch.rand(1, 4, 4, 4, 4, device=device)
    with allow_tf32(False):
        torch.testing.assert_close(new(x), ref(x), atol=1e-4, rtol=1e-4)
    # and back
    again = reference.Model(*init).to(device)
    again.load_state_dict(new.state_dict())
    for a, b in zip(again.parameters(), ref.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_fused_module_full_argument_set(device):
    kwargs = dict(stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0), groups=2, bias=True,
                  dilation=(1, 2, 1), num_groups=3, eps=1e-3, affine=True)
    torch.manual_seed(5)
    m = convt3d_ops.ConvTranspose3dReLUGroupNorm(4, 6, (3, 2, 3), **kwargs).to(device)
    torch.manual_seed(5)
    conv = torch.nn.ConvTranspose3d(4, 6, (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0),
                                    groups=2, bias=True, dilation=(1, 2, 1)).to(device)
    gn = torch.nn.GroupNorm(3, 6, eps=1e-3).to(device)
    x = torch.randn(2, 4, 3, 4, 3, device=device)
    with allow_tf32(False):
        torch.testing.assert_close(m(x), gn(torch.relu(conv(x))), atol=1e-4, rtol=1e-4)
    m_plain = convt3d_ops.ConvTranspose3dReLUGroupNorm(4, 6, 3, num_groups=2, affine=False, bias=False).to(device)
    assert m_plain.group_norm.weight is None and m_plain.conv_transpose.bias is None
    assert m_plain(x).shape == (2, 6, 5, 6, 5)


def test_fused_module_rejects_other_padding_modes():
    with pytest.raises(ValueError, match="padding_mode"):
        convt3d_ops.ConvTranspose3dReLUGroupNorm(4, 8, 3, padding_mode="reflect", num_groups=2)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_module_in_half_precision(device, dtype):
    m = convt3d_ops.ModelNew(8, 16, 3, 4, True).to(device=device, dtype=dtype)
    x = torch.rand(2, 8, 4, 4, 4, device=device, dtype=dtype)
    out = m(x)
    assert out.dtype == dtype
    ref = reference_chain(to64(x), to64(m.conv_transpose.weight), to64(m.conv_transpose.bias),
                          to64(m.group_norm.weight), to64(m.group_norm.bias), stride=1, padding=0, output_padding=0,
                          dilation=1, groups=1, num_groups=4, eps=1e-5)
    assert_close_class(out, ref, precision_class(dtype, device, True))


def test_forward_path_reports_cpu():
    x, w = torch.randn(1, 4, 3, 3, 3), torch.randn(4, 8, 3, 3, 3)
    assert convt3d_ops.forward_path(x, w) == "cpu"
