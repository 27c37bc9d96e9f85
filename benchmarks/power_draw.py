"""Time, power draw, SM clock and energy per call of a bench problem's forward pieces, each run back to
back for a few seconds while `nvidia-smi` samples the GPU, next to a dense GEMM of the same useful
FLOPs (PyTorch's matmul: cuBLAS) and cuDNN's conv + ReLU (the conv3d rewrite, stride 1). At the
GPU's power cap the GEMM is the ceiling that shows what a forward's multiply-adds can cost on this
machine at best (NOTES v32):

    cd /tmp && python3 /path/to/benchmarks/power_draw.py --problems headline --modes fp32,bf16
"""
import argparse
import statistics
import subprocess
import threading
import time

import torch
import torch.nn.functional as F

import convt3d_ops
from convt3d_ops import bench


class PowerSampler:
    """nvidia-smi's power draw (W) and SM clock (MHz) every 100 ms, with the host time of each line."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=power.draw,clocks.sm", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE, text=True)
        self.samples = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                watts, mhz = (float(v) for v in line.split(","))
            except ValueError:
                continue
            self.samples.append((time.perf_counter(), watts, mhz))

    def between(self, t0, t1):
        return [(w, m) for t, w, m in self.samples if t0 <= t <= t1]

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def run_back_to_back(fn, inputs, sampler, seconds):
    """Calls fn back to back for `seconds` (no synchronization between calls); the mean ms per call
    from CUDA events, and the median power and clock sampled in the second half of the run."""
    for i in range(3):
        fn(inputs[i % len(inputs)])
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    calls, t0 = 0, time.perf_counter()
    a.record()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            fn(inputs[calls % len(inputs)])
            calls += 1
        torch.cuda.current_stream().synchronize()  # keeps the host's time and the GPU's together
    b.record()
    b.synchronize()
    t1 = time.perf_counter()
    ms = a.elapsed_time(b) / calls
    got = sampler.between(t0 + (t1 - t0) / 2, t1)
    watts = statistics.median(w for w, _ in got) if got else float("nan")
    mhz = statistics.median(m for _, m in got) if got else float("nan")
    return ms, watts, mhz


def workloads(p, mode):
    """(name, fn, inputs, GFLOP: the useful ones, the GEMM's own) of each piece of problem p in `mode`."""
    model = bench.make_model(p, mode)
    conv, gn = model[0], model[2]
    w = conv.weight.detach()
    xs = bench.make_inputs(p, mode)
    gflop = p.useful_flops() / 1e9
    out = [
        ("ours fused", bench.ours_forward(p, model), xs, gflop),
        ("ours conv+relu", lambda x: convt3d_ops.conv_transpose3d_relu(x, w, None, stride=p.stride,
                                                                       padding=p.padding), xs, gflop),
    ]
    if p.stride == 1:
        w_conv = w.flip(2, 3, 4).transpose(0, 1).contiguous()
        pad = p.kernel - 1 - p.padding
        out.append(("cudnn conv+relu", lambda x: torch.relu(F.conv3d(x, w_conv, None, 1, pad)), xs, gflop))
    # the same number of multiply-adds as one dense GEMM that is bound by its MMAs, not by memory
    # (8192 x K) @ (K x 8192), K the multiple of 64 nearest to equal FLOPs (the headline's: exactly 1728;
    # the problem's own im2col shape, positions x Cin k^3, would read gigabytes per call), operands
    # drawn as the problem's (uniform in [0, 1) and the module's initial weights' range)
    side = 8192
    k_dim = max(64, round(p.useful_flops() / (2 * side * side) / 64) * 64)
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.rand(side, k_dim, device="cuda", dtype=w.dtype, generator=g)
    bound = float(w.abs().max())
    b = (torch.rand(k_dim, side, device="cuda", dtype=w.dtype, generator=g) * 2 - 1) * bound
    c = torch.empty(side, side, device="cuda", dtype=w.dtype)
    out.append(("cublas gemm", lambda _: torch.mm(a, b, out=c), [None], 2 * side * side * k_dim / 1e9))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="headline")
    ap.add_argument("--modes", default="fp32,bf16")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    sampler = PowerSampler()
    time.sleep(0.5)
    idle = statistics.median(w for _, w, _ in sampler.samples) if sampler.samples else float("nan")
    print(f"{torch.cuda.get_device_name(0)}; idle power {idle:.0f} W", flush=True)
    print(f"{'problem':10s} {'mode':5s} {'workload':16s} {'ms':>7s} {'TFLOP/s':>8s} {'W':>5s} {'MHz':>5s} "
          f"{'mJ/call':>8s}", flush=True)
    try:
        for mode in args.modes.split(","):
            tf32 = mode != "ieee"
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for p in bench.problems_named(args.problems):
                for name, fn, inputs, gflop in workloads(p, mode):
                    with torch.no_grad():
                        ms, watts, mhz = run_back_to_back(fn, inputs, sampler, args.seconds)
                    print(f"{p.name:10s} {mode:5s} {name:16s} {ms:7.3f} {gflop / ms:8.1f} {watts:5.0f} {mhz:5.0f} "
                          f"{watts * ms:8.1f}", flush=True)
                    torch.cuda.empty_cache()
    finally:
        sampler.close()


if __name__ == "__main__":
    main()
