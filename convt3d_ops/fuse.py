"""convt3d_ops.fuse: replace every ConvTranspose3d -> ReLU -> GroupNorm chain of a model
with the fused kernels, keeping parameters, state_dict keys, train/eval mode, device and dtype.

    model, report = convt3d_ops.fuse(model)
    print(report)

Chains are found in nn.Sequential containers (any depth) and, through torch.fx, in
arbitrary forward code. The conv module's slot is taken by a fused module that holds the
conv's own Parameter objects (same keys: "...weight", "...bias"); the GroupNorm's slot keeps
its Parameters in a pass-through module (same keys); the ReLU's slot becomes nn.Identity.
So a state_dict saved before fusing loads after, and the other way round.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import torch
from torch import nn

from . import functional

__all__ = ["fuse", "FuseReport"]


@dataclasses.dataclass
class FuseReport:
    replaced: List[str] = dataclasses.field(default_factory=list)  # "conv -> relu -> norm" qualified names
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (where, why)

    def __str__(self) -> str:
        lines = [f"fused {len(self.replaced)} ConvTranspose3d -> ReLU -> GroupNorm chain(s)"]
        lines += [f"  fused   {r}" for r in self.replaced]
        lines += [f"  skipped {w}: {why}" for w, why in self.skipped]
        return "\n".join(lines)


class GroupNormParameters(nn.Module):
    """Takes a fused GroupNorm's place: keeps its parameters (and state_dict keys), returns its input."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.num_groups, self.num_channels, self.eps, self.affine = gn.num_groups, gn.num_channels, gn.eps, gn.affine
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x):
        return x


class FusedConvTranspose3dReLUGroupNorm(nn.Module):
    """Takes a fused ConvTranspose3d's place: the conv's parameters, the whole chain's computation."""

    def __init__(self, conv: nn.ConvTranspose3d, norm: GroupNormParameters):
        super().__init__()
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups",
                     "dilation"):
            setattr(self, name, getattr(conv, name))
        self.weight, self.bias = conv.weight, conv.bias
        self._norm = [norm]  # a plain reference: the norm's parameters stay registered in its own slot

    def forward(self, x):
        norm = self._norm[0]
        return functional.fused_forward(x, self.weight, self.bias, norm.weight, norm.bias, num_groups=norm.num_groups,
                                        eps=norm.eps, stride=self.stride, padding=self.padding,
                                        output_padding=self.output_padding, groups=self.groups,
                                        dilation=self.dilation)

    def extra_repr(self):
        norm = self._norm[0]
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, num_groups={norm.num_groups}, eps={norm.eps}")


def _incompatibility(conv: nn.Module, relu: nn.Module, gn: nn.Module) -> Optional[str]:
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r} (only 'zeros')"
    if gn.num_channels != conv.out_channels:
        return f"GroupNorm has {gn.num_channels} channels but the conv produces {conv.out_channels}"
    if conv.weight.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        return f"dtype {conv.weight.dtype}"
    if gn.affine and gn.weight.dtype != conv.weight.dtype:
        return "the conv and the GroupNorm have different dtypes"
    return None


def _fused_pair(conv, gn):
    norm = GroupNormParameters(gn)
    return FusedConvTranspose3dReLUGroupNorm(conv, norm), norm


def _fuse_sequentials(module: nn.Module, prefix: str, report: FuseReport) -> None:
    for name, child in module.named_children():
        _fuse_sequentials(child, f"{prefix}{name}.", report)
    if not isinstance(module, nn.Sequential):
        return
    keys = list(module._modules.keys())
    i = 0
    while i + 2 < len(keys):
        conv, relu, gn = (module._modules[k] for k in keys[i:i + 3])
        if isinstance(conv, nn.ConvTranspose3d) and isinstance(relu, nn.ReLU) and isinstance(gn, nn.GroupNorm):
            where = f"{prefix}{keys[i]} -> {prefix}{keys[i + 1]} -> {prefix}{keys[i + 2]}"
            why = _incompatibility(conv, relu, gn)
            if why:
                report.skipped.append((where, why))
            else:
                fused, norm = _fused_pair(conv, gn)
                module._modules[keys[i]] = fused
                module._modules[keys[i + 1]] = nn.Identity()
                module._modules[keys[i + 2]] = norm
                report.replaced.append(where)
                i += 3
                continue
        i += 1


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, (FusedConvTranspose3dReLUGroupNorm, GroupNormParameters)) or super().is_leaf_module(
            m, qualname)


_RELU_FUNCTIONS = (torch.relu, torch.nn.functional.relu, torch.relu_)


def _fuse_traced(model: nn.Module, report: FuseReport) -> nn.Module:
    graph = _Tracer().trace(model)
    gm = torch.fx.GraphModule(model, graph)
    modules = dict(gm.named_modules())
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.ConvTranspose3d):
            continue
        if len(node.users) != 1:
            continue
        relu = next(iter(node.users))
        is_relu = (relu.op == "call_module" and isinstance(modules.get(relu.target), nn.ReLU)) or (
            relu.op == "call_function" and relu.target in _RELU_FUNCTIONS) or (
            relu.op == "call_method" and relu.target in ("relu", "relu_"))
        if not is_relu:
            continue
        gn_users = [u for u in relu.users if u.op == "call_module" and isinstance(modules.get(u.target), nn.GroupNorm)]
        if not gn_users:
            continue
        gn_node = gn_users[0]
        if len(relu.users) != 1:
            report.skipped.append((f"{node.target} -> {gn_node.target}",
                                   "the ReLU output is also used elsewhere (fusing would drop it)"))
            continue
        where = f"{node.target} -> {relu.target if relu.op == 'call_module' else relu.name} -> {gn_node.target}"
        conv, gn = modules[node.target], modules[gn_node.target]
        why = _incompatibility(conv, None, gn)
        if why:
            report.skipped.append((where, why))
            continue
        fused, norm = _fused_pair(conv, gn)
        _set(gm, node.target, fused)
        _set(gm, gn_node.target, norm)
        gn_node.replace_all_uses_with(node)
        gm.graph.erase_node(gn_node)
        gm.graph.erase_node(relu)
        report.replaced.append(where)
        changed = True
    if not changed:
        return model
    gm.graph.lint()
    gm.recompile()
    gm.train(model.training)
    return gm


def _set(root: nn.Module, target: str, module: nn.Module) -> None:
    *path, name = target.split(".")
    parent = root
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, name, module)


def fuse(model: nn.Module, trace: bool = True):
    """Fuses every ConvTranspose3d -> ReLU -> GroupNorm chain in `model`; returns (model, report).

    nn.Sequential chains are fused in place. With trace=True, chains in other forward code are
    found with torch.fx; then the returned model is a torch.fx.GraphModule (the same submodules and
    parameters). A model that torch.fx cannot trace is returned with its Sequential chains fused and
    the reason in report.skipped. Chains whose ReLU output is used elsewhere are left alone."""
    report = FuseReport()
    _fuse_sequentials(model, "", report)
    if trace:
        try:
            model = _fuse_traced(model, report)
        except Exception as e:  # noqa: BLE001 - any tracing failure means: leave the code as it is
            report.skipped.append(("forward code", f"not traceable by torch.fx ({type(e).__name__}: {e})"))
    return model, report
