"""Benchmark: convt3d_ops against PyTorch's best configurations.

    python -m convt3d_ops.bench                 # headline problem, all precision modes
    python -m convt3d_ops.bench --sweep         # plus the sweep of shapes
    python -m convt3d_ops.bench --json out.json

On a GPU: ours is timed in this process; each PyTorch configuration runs in a
fresh subprocess (cuDNN keeps its first algorithm choice per problem within a
process, so flags must not share one), timing with CUDA events after warm-up,
the median of many runs, rotating between input copies larger than L2 together.
Without a GPU it runs the CPU path on a small problem and says so.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

TORCH_VARIANTS = ("eager", "eager_benchmark", "compile_benchmark", "conv3d_rewrite_compile")
MODES = ("fp32", "ieee", "bf16")  # fp32: TF32 allowed (PyTorch's default); ieee: TF32 off


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    n: int
    c_in: int
    c_out: int
    size: int
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    num_groups: int = 8

    @property
    def out_size(self) -> int:
        return (self.size - 1) * self.stride - 2 * self.padding + self.kernel

    def useful_flops(self) -> float:
        """2 x multiply-adds that touch a real input element (zero padding not counted)."""
        return 2.0 * self.n * self.c_in * self.size ** 3 * self.c_out * self.kernel ** 3

    def min_bytes(self, elem: int) -> float:
        """Read x and the weights once, write y once."""
        return elem * (self.n * self.c_in * self.size ** 3 + self.c_in * self.c_out * self.kernel ** 3
                       + self.n * self.c_out * self.out_size ** 3)


HEADLINE = Problem("headline", 16, 64, 128, 32)
SWEEP = [
    Problem("batch1", 1, 64, 128, 32),
    Problem("batch32", 32, 64, 128, 32),
    Problem("spatial8", 16, 64, 128, 8),
    Problem("spatial64", 2, 64, 128, 64),
    Problem("ch32", 16, 32, 32, 32),
    Problem("ch256", 4, 256, 256, 32),
    Problem("unet_k2s2", 8, 128, 64, 32, kernel=2, stride=2),
    Problem("k4s2p1", 8, 64, 64, 32, kernel=4, stride=2, padding=1),
]


# ---- timing ------------------------------------------------------------------------

def event_times(fn, inputs: List, min_runs: int = 10, max_runs: int = 50, budget_s: float = 2.0) -> List[float]:
    """Milliseconds of each call fn(inp), cycling through `inputs`, with CUDA events; each call
    synchronized (the GPU idles while the host prepares the next). Stops after budget_s past min_runs."""
    times, start = [], time.perf_counter()
    for i in range(max_runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(inputs[i % len(inputs)])
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        if i + 1 >= min_runs and time.perf_counter() - start > budget_s:
            break
    return times


def time_cuda(fn, inputs: List, warmup: int = 3, min_runs: int = 10, max_runs: int = 50, budget_s: float = 2.0):
    """Median milliseconds of fn(inp) after warm-up (event_times)."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    torch.cuda.synchronize()
    return statistics.median(event_times(fn, inputs, min_runs, max_runs, budget_s))


def _dtype(mode: str) -> torch.dtype:
    return torch.bfloat16 if mode == "bf16" else torch.float32


def make_inputs(p: Problem, mode: str, device: str = "cuda") -> List[torch.Tensor]:
    """Input copies whose total exceeds twice the L2 cache, so timings are not cache hits."""
    dtype = _dtype(mode)
    one = p.n * p.c_in * p.size ** 3 * torch.finfo(dtype).bits // 8
    l2 = torch.cuda.get_device_properties(0).L2_cache_size if device == "cuda" else 0
    copies = max(1, min(8, math.ceil(2 * l2 / max(one, 1))))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(p.n, p.c_in, p.size, p.size, p.size, generator=g).to(device=device, dtype=dtype)
    return [x] + [x.clone() for _ in range(copies - 1)]


