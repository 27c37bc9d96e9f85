"""Where a synchronized call of the fused forward spends its time, as the benchmark times it
(event a, the call, event b, wait for b): the host's progress through the call next to the GPU's.

    cd /tmp && python3 /path/to/benchmarks/call_timeline.py --problems headline,batch1 --modes fp32,bf16

For each problem: the event times of 50 calls (median and spread), then a torch.profiler trace of
`--calls` calls, every time in microseconds after the host's record of event a, the median over calls:
when the host enters the Python wrapper, enters the op, issues each launch and returns; when each
kernel starts and ends on the GPU. The GPU idles until its first kernel starts, so that start is the
host time the call costs before any work. (The profiler slows the host by a few microseconds per
recorded op; compare the event times with and without it.)
"""
import argparse
import statistics

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from convt3d_ops import bench

LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def event_times_us(fwd, inputs, calls):
    """bench.event_times for exactly `calls` calls, in microseconds."""
    return [t * 1e3 for t in bench.event_times(fwd, inputs, min_runs=calls, max_runs=calls)]


def spread(values):
    q = statistics.quantiles(values, n=10)
    return f"median {statistics.median(values):7.1f}  p10 {q[0]:7.1f}  p90 {q[-1]:7.1f}"


def traced_calls(fwd, inputs, calls):
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(calls):
            with record_function("timeline_call"):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                with record_function("timeline_event_a"):
                    a.record()
                with record_function("timeline_fwd"):
                    fwd(inputs[i % len(inputs)])
                with record_function("timeline_event_b"):
                    b.record()
                b.synchronize()
    return prof.events()


def per_call_timelines(events):
    """One dict per call: name -> time (us after the host's record of event a returned)."""
    calls = sorted((e for e in events if e.name == "timeline_call"), key=lambda e: e.time_range.start)
    fwds = sorted((e for e in events if e.name == "timeline_fwd"), key=lambda e: e.time_range.start)
    records = sorted((e for e in events if e.name in ("timeline_event_a", "timeline_event_b")),
                     key=lambda e: e.time_range.start)
    launches = sorted((e for e in events if e.name in LAUNCH_CALLS), key=lambda e: e.time_range.start)
    ops = sorted((e for e in events if e.name.startswith("convt3d::")), key=lambda e: e.time_range.start)
    kernels = sorted((e for e in events if e.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda e: e.time_range.start)
    out = []
    for k, call in enumerate(calls):
        lo = call.time_range.start
        hi = calls[k + 1].time_range.start if k + 1 < len(calls) else float("inf")
        inside = lambda es: [e for e in es if lo <= e.time_range.start < hi]
        rec = inside(records)
        if len(rec) < 2:
            continue
        t0 = rec[0].time_range.end
        row = {"python wrapper entered": inside(fwds)[0].time_range.start - t0}
        for op in inside(ops)[:1]:
            row[f"{op.name} entered"] = op.time_range.start - t0
            row[f"{op.name} returned"] = op.time_range.end - t0
        for j, e in enumerate(inside(launches)):
            row[f"launch {j} issued"] = e.time_range.start - t0
        for j, e in enumerate(inside(kernels)):
            row[f"kernel {j} GPU start  ({e.name[:48]})"] = e.time_range.start - t0
            row[f"kernel {j} GPU end"] = e.time_range.end - t0
        row["python wrapper returned"] = inside(fwds)[0].time_range.end - t0
        row["event b recorded (host)"] = rec[1].time_range.end - t0
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="headline,batch1,spatial8")
    ap.add_argument("--modes", default="fp32,bf16")
    ap.add_argument("--calls", type=int, default=30)
    args = ap.parse_args()
    for mode in args.modes.split(","):
        torch.backends.cudnn.allow_tf32 = mode != "ieee"
        for p in bench.problems_named(args.problems):
            inputs = bench.make_inputs(p, mode)
            fwd = bench.ours_forward(p, bench.make_model(p, mode))
            with torch.no_grad():
                bench.time_cuda(fwd, inputs)  # warm-up, as the benchmark
                plain = event_times_us(fwd, inputs, 50)
                events = traced_calls(fwd, inputs, args.calls)
                traced = event_times_us(fwd, inputs, args.calls)
            rows = per_call_timelines(events)
            if not rows:
                print(f"no traced calls found; event names: {sorted({e.name for e in events})[:60]}")
                continue
            print(f"==== {p.name} {mode}: event time per call (us), {spread(plain)}; right after the trace "
                  f"{spread(traced)}")
            names = list(rows[-1].keys())
            stable = [r for r in rows if list(r.keys()) == names]
            print(f"  {len(stable)} of {len(rows)} traced calls with the same events; us after event a's record:")
            for name in sorted(names, key=lambda n: statistics.median(r[n] for r in stable)):
                vals = [r[name] for r in stable]
                print(f"    {statistics.median(vals):8.1f}  (p10 {statistics.quantiles(vals, n=10)[0]:8.1f})  {name}")
            del inputs


if __name__ == "__main__":
    main()
