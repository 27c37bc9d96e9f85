"""Shared test helpers: devices, float64 references, precision classes, poisoning."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Optional

import pytest
import torch
import torch.nn.functional as F

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


def cuda_param(device: str):
    """pytest.param for a device, marked gpu (and skipped without CUDA) for 'cuda'."""
    marks = [pytest.mark.gpu, requires_cuda] if device == "cuda" else []
    return pytest.param(device, marks=marks, id=device)


ALL_DEVICES = [cuda_param("cpu"), cuda_param("cuda")]


# ---- precision classes (DESIGN.md section 4) ---------------------------------
# Bounds on ||out - ref|| / ||ref|| and on max |out - ref| / max |ref| against a
# float64 reference. They hold PyTorch's own results on the same problems with
# room to spare, and fail on a real defect (a wrong tap, a missing term, an
# unwritten element) by orders of magnitude.

@dataclasses.dataclass(frozen=True)
class Tolerance:
    rel_l2: float
    rel_max: float


TOLERANCES = {
    "fp32": Tolerance(1e-5, 1e-4),    # IEEE-class fp32 (CPU, or CUDA with TF32 off: 3xTF32)
    "tf32": Tolerance(3e-3, 3e-2),
    "fp16": Tolerance(5e-3, 5e-2),
    "bf16": Tolerance(3e-2, 2e-1),
}
# Gradients go through two reductions (GroupNorm backward, then a GEMM): twice the room.
GRAD_FACTOR = 3.0


def precision_class(dtype: torch.dtype, device: str, allow_tf32: bool) -> str:
    if dtype == torch.float16:
        return "fp16"
    if dtype == torch.bfloat16:
        return "bf16"
    return "tf32" if (device == "cuda" and allow_tf32) else "fp32"


def errors(out: torch.Tensor, ref: torch.Tensor, scale: float = 0.0):
    out64 = out.detach().double().cpu()
    ref64 = ref.detach().double().cpu()
    assert out64.shape == ref64.shape, f"shape {tuple(out64.shape)} != reference {tuple(ref64.shape)}"
    diff = out64 - ref64
    ref_norm = max(ref64.norm().item(), scale)
    ref_max = max(ref64.abs().max().item() if ref64.numel() else 0.0, scale / max(1, ref64.numel()) ** 0.5)
    rel_l2 = diff.norm().item() / ref_norm if ref_norm > 0 else diff.norm().item()
    rel_max = diff.abs().max().item() / ref_max if ref_max > 0 else (diff.abs().max().item() if diff.numel() else 0.0)
    return rel_l2, rel_max


def assert_close_class(out: torch.Tensor, ref: torch.Tensor, cls: str, factor: float = 1.0, what: str = "output",
                       scale: float = 0.0):
    """scale: the natural size of `ref` when it can be near zero by structure (e.g. a conv-bias gradient
    that GroupNorm's shift invariance makes vanish): errors are measured against max(|ref|, scale)."""
    assert torch.isfinite(out).all(), f"{what}: non-finite values (unwritten or broken elements)"
    rel_l2, rel_max = errors(out, ref, scale)
    tol = TOLERANCES[cls]
    assert rel_l2 <= tol.rel_l2 * factor and rel_max <= tol.rel_max * factor, (
        f"{what}: rel L2 {rel_l2:.3e} (bound {tol.rel_l2 * factor:.1e}), rel max {rel_max:.3e} "
        f"(bound {tol.rel_max * factor:.1e}) in class {cls}")
    return rel_l2, rel_max


# ---- float64 references --------------------------------------------------------

def reference_chain(x, weight, bias, gn_weight, gn_bias, stride, padding, output_padding, dilation, groups, num_groups,
                    eps, relu_mask=None, return_pre=False):
    """group_norm(relu(conv_transpose3d(x))) with PyTorch's own ops (differentiable).

    relu_mask: apply this 0/1 mask instead of the ReLU's own decision. Gradient references
    use the mask of the kernel under test: in reduced precision a pre-activation within
    rounding of zero can land on either side, and each such flip moves the gradient by a
    whole upstream gradient element (fp64 on TF32-rounded inputs alone gives 1e-2 to 4e-2
    relative error in grad x on these problems), which says nothing about the backward.
    return_pre: also return the conv output (for the natural scale of the bias gradient)."""
    pre = F.conv_transpose3d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    h = torch.relu(pre) if relu_mask is None else pre * relu_mask.to(pre)
    y = F.group_norm(h, num_groups, gn_weight, gn_bias, eps)
    return (y, pre) if return_pre else y


def reference_group_stats(pre, num_groups, eps):
    """GroupNorm's (mean, rstd) of relu(pre) per (sample, group), as fused_forward returns them."""
    h = torch.relu(pre).reshape(pre.shape[0], num_groups, -1)
    var, mean = torch.var_mean(h, dim=2, unbiased=False)
    return mean, (var + eps).rsqrt()


def to64(t: Optional[torch.Tensor], device: str = "cpu", requires_grad: bool = False):
    if t is None:
        return None
    r = t.detach().to(device=device, dtype=torch.float64)
    return r.requires_grad_(requires_grad)


@contextlib.contextmanager
def allow_tf32(enabled: bool):
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


def poison_cuda_cache(nbytes: int = 1 << 28):
    """Fill memory the caching allocator will hand out next with NaN, so an output
    element the kernels never write shows up as NaN instead of a plausible value."""
    if not HAS_CUDA:
        return
    blocks = []
    for size in (nbytes, nbytes // 4, nbytes // 16, 1 << 20, 1 << 16):
        b = torch.empty(size // 4, dtype=torch.float32, device="cuda")
        b.fill_(float("nan"))
        blocks.append(b)
    del blocks  # returned to the cache, still NaN-filled


def random_tensor(shape, dtype, device, generator=None, scale=1.0, offset=0.0):
    t = torch.randn(shape, generator=generator, dtype=torch.float32) * scale + offset
    return t.to(device=device, dtype=dtype)


def seed_for(*parts) -> int:
    """A reproducible seed per check (each check draws its own fresh inputs)."""
    import zlib
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


def report(line: str) -> None:
    """A measurement worth keeping from a test run: printed, and appended to
    $CONVT3D_TEST_REPORT (a file) when set, so device runs can collect them."""
    import os
    print("\n" + line)
    path = os.environ.get("CONVT3D_TEST_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