def make_model(p: Problem, mode: str, device: str = "cuda"):
    """The three PyTorch modules of the reference chain (parameters shared with ours)."""
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose3d(p.c_in, p.c_out, p.kernel, stride=p.stride, padding=p.padding, bias=False)
    gn = torch.nn.GroupNorm(p.num_groups, p.c_out)
    return torch.nn.Sequential(conv, torch.nn.ReLU(), gn).to(device=device, dtype=_dtype(mode))


# ---- PyTorch configurations (run in a subprocess each) ----------------------------

def _conv3d_rewrite(model: torch.nn.Sequential, p: Problem):
    """ConvTranspose3d (stride 1) as conv3d with flipped, transposed weights and padding k-1-p."""
    conv, gn = model[0], model[2]
    w = conv.weight.detach().flip(2, 3, 4).transpose(0, 1).contiguous()
    pad = p.kernel - 1 - p.padding

    def fwd(x):
        return F.group_norm(torch.relu(F.conv3d(x, w, None, 1, pad)), gn.num_groups, gn.weight, gn.bias, gn.eps)
    return fwd


def problems_named(names: str) -> List[Problem]:
    """The problems of a comma list of names (headline and the sweep), in the sweep's order."""
    known = [HEADLINE] + SWEEP
    wanted = names.split(",")
    unknown = sorted(set(wanted) - {p.name for p in known})
    if unknown:
        raise ValueError(f"unknown problem(s) {unknown}; known: {[p.name for p in known]}")
    return [p for p in known if p.name in wanted]


def torch_forward(p: Problem, mode: str, variant: str, model):
    """x -> problem p's forward in PyTorch configuration `variant` (sets the global flags it needs),
    or None where the configuration does not apply."""
    torch.backends.cudnn.allow_tf32 = mode != "ieee"
    torch.backends.cuda.matmul.allow_tf32 = mode != "ieee"
    torch.backends.cudnn.benchmark = variant != "eager"
    if variant == "conv3d_rewrite_compile" and p.stride != 1:
        return None  # the rewrite is only a stride-1 identity
    torch._dynamo.reset()
    if variant == "compile_benchmark":
        return torch.compile(model)
    if variant == "conv3d_rewrite_compile":
        return torch.compile(_conv3d_rewrite(model, p))
    return model


def torch_worker(problems: List[Problem], mode: str, variant: str) -> Dict[str, Optional[float]]:
    results: Dict[str, Optional[float]] = {}
    for p in problems:
        model = make_model(p, mode)
        fn = torch_forward(p, mode, variant, model)
        if fn is None:
            results[p.name] = None
            continue
        inputs = make_inputs(p, mode)
        with torch.no_grad():
            results[p.name] = time_cuda(fn, inputs)
        del inputs, model, fn
        torch.cuda.empty_cache()
    return results


