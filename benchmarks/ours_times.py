"""Times of our forward alone (fused, and conv+ReLU), for A/B runs of kernel versions: install one
wheel, run this, install the next. No PyTorch baselines (use `python -m convt3d_ops.bench` for those).

    cd /tmp && python3 /path/to/benchmarks/ours_times.py --problems headline,ch32 --modes fp32,bf16
"""
import argparse

from convt3d_ops import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="headline")
    ap.add_argument("--modes", default="fp32")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    problems = bench.problems_named(args.problems)
    for mode in args.modes.split(","):
        for p in problems:
            t = bench.time_ours(p, mode)
            print(f"{args.label:10s} {p.name:10s} {mode:5s} {t['path']:8s} fused {t['ms']:.3f} ms  "
                  f"conv+relu {t['conv_relu_ms']:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
