"""Does compute-sanitizer's initcheck see TMA (bulk tensor) stores as initializing global memory?

Run under `compute-sanitizer --tool initcheck python3 initcheck_tma_store.py` (caching allocator on).
The conv's 16-bit stride-1 output is written by the Hopper kernel's TMA stores. Run 1 writes it into
fresh memory and then reads it; run 2 into the same block after it was filled with NaN (a kernel
write, which initcheck tracks). If both runs' outputs are right (run 2: no NaN left, so the stores
wrote every element) while initcheck reports the reads of run 1 only, the reports are the tool not
tracking TMA stores, not unwritten memory.
"""
import torch
import torch.nn.functional as F

import convt3d_ops

torch.manual_seed(0)
x = torch.randn(2, 8, 6, 6, 8, device="cuda").bfloat16()
w = (torch.randn(8, 72, 3, 3, 3, device="cuda") / 15).bfloat16()
ref = F.conv_transpose3d(x.double(), w.double()).relu()
print("path:", convt3d_ops.forward_path(x, w), "| output", tuple(ref.shape), "bf16:", ref.numel() * 2 // 16,
      "16-byte rows")


def check(label, y):
    err = ((y.double() - ref).norm() / ref.norm()).item()
    print(f"{label}: rel L2 {err:.2e}, non-finite {int((~torch.isfinite(y)).sum())}", flush=True)


torch.cuda.synchronize()
print("---- run 1: fresh memory", flush=True)
y1 = convt3d_ops.conv_transpose3d_relu(x, w)
check("run 1", y1)
torch.cuda.synchronize()
print("---- run 2: a NaN-filled block", flush=True)
poison = torch.full_like(y1, float("nan"))
ptr = poison.data_ptr()
del poison
y2 = convt3d_ops.conv_transpose3d_relu(x, w)
print("same block:", y2.data_ptr() == ptr)
check("run 2", y2)
torch.cuda.synchronize()
print("---- done", flush=True)
