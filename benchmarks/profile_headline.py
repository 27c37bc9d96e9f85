"""Per-kernel GPU times of the headline problem (forward, and forward+backward), via
torch.profiler. For benchmarks/NOTES.md: which kernel the time goes to.

    cd /tmp && python3 /path/to/benchmarks/profile_headline.py [--mode fp32|ieee|bf16]
    cd /tmp && python3 /path/to/benchmarks/profile_headline.py --problems spatial8,ch32

With --problems (bench problem names): the fused forward of each, its kernels' GPU time per call
next to the time per call with CUDA events (as the benchmark takes it, each call synchronized),
whose difference is the time the GPU waits for the host; then the last call's kernels in GPU order
with the gaps between them. With --torch VARIANT (one of the benchmark's PyTorch configurations,
e.g. compile_benchmark) the same for PyTorch's forward instead of ours: whose kernels take its time.
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import convt3d_ops


def profile_problems(names, mode, torch_variant=None):
    from convt3d_ops import bench
    for p in bench.problems_named(names):
        torch.backends.cudnn.allow_tf32 = mode != "ieee"
        inputs = bench.make_inputs(p, mode)
        model = bench.make_model(p, mode)
        fwd = bench.torch_forward(p, mode, torch_variant, model) if torch_variant else bench.ours_forward(p, model)
        if fwd is None:
            print(f"==== {p.name} {mode}: {torch_variant} does not apply ====")
            continue

        calls = 10
        with torch.no_grad():
            event_ms = bench.time_cuda(fwd, inputs)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for i in range(calls):
                    fwd(inputs[i % len(inputs)])
                    torch.cuda.synchronize()  # each call alone on the GPU, as the benchmark times it
        kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu_ms = sum(e.self_device_time_total for e in kernels) / calls / 1e3
        who = torch_variant or "ours"
        print(f"==== {p.name} {mode} {who}: {event_ms:.3f} ms per call (events), kernels {gpu_ms:.3f} ms per call ====")
        for e in sorted(kernels, key=lambda e: -e.self_device_time_total):
            print(f"  {e.self_device_time_total / calls / 1e3:8.4f} ms  {e.count // calls:3d}x  {e.key[:150]}")
        print_last_call_timeline(prof, calls)


def print_last_call_timeline(prof, calls):
    """The last call's kernels in GPU order: start (us after the first kernel's start), duration, and the
    gap after the previous kernel's end (what launching the next kernel costs on the GPU)."""
    events = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                    key=lambda e: e.time_range.start)
    per_call = len(events) // calls
    if per_call == 0:  # e.g. under ncu, whose profiling leaves torch.profiler no CUPTI activities
        print("    (no kernels recorded: torch.profiler got no CUDA activities)")
        return
    last = events[-per_call:]
    t0, prev_end = last[0].time_range.start, None
    for e in last:
        gap = "" if prev_end is None else f"gap {e.time_range.start - prev_end:6.1f} us"
        print(f"    start {e.time_range.start - t0:7.1f} us  {e.time_range.elapsed_us():7.1f} us  {gap:14s} "
              f"{e.name[:70]}")
        prev_end = e.time_range.end


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="fp32", choices=["fp32", "ieee", "bf16"])
    ap.add_argument("--problems", default="")
    ap.add_argument("--torch", default="", help="with --problems: profile this PyTorch configuration, not ours")
    args = ap.parse_args()
    if args.problems:
        profile_problems(args.problems, args.mode, args.torch or None)
        return
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
