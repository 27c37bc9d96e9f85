"""Build of the convt3d_ops wheel: one cp39-abi3 wheel against torch's stable ABI.

The extension uses only torch/csrc/stable (no ATen, no pybind11), so the same
binary loads into every torch >= 2.10 and every CPython >= 3.9.
CUDA is always built (never gated on a visible GPU): sm_80 machine code for the
portable mma.sync path, sm_90a for the Hopper path, and compute_80 PTX for newer
GPUs.  Set CONVT3D_GENCODES to override the targets (e.g. for quick local builds).
"""
import glob
import os

# cpp_extension resolves CUDA_HOME at import; the auto-detection here picks
# /usr/local and the link then fails (DESIGN.md section 3).
os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")

from setuptools import setup  # noqa: E402
import torch.utils.cpp_extension as cpp_extension  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CUDAExtension  # noqa: E402

# The wheel is tagged cp39-abi3: compile against the Python 3.9 limited API
# (cpp_extension's documented knob; its default follows torch's own minimum).
cpp_extension.min_supported_cpython = "0x03090000"

ROOT = os.path.dirname(os.path.abspath(__file__))

# torch 2.10 is the oldest release whose stable ABI has everything we use.
TORCH_TARGET = "-DTORCH_TARGET_VERSION=0x020a000000000000"
DEFAULT_GENCODES = (
    "-gencode=arch=compute_80,code=sm_80 "
    "-gencode=arch=compute_90a,code=sm_90a "
    "-gencode=arch=compute_80,code=compute_80"
)
gencodes = os.environ.get("CONVT3D_GENCODES", DEFAULT_GENCODES).split()

sources = ["csrc/bindings.cpp"] + sorted(glob.glob("csrc/kernels/*.cu"))

ext = CUDAExtension(
    name="convt3d_ops._C",
    sources=sources,
    include_dirs=[os.path.join(ROOT, "csrc", "kernels")],
    py_limited_api=True,
    extra_compile_args={
        "cxx": ["-O3", TORCH_TARGET, "-DUSE_CUDA"],
        "nvcc": ["-O3", TORCH_TARGET, "-DUSE_CUDA", "-lineinfo", "--expt-relaxed-constexpr"] + gencodes,
    },
)

setup(
    # name, version and dependencies live in pyproject.toml
    packages=["convt3d_ops"],
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
