"""Drop-in modules: the fused ConvTranspose3d -> ReLU -> GroupNorm block."""
from __future__ import annotations

from torch import nn

from . import functional

__all__ = ["ConvTranspose3dReLUGroupNorm", "ModelNew"]


class ConvTranspose3dReLUGroupNorm(nn.Module):
    """``GroupNorm(ReLU(ConvTranspose3d(x)))`` computed by the fused convt3d kernels.

    Takes the arguments of ``nn.ConvTranspose3d`` followed by those of ``nn.GroupNorm``.
    It holds real ``conv_transpose``, ``relu`` and ``group_norm`` submodules, so
    parameters, initialisation (and the RNG draws it makes) and ``state_dict`` keys
    are exactly those of the three PyTorch modules.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", num_groups=1, eps=1e-5, affine=True, device=None,
                 dtype=None):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose3dReLUGroupNorm: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.conv_transpose = nn.ConvTranspose3d(in_channels, out_channels, kernel_size, stride=stride,
                                                 padding=padding, output_padding=output_padding, groups=groups,
                                                 bias=bias, dilation=dilation, device=device, dtype=dtype)
        self.relu = nn.ReLU()
        self.group_norm = nn.GroupNorm(num_groups, out_channels, eps=eps, affine=affine, device=device, dtype=dtype)

    def forward(self, x):
        conv, gn = self.conv_transpose, self.group_norm
        return functional.fused_forward(
            x, conv.weight, conv.bias, gn.weight, gn.bias, num_groups=gn.num_groups, eps=gn.eps, stride=conv.stride,
            padding=conv.padding, output_padding=conv.output_padding, groups=conv.groups, dilation=conv.dilation)


class ModelNew(ConvTranspose3dReLUGroupNorm):
    """The reference ``Model`` interface (see convt3d_ops.reference): ``groups`` is the
    GroupNorm group count, the conv has stride 1, no padding and one conv group."""

    def __init__(self, in_channels, out_channels, kernel_size, groups, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, bias=bias, num_groups=groups)