def run_torch_variant(problems: List[Problem], mode: str, variant: str) -> Dict[str, Optional[float]]:
    spec = json.dumps({"problems": [dataclasses.asdict(p) for p in problems], "mode": mode, "variant": variant})
    proc = subprocess.run([sys.executable, "-m", "convt3d_ops.bench", "--torch-worker", spec], capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"  [torch {variant} {mode}] failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {p.name: None for p in problems}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- ours ------------------------------------------------------------------------------

def ours_forward(p: Problem, model):
    """x -> our fused forward of problem p with the parameters of `model` (make_model's modules)."""
    import convt3d_ops
    conv, gn = model[0], model[2]

    def fwd(x):
        return convt3d_ops.fused_forward(x, conv.weight, None, gn.weight, gn.bias, num_groups=gn.num_groups,
                                         eps=gn.eps, stride=p.stride, padding=p.padding)
    return fwd


def time_ours(p: Problem, mode: str) -> Dict[str, float]:
    import convt3d_ops
    torch.backends.cudnn.allow_tf32 = mode != "ieee"
    model = make_model(p, mode)
    conv = model[0]
    inputs = make_inputs(p, mode)
    fwd = ours_forward(p, model)

    with torch.no_grad():
        ms = time_cuda(fwd, inputs)
        path = convt3d_ops.forward_path(inputs[0], conv.weight, stride=p.stride, padding=p.padding)
        conv_ms = time_cuda(lambda x: convt3d_ops.conv_transpose3d_relu(x, conv.weight, None, stride=p.stride,
                                                                        padding=p.padding), inputs)
    return {"ms": ms, "conv_relu_ms": conv_ms, "path": path}


# ---- report ------------------------------------------------------------------------------

def run_gpu(problems: List[Problem], modes: List[str], variants: List[str], json_path: str,
            every_mode_on_every_problem: bool = False) -> List[dict]:
    """Unless every_mode_on_every_problem (problems named on the command line), the bf16 and IEEE
    modes run on the headline and the two stride-2 configurations only."""
    dev = torch.cuda.get_device_name(0)
    print(f"convt3d_ops benchmark on {dev} (torch {torch.__version__})", flush=True)
    rows = []
    for mode in modes:
        mode_problems = (problems if mode == "fp32" or every_mode_on_every_problem
                         else [q for q in problems if q.name in ("headline", "unet_k2s2", "k4s2p1")])
        torch_times = {}
        for variant in variants:
            print(f"  timing PyTorch {variant} [{mode}] on {len(mode_problems)} problem(s) ...", flush=True)
            torch_times[variant] = run_torch_variant(mode_problems, mode, variant)
        for k, p in enumerate(mode_problems):
            print(f"  timing ours [{mode}] {p.name} ({k + 1}/{len(mode_problems)}) ...", flush=True)
            ours = time_ours(p, mode)
            theirs = {v: torch_times[v].get(p.name) for v in variants}
            valid = {v: t for v, t in theirs.items() if t is not None}
            best_variant = min(valid, key=valid.get) if valid else None
            elem = 2 if mode == "bf16" else 4
            rows.append({
                "problem": dataclasses.asdict(p), "mode": mode, "device": dev, "ours_ms": ours["ms"],
                "ours_conv_relu_ms": ours["conv_relu_ms"], "path": ours["path"], "torch_ms": theirs,
                "best_torch": best_variant, "best_torch_ms": valid.get(best_variant),
                "speedup_vs_best": (valid[best_variant] / ours["ms"]) if best_variant else None,
                "tflops": p.useful_flops() / ours["ms"] / 1e9,
                "conv_relu_tflops": p.useful_flops() / ours["conv_relu_ms"] / 1e9,
                "gbps": p.min_bytes(elem) / ours["ms"] / 1e6,
            })
    print_table(rows, variants)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump({"device": dev, "torch": torch.__version__, "rows": rows}, f, indent=1)
    print(f"JSON written to {json_path}")
    write_report(rows, variants, json_path, dev)
    return rows


def _fmt(v, spec="{:.3f}"):
    return "n/a" if v is None else spec.format(v)


def table_lines(rows: List[dict], variants: List[str]) -> List[List[str]]:
    head = ["problem", "mode", "path", "ours ms", "conv+relu ms", "TFLOP/s", "GB/s"] + [f"{v} ms" for v in variants]
    head += ["best PyTorch", "speedup"]
    lines = [head]
    for r in rows:
        lines.append([r["problem"]["name"], r["mode"], r["path"], _fmt(r["ours_ms"]), _fmt(r["ours_conv_relu_ms"]),
                      _fmt(r["tflops"], "{:.0f}"), _fmt(r["gbps"], "{:.0f}")]
                     + [_fmt(r["torch_ms"][v]) for v in variants]
                     + [r["best_torch"] or "n/a", _fmt(r["speedup_vs_best"], "{:.2f}x")])
    return lines


def write_report(rows: List[dict], variants: List[str], json_path: str, device: str) -> None:
    """A Markdown table and (where matplotlib is installed) a PNG next to the JSON."""
    base = os.path.splitext(json_path)[0]
    lines = table_lines(rows, variants)
    with open(base + ".md", "w") as f:
        f.write(f"Benchmark on {device}, torch {torch.__version__} (ms: median forward time; speedup: best PyTorch "
                "configuration / ours)\n\n")
        f.write("| " + " | ".join(lines[0]) + " |\n|" + "---|" * len(lines[0]) + "\n")
        for line in lines[1:]:
            f.write("| " + " | ".join(line) + " |\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot written")
        return
    labels = [f"{r['problem']['name']}\n{r['mode']}" for r in rows]
    series = [("ours", [r["ours_ms"] for r in rows])] + [(v, [r["torch_ms"][v] for r in rows]) for v in variants]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(rows)), 8))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        xs = [j + i * width for j in range(len(rows))]
        ax1.bar(xs, [v if v is not None else 0 for v in values], width, label=name)
    ax1.set_yscale("log")
    ax1.set_ylabel("forward time, ms (log)")
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], labels, fontsize=7)
    ax1.legend(fontsize=7)
    ax1.set_title(f"ConvTranspose3d -> ReLU -> GroupNorm forward on {device}")
    speedups = [r["speedup_vs_best"] or 0 for r in rows]
    ax2.bar(range(len(rows)), speedups, color=["tab:green" if s >= 1 else "tab:red" for s in speedups])
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_ylabel("speedup vs best PyTorch")
    ax2.set_xticks(range(len(rows)), labels, fontsize=7)
    fig.tight_layout()
    fig.savefig(base + ".png", dpi=120)
    print(f"report written to {base}.md and {base}.png")


