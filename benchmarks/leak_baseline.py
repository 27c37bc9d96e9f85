"""Bisects compute-sanitizer memcheck's leak report: one call on fresh inputs, everything deleted
before exit. Run under `compute-sanitizer --tool memcheck --leak-check full` with
PYTORCH_NO_CUDA_MEMORY_CACHING=1, with one of the callers below as the argument:
  none   no op (the inputs only)       torch  torch.nn.functional.conv_transpose3d
  api    convt3d_ops.fused_forward      raw    torch.ops.convt3d.fused_forward (no Python wrapper)
  conv   torch.ops.convt3d.conv_transpose3d_relu (the Hopper kernel on an H100)
  portable  the same op with groups=2 (the portable kernel)
  path   torch.ops.convt3d.forward_path (the op's host code up to dispatch, no kernel launch)
  ext_launch / ext_own / ext_setattr / ext_entry   no op of ours: a plain library
         (benchmarks/probes/leak_probe.cu, path in LEAK_PROBE_SO, loaded with ctypes) launches a
         kernel on x / on memory of its own / raises a kernel's shared-memory limit and launches it
         on x / looks up a driver entry point
A caller prefixed with warm_ (warm_conv) first runs the op once on small inputs of its own,
before the big buffer exists: if the records name only allocations that were live at our first
kernel launch, the warm run reports none of the big buffer. A caller prefixed with sync_ waits for
the device after the op, before the deletes (frees then never meet a kernel in flight).
Also prints what PyTorch's caching allocator counts as allocated after the deletes (run it
without PYTORCH_NO_CUDA_MEMORY_CACHING for that number to mean anything)."""
import ctypes
import gc
import os
import sys

import torch

import convt3d_ops

CALLERS = {
    "none": lambda x, w, b, gw, gb: None,
    "torch": lambda x, w, b, gw, gb: torch.nn.functional.conv_transpose3d(x, w, b),
    "api": lambda x, w, b, gw, gb: convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=4),
    "raw": lambda x, w, b, gw, gb: torch.ops.convt3d.fused_forward(x, w, b, gw, gb, [1] * 3, [0] * 3, [0] * 3, [1] * 3,
                                                                  1, 4, 1e-5),
    "conv": lambda x, w, b, gw, gb: torch.ops.convt3d.conv_transpose3d_relu(x, w, b, [1] * 3, [0] * 3, [0] * 3,
                                                                           [1] * 3, 1),
    "portable": lambda x, w, b, gw, gb: torch.ops.convt3d.conv_transpose3d_relu(x, w[:, :24], b, [1] * 3, [0] * 3,
                                                                               [0] * 3, [1] * 3, 2),
    "path": lambda x, w, b, gw, gb: torch.ops.convt3d.forward_path(x, w, [1] * 3, [0] * 3, [0] * 3, [1] * 3, 1),
    "ext_launch": lambda x, w, b, gw, gb: _probe("probe_launch", ctypes.c_void_p(x.data_ptr()), ctypes.c_long(x.numel())),
    "ext_own": lambda x, w, b, gw, gb: _probe("probe_launch_own"),
    "ext_setattr": lambda x, w, b, gw, gb: _probe("probe_set_attribute", ctypes.c_void_p(x.data_ptr())),
    "ext_entry": lambda x, w, b, gw, gb: _probe("probe_entry_point"),
}


def _probe(name, *args):
    rc = getattr(ctypes.CDLL(os.environ["LEAK_PROBE_SO"]), name)(*args)
    assert rc == 0, f"{name} returned {rc}"


def main():
    torch.manual_seed(0)
    caller = CALLERS[sys.argv[1].removeprefix("warm_").removeprefix("sync_")]
    if sys.argv[1].startswith("warm_"):
        small = [torch.randn(1, 32, 2, 2, 2, device="cuda"), torch.randn(32, 48, 3, 3, 3, device="cuda"),
                 torch.randn(48, device="cuda"), torch.ones(48, device="cuda"), torch.zeros(48, device="cuda")]
        caller(*small)
        torch.cuda.synchronize()
        del small
    free_before = torch.cuda.mem_get_info()[0]
    # x is a view of a 4 GiB buffer, so whether the device gets its memory back is visible in
    # cudaMemGetInfo, with or without a tool
    big = torch.empty(2 ** 30, device="cuda")
    inputs = [big[:2 * 32 * 5 * 6 * 7].view(2, 32, 5, 6, 7).normal_(),
              torch.randn(32, 48, 3, 3, 3, device="cuda") * 0.05, torch.randn(48, device="cuda"), torch.rand(48, device="cuda") + 0.5, torch.randn(48, device="cuda")]
    out = caller(*inputs)
    if sys.argv[1].startswith("sync_"):
        torch.cuda.synchronize()
    del out, inputs, big
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    print(f"device memory not returned: {(free_before - torch.cuda.mem_get_info()[0]) / 2 ** 30:.2f} GiB")
    print("done", sys.argv[1], "allocated after the deletes:", torch.cuda.memory_allocated(), "bytes")


if __name__ == "__main__":
    main()
