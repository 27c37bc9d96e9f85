"""The KernelBench-style drop-in (examples/kernelbench_modelnew.py), checked the way such
harnesses do: exec the file, build Model and ModelNew under one seed, compare outputs over
several seeds with atol = rtol = 1e-2, time both."""
import os
import time

import pytest
import torch

from convt3d_ops import reference
from helpers import ALL_DEVICES

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "kernelbench_modelnew.py")


def load_example():
    namespace = {}
    with open(EXAMPLE) as f:
        exec(compile(f.read(), EXAMPLE, "exec"), namespace)
    return namespace


def _time(fn, x, device, runs=5):
    fn(x)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(runs):
        fn(x)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / runs * 1e3


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_harness_like_check(device):
    ns = load_example()
    assert ns["get_init_inputs"]() == reference.get_init_inputs()
    init = ns["get_init_inputs"]()
    if device == "cpu":  # the full problem is 232 GFLOP: the CPU check uses a smaller input of the same model
        make_input = lambda: [torch.rand(2, init[0], 6, 6, 6)]  # noqa: E731
    else:
        make_input = ns["get_inputs"]
        assert make_input()[0].shape == reference.get_inputs()[0].shape
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = reference.Model(*init).to(device)
        torch.manual_seed(seed)
        model_new = ns["ModelNew"](*init).to(device)
        inputs = [t.to(device) for t in make_input()]
        with torch.no_grad():
            ref, out = model(*inputs), model_new(*inputs)
        torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)
    with torch.no_grad():
        t_ref, t_new = _time(model, inputs[0], device), _time(model_new, inputs[0], device)
    print(f"\nkernelbench-style check on {device}: Model {t_ref:.3f} ms, ModelNew {t_new:.3f} ms "
          f"(wall clock, {'timed on the GPU' if device == 'cuda' else 'CPU path'}; the benchmark is the real measure)")
