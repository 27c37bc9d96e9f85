"""Where the time of a small forward goes when the GPU work is short: host time per call of
fused_forward (Python checks, op dispatch, the C++ op's allocations and launches) against the
GPU time of the same work replayed from a CUDA graph, for bench problems.

    cd /tmp && python3 /path/to/benchmarks/host_overhead.py --problems spatial8,batch1
"""
import argparse
import time

import torch

from convt3d_ops import _checks, bench
from convt3d_ops.functional import _conv_params


def per_call_us(fn, calls=300):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - t0) / calls * 1e6  # the loop returns before the GPU finishes
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / calls * 1e6
    return host, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="spatial8,batch1")
    ap.add_argument("--trace", action="store_true",
                    help="also list the host calls inside the op (torch.profiler: dispatcher ops and CUDA runtime "
                         "calls with their CPU time; the op's self time is its own host code)")
    args = ap.parse_args()
    for p in bench.problems_named(args.problems):
        model = bench.make_model(p, "fp32")
        conv, gn = model[0], model[2]
        x = bench.make_inputs(p, "fp32")[0]
        w = conv.weight.detach()
        params = _conv_params(p.stride, p.padding, 0, 1, "op")

        fwd = bench.ours_forward(p, model)

        def fused():
            return fwd(x)

        def raw_op():
            return torch.ops.convt3d.fused_forward(x, w, None, gn.weight.detach(), gn.bias.detach(), *params, 1,
                                                   gn.num_groups, 1e-5, True, False)

        def checks_only():
            stride, padding, output_padding, dilation = _conv_params(p.stride, p.padding, 0, 1, "op")
            shape = _checks.check_conv_transpose_args(x, w, None, stride, padding, output_padding, dilation, 1, "op")
            _checks.check_group_norm_params(shape[1], gn.weight, gn.bias, gn.num_groups, 1e-5, x, "a", "b", "op")
            _checks.check_group_norm_values(shape[0], shape[1], _checks.spatial_size(shape), gn.num_groups, "op")

        def path_only():  # the op's argument checks and dispatch: no allocation, no launch
            return torch.ops.convt3d.forward_path(x, w, *params, 1, True)

        def conv_only():  # 3 allocations (output, packed x, packed w), 3 launches
            return torch.ops.convt3d.conv_transpose3d_relu(x, w, None, *params, 1, True)

        def nine_empties():  # what the fused op allocates, through the regular API
            return [torch.empty(16, device="cuda") for _ in range(9)]

        def five_launches():
            for _ in range(5):
                small.add_(1.0)

        small = torch.zeros(16, device="cuda")
        with torch.no_grad():
            rows = {name: per_call_us(fn) for name, fn in
                    [("fused_forward", fused), ("torch.ops (no Python checks)", raw_op), ("Python checks only", checks_only),
                     ("torch.ops forward_path", path_only), ("torch.ops conv_transpose3d_relu", conv_only),
                     ("9 x torch.empty", nine_empties), ("5 x small.add_ (launches)", five_launches)]}
            graph = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                raw_op()
                with torch.cuda.graph(graph):
                    raw_op()
            torch.cuda.current_stream().wait_stream(s)
            rows["CUDA graph replay (GPU time)"] = per_call_us(graph.replay)
        print(f"==== {p.name}: microseconds per call, host (loop without sync) / wall (until the GPU is done)")
        for name, (host, wall) in rows.items():
            print(f"  {name:32s} host {host:8.1f}  wall {wall:8.1f}")
        if args.trace:
            print_trace(raw_op)


def print_trace(fn, calls=200):
    with torch.no_grad():
        fn()
        torch.cuda.synchronize()
        acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
    print(f"  host calls inside {calls} calls of torch.ops.convt3d.fused_forward (self CPU time; per call = total / {calls}):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
