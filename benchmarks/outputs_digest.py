"""A digest (SHA-256 of the bytes) of our conv+ReLU and fused outputs for fixed inputs, per problem
and mode: run it under two wheels to see whether a kernel change left the arithmetic bitwise the same
(a reordering of work, not of sums). The GPU tests check each wheel against float64; this checks
one wheel against the other. With --error, also the conv+ReLU's relative L2 error against float64,
and PyTorch's own (ConvTranspose3d + ReLU in the same mode) beside it.

    cd /tmp && python3 /path/to/benchmarks/outputs_digest.py --problems headline,ch32 --modes ieee --label v22
"""
import argparse
import hashlib

import torch
import torch.nn.functional as F

from convt3d_ops import bench
import convt3d_ops.functional

# geometries the sweep lacks: a single channel tile of fewer than 128 real weight rows in the W
# sub-pixel form (Cout 24), and stride 1 with a partial second channel tile (Cout 200)
EXTRA = [
    bench.Problem("k4s2p1_c24", 2, 40, 24, 12, kernel=4, stride=2, padding=1, num_groups=4),
    bench.Problem("s1_c200", 2, 48, 200, 10, num_groups=8),
]


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def rel_l2(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).norm() / ref.norm()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="headline")
    ap.add_argument("--modes", default="ieee")
    ap.add_argument("--label", default="")
    ap.add_argument("--error", action="store_true")
    args = ap.parse_args()
    names = args.problems.split(",")
    named = [n for n in names if n not in {p.name for p in EXTRA}]
    problems = [p for p in EXTRA if p.name in names] + (bench.problems_named(",".join(named)) if named else [])
    for mode in args.modes.split(","):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode != "ieee"
        for p in problems:
            model = bench.make_model(p, mode)
            x = bench.make_inputs(p, mode)[0]
            conv, gn = model[0], model[2]
            with torch.no_grad():
                h = convt3d_ops.functional.conv_transpose3d_relu(x, conv.weight, None, stride=p.stride,
                                                                 padding=p.padding)
                y = convt3d_ops.functional.fused_forward(x, conv.weight, None, gn.weight, gn.bias,
                                                         stride=p.stride, padding=p.padding,
                                                         num_groups=p.num_groups, eps=gn.eps)
            line = f"{args.label:8s} {p.name:12s} {mode:5s} conv+relu {digest(h)} fused {digest(y)}"
            if args.error:
                with torch.no_grad():
                    geometry = dict(stride=p.stride, padding=p.padding)
                    ref = F.conv_transpose3d(x.double(), conv.weight.double(), **geometry).relu_()
                    torch_h = F.conv_transpose3d(x, conv.weight, **geometry).relu_()
                line += f"  rel L2 error: ours {rel_l2(h, ref):.2e}, PyTorch {rel_l2(torch_h, ref):.2e}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
