"""convt3d_ops: ConvTranspose3d -> ReLU -> GroupNorm as fused custom CUDA ops for PyTorch.

Importing the package loads the compiled ops (namespace ``torch.ops.convt3d``) and
registers their CPU kernels, fake kernels and autograd formulas.
"""
import torch  # noqa: F401  (first: loads libtorch, which _C links against)

from ._version import __version__
from . import _C  # noqa: F401  (loads the op schemas and the CUDA kernels)
from . import _registrations  # noqa: F401
from ._checks import ArgumentError
from .functional import conv_transpose3d_relu, forward_path, fused_forward, group_norm
from .fuse import FuseReport, fuse
from .modules import ConvTranspose3dReLUGroupNorm, ModelNew
from .reference import get_init_inputs, get_inputs

__all__ = [
    "__version__", "ArgumentError", "conv_transpose3d_relu", "group_norm", "fused_forward", "forward_path",
    "ConvTranspose3dReLUGroupNorm", "ModelNew", "get_inputs", "get_init_inputs", "fuse", "FuseReport",
]
