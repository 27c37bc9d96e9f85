"""KernelBench-style drop-in: a single file that a harness can exec next to the reference.

ModelNew is the reference Model itself (same constructor, submodule names, parameters, and
so the same weights under the same seed) with its forward replaced by the fused
ConvTranspose3d -> ReLU -> GroupNorm op of the installed convt3d_ops; get_inputs and
get_init_inputs are the reference's own.
"""
import torch

import convt3d_ops  # noqa: F401  (registers torch.ops.convt3d)
from convt3d_ops.reference import Model, get_init_inputs, get_inputs  # noqa: F401


class ModelNew(Model):
    def forward(self, x):
        conv, gn = self.conv_transpose, self.group_norm
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)
        y, _, _, _ = torch.ops.convt3d.fused_forward(
            x, conv.weight, conv.bias, gn.weight, gn.bias, list(conv.stride), list(conv.padding),
            list(conv.output_padding), list(conv.dilation), conv.groups, gn.num_groups, gn.eps,
            torch.backends.cudnn.allow_tf32, needs_grad)
        return y