def print_table(rows: List[dict], variants: List[str]) -> None:
    lines = table_lines(rows, variants)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    for i, line in enumerate(lines):
        print("  ".join(str(c).rjust(w) for c, w in zip(line, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def run_cpu() -> None:
    print("No CUDA device found: running the CPU path (a correctness demo, not a performance benchmark).")
    p = Problem("cpu-demo", 2, 16, 32, 12, num_groups=8)
    model = make_model(p, "fp32", device="cpu")
    x = make_inputs(p, "fp32", device="cpu")[0]
    fwd = ours_forward(p, model)

    def ours_fn():
        return fwd(x)

    def median_ms(fn, runs=5):
        fn()  # warm-up
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times)

    with torch.no_grad():
        ours, ref = ours_fn(), model(x)
        ours_ms, ref_ms = median_ms(ours_fn), median_ms(lambda: model(x))
        ref64 = model.double()(x.double())
    err = ((ours.double() - ref64).norm() / ref64.norm()).item()
    print(f"problem: N={p.n} C_in={p.c_in} C_out={p.c_out} {p.size}^3 k={p.kernel} groups={p.num_groups}")
    print(f"ours {ours_ms:.1f} ms, PyTorch eager {ref_ms:.1f} ms (CPU, median of 5; the CPU path is PyTorch's "
          "own CPU ops plus argument checks)")
    print(f"relative L2 error vs float64: ours {err:.2e}, "
          f"PyTorch {((ref.double() - ref64).norm() / ref64.norm()).item():.2e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true", help="also run the sweep of shapes")
    ap.add_argument("--problems", help="comma list of problem names to run, in every mode given (default: headline, or all with --sweep)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of fp32 (TF32 allowed), ieee, bf16")
    ap.add_argument("--variants", default=",".join(TORCH_VARIANTS), help="PyTorch configurations to compare")
    ap.add_argument("--json", default="bench_out/bench.json", help="where to write the results")
    ap.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.torch_worker:
        spec = json.loads(args.torch_worker)
        res = torch_worker([Problem(**d) for d in spec["problems"]], spec["mode"], spec["variant"])
        print(json.dumps(res))
        return 0
    if not torch.cuda.is_available():
        run_cpu()
        return 0
    problems = [HEADLINE] + (SWEEP if args.sweep else [])
    if args.problems:
        try:
            problems = problems_named(args.problems)
        except ValueError as e:
            ap.error(str(e))
    run_gpu(problems, args.modes.split(","), args.variants.split(","), args.json,
            every_mode_on_every_problem=bool(args.problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
