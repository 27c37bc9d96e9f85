"""convt3d_ops.fuse on a small 3D U-Net-like model: Sequential chains and chains in forward code."""
import pytest
import torch
from torch import nn

import convt3d_ops
from helpers import ALL_DEVICES, allow_tf32


def up_block(cin, cout, groups):  # the decoder block this package fuses
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 2, stride=2, bias=True), nn.ReLU(inplace=True),
                         nn.GroupNorm(groups, cout))


class TinyUNet3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.ReLU(), nn.GroupNorm(2, 8))
        self.down = nn.Conv3d(8, 16, 2, stride=2)
        self.bottleneck = nn.Sequential(nn.ConvTranspose3d(16, 16, 3, padding=1), nn.ReLU(), nn.GroupNorm(4, 16))
        self.up = up_block(16, 8, 2)
        # a chain in plain forward code (found through torch.fx)
        self.dec_conv = nn.ConvTranspose3d(16, 8, 3, padding=1, bias=False)
        self.dec_norm = nn.GroupNorm(4, 8)
        # not fusable: the ReLU output is reused
        self.side_conv = nn.ConvTranspose3d(8, 8, 1)
        self.side_norm = nn.GroupNorm(2, 8)
        self.out_block = nn.Sequential(nn.ConvTranspose3d(8, 4, 1), nn.ReLU(), nn.GroupNorm(2, 4))
        self.head = nn.Conv3d(4, 1, 1)

    def forward(self, x):
        e = self.enc1(x)
        b = self.bottleneck(self.down(e))
        u = self.up(b)
        d = self.dec_norm(torch.relu(self.dec_conv(torch.cat([u, e], dim=1))))
        s = torch.relu(self.side_conv(d))
        d = self.side_norm(s) + s
        return self.head(self.out_block(d))


def test_fuse_report_and_state_dict_keys():
    model = TinyUNet3d()
    keys = list(model.state_dict().keys())
    fused, report = convt3d_ops.fuse(model)
    assert sorted(report.replaced) == sorted([
        "bottleneck.0 -> bottleneck.1 -> bottleneck.2", "up.0 -> up.1 -> up.2", "out_block.0 -> out_block.1 -> "
        "out_block.2", "dec_conv -> relu -> dec_norm"])
    skipped = dict(report.skipped)
    assert any("used elsewhere" in why for why in skipped.values())
    assert list(fused.state_dict().keys()) == keys
    assert "fused 4" in str(report)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_fused_model_matches_forward_and_backward(device):
    torch.manual_seed(0)
    model = TinyUNet3d().to(device).train()
    x = torch.randn(2, 2, 8, 8, 8, device=device)
    with allow_tf32(False):
        ref = model(x)
        ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
        fused, report = convt3d_ops.fuse(model)
        assert len(report.replaced) == 4 and fused.training
        out = fused(x)
        grads = torch.autograd.grad(out.square().sum(), list(fused.parameters()))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-3, rtol=1e-3)
    # parameters are shared, not copied; a state_dict round trip through the unfused model works
    fresh = TinyUNet3d().to(device)
    fresh.load_state_dict(fused.state_dict())
    with allow_tf32(False):
        torch.testing.assert_close(fresh(x), out, atol=1e-4, rtol=1e-4)


def test_mismatched_dtypes_are_skipped_with_a_reason():
    block = up_block(4, 8, 2)
    block[2].to(torch.float64)
    _, report = convt3d_ops.fuse(nn.Sequential(block))
    assert report.replaced == [] and "different dtypes" in report.skipped[0][1]


def test_fuse_keeps_dtype_and_untraceable_models_keep_their_sequential_chains():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = up_block(4, 8, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                return self.block(x)
            return self.block(-x)

    model = Branchy().to(torch.bfloat16)
    fused, report = convt3d_ops.fuse(model)
    assert report.replaced == ["block.0 -> block.1 -> block.2"]
    assert any("not traceable" in why for _, why in report.skipped)
    x = torch.rand(1, 4, 3, 3, 3, dtype=torch.bfloat16)
    assert fused(x).dtype == torch.bfloat16
