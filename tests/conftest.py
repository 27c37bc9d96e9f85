"""Test session setup: make sure the installed package (with its compiled _C) is the
one under test, not the source tree, and report which device paths will run."""
import importlib.util
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python -m pytest` puts the working directory first on sys.path; from the repository
# root that would shadow the installed wheel with the uncompiled source tree (`make test`
# runs from tests/ for that reason; this keeps `python -m pytest tests` working too).
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _ROOT]
# ... and the same for the subprocesses torch.compile starts (Python >= 3.11).
os.environ["PYTHONSAFEPATH"] = "1"

if importlib.util.find_spec("convt3d_ops._C") is None:
    raise pytest.UsageError("convt3d_ops is not installed (or has no compiled _C): build and install the wheel first "
                            "(see README: `make install`, or pip install dist/convt3d_ops-*.whl)")


def pytest_report_header(config):
    import torch

    import convt3d_ops
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (GPU tests are skipped)"
    return [f"convt3d_ops {convt3d_ops.__version__} from {os.path.dirname(convt3d_ops.__file__)}",
            f"torch {torch.__version__}, CUDA device: {cuda}"]
