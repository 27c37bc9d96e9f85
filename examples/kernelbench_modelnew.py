"""KernelBench-style drop-in: a single file that a harness can exec next to the reference.

It defines ModelNew (the reference Model's signature, submodule names and parameters, so
the same seed gives the same weights), provides get_inputs and get_init_inputs, and computes the
whole ConvTranspose3d -> ReLU -> GroupNorm chain with the installed convt3d_ops kernels.
"""
import torch
import torch.nn as nn

import convt3d_ops  # noqa: F401  (registers torch.ops.convt3d)
from convt3d_ops.reference import get_init_inputs, get_inputs  # noqa: F401  (the reference's own inputs)


class ModelNew(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, groups, bias=False):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose3d(in_channels, out_channels, kernel_size, bias=bias)
        self.relu = nn.ReLU()
        self.group_norm = nn.GroupNorm(num_groups=groups, num_channels=out_channels)

    def forward(self, x):
        conv, gn = self.conv_transpose, self.group_norm
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)
        y, _, _, _ = torch.ops.convt3d.fused_forward(
            x, conv.weight, conv.bias, gn.weight, gn.bias, list(conv.stride), list(conv.padding),
            list(conv.output_padding), list(conv.dilation), conv.groups, gn.num_groups, gn.eps,
            torch.backends.cudnn.allow_tf32, needs_grad)
        return y

