"""Per-kernel GPU times of the headline problem (forward, and forward+backward), via
torch.profiler. For benchmarks/NOTES.md: which kernel the time goes to.

    cd /tmp && python3 /path/to/benchmarks/profile_headline.py [--mode fp32|ieee|bf16]
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import convt3d_ops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="fp32", choices=["fp32", "ieee", "bf16"])
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = args.mode != "ieee"
    dtype = torch.bfloat16 if args.mode == "bf16" else torch.float32
    torch.manual_seed(0)
    model = convt3d_ops.ModelNew(*convt3d_ops.get_init_inputs()).cuda().to(dtype)
    x = convt3d_ops.get_inputs()[0].cuda().to(dtype)
    for grad in (False, True):
        xi = x.clone().requires_grad_(grad)
        for _ in range(2):  # warm-up
            with torch.set_grad_enabled(grad):
                y = model(xi)
                if grad:
                    y.backward(torch.ones_like(y))
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                with torch.set_grad_enabled(grad):
                    y = model(xi)
                    if grad:
                        y.backward(torch.ones_like(y))
            torch.cuda.synchronize()
        print(f"==== {args.mode} {'forward+backward' if grad else 'forward'} (3 iterations) ====")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=70))


if __name__ == "__main__":
    main()
