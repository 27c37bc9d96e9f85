"""The host's steps inside one synchronized fused forward of the headline problem: torch.profiler's
CPU events (allocations, CUDA runtime calls, the op) in the order they happen, each with its start
(microseconds after the call's start) and duration, the median over 10 calls. For NOTES: what the host
does before the first kernel can start. (The profiler slows the host by a few microseconds per event.)

    cd /tmp && python3 /path/to/benchmarks/host_events.py --modes fp32,bf16
"""
import argparse
import statistics

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from convt3d_ops import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="fp32,bf16")
    ap.add_argument("--problem", default="headline")
    args = ap.parse_args()
    for mode in args.modes.split(","):
        (p,) = bench.problems_named(args.problem)
        torch.backends.cudnn.allow_tf32 = mode != "ieee"
        inputs = bench.make_inputs(p, mode)
        fwd = bench.ours_forward(p, bench.make_model(p, mode))
        with torch.no_grad():
            for _ in range(5):
                fwd(inputs[0])
                torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for i in range(12):
                    with record_function("fwd_call"):
                        fwd(inputs[i % len(inputs)])
                    torch.cuda.synchronize()
        events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
        calls = sorted((e for e in events if e.name == "fwd_call"), key=lambda e: e.time_range.start)
        rows = {}
        for call in calls[2:]:
            lo, hi = call.time_range.start, call.time_range.end
            inside = sorted((e for e in events if lo <= e.time_range.start <= hi and e.name != "fwd_call"),
                            key=lambda e: e.time_range.start)
            for j, e in enumerate(inside):  # (the j-th event of every call is the same step)
                duration = e.time_range.end - e.time_range.start
                rows.setdefault((j, e.name), []).append((e.time_range.start - lo, duration))
            rows.setdefault((len(events), "call total"), []).append((hi - lo, 0.0))
        print(f"==== {p.name} {mode}: CPU events inside a fused_forward call (us after the call's start: "
              "median start, median duration)")
        for (_, name), v in sorted(rows.items()):
            print(f"  {statistics.median(s for s, _ in v):8.1f} {statistics.median(d for _, d in v):8.1f}  {name[:90]}")


if __name__ == "__main__":
    main()
