"""A bench problem's conv + ReLU alone, ours or cuDNN's (PyTorch's conv3d rewrite, what the
conv3d_rewrite_compile configuration runs), called in a loop, so ncu or a clock sampler can look at
cuDNN's kernel next to ours:

    cd /tmp && ncu -k "regex:sm90_xmma_fprop.*tilesize256x128x32" -c 1 ... python3 /path/to/conv_relu_loop.py \
        --who cudnn --problems ch256 --calls 3
    cd /tmp && python3 /path/to/conv_relu_loop.py --who ours --problems ch256 --calls 3000

Name cuDNN's kernel by the tile in its name (profile_headline.py --torch conv3d_rewrite_compile shows it):
cudnn.benchmark's trials launch other sm90_xmma kernels first, and under ncu, whose serialized launches
change their timings, it may even settle on another one.
"""
import argparse

import torch
import torch.nn.functional as F

import convt3d_ops
from convt3d_ops import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--who", default="ours", choices=["ours", "cudnn"])
    ap.add_argument("--problems", default="headline")
    ap.add_argument("--mode", default="fp32", choices=["fp32", "ieee", "bf16"])
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = args.mode != "ieee"
    torch.backends.cudnn.benchmark = True
    for p in bench.problems_named(args.problems):
        w = bench.make_model(p, args.mode)[0].weight.detach()
        if args.who == "cudnn":
            assert p.stride == 1, "the conv3d rewrite is a stride-1 identity"
            w_conv = w.flip(2, 3, 4).transpose(0, 1).contiguous()
            fn = lambda x: torch.relu(F.conv3d(x, w_conv, None, 1, p.kernel - 1 - p.padding))  # noqa: E731
        else:
            fn = lambda x: convt3d_ops.conv_transpose3d_relu(x, w, None, stride=p.stride, padding=p.padding)  # noqa: E731
        inputs = bench.make_inputs(p, args.mode)
        with torch.no_grad():
            ms = bench.time_cuda(fn, inputs, min_runs=args.calls, max_runs=args.calls, budget_s=0)
        print(f"{p.name:10s} {args.mode:5s} {args.who:5s} conv + relu {ms:.3f} ms over {args.calls} calls", flush=True)


if __name__ == "__main__":
    main()
