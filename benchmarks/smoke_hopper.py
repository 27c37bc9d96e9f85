"""A quick look at the forward kernels on a few problems before the full suite: path taken and
relative L2 error against float64 (conv+ReLU and the fused chain). Meant for a short device run:

    cd /tmp && timeout 120 python3 /path/to/benchmarks/smoke_hopper.py
"""
import torch
import torch.nn.functional as F

import convt3d_ops

PROBLEMS = [  # (N, Cin, Cout, spatial, k, padding, stride, groups)
    (2, 64, 128, (8, 8, 8), 3, 0, 1, 8),
    (1, 16, 144, (3, 4, 5), 3, (1, 0, 1), 1, 3),
    (2, 8, 16, (4, 4, 4), 2, 0, 1, 4),     # W-rows form, 32 rows (one warpgroup)
    (2, 32, 32, (6, 7, 40), 3, 1, 1, 8),   # W-rows form, 96 rows, W padding (an extended column grid)
    (2, 128, 64, (8, 8, 8), 2, 0, 2, 8),   # W sub-pixel form, k2 s2: even W
    (2, 24, 40, (3, 5, 7), 2, 0, 2, 4),    # W sub-pixel form, k2 s2: odd W
    (2, 32, 64, (8, 8, 8), 4, 1, 2, 8),    # W sub-pixel form, k4 s2 p1 (three W taps)
    (1, 40, 136, (5, 6, 7), 4, 1, 2, 4),   # phase form, k4 s2 p1: 2 channel tiles, partial position tile
]


def rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


def main():
    torch.manual_seed(0)
    for dtype, tf32 in ((torch.float32, True), (torch.bfloat16, True), (torch.float16, True), (torch.float32, False)):
        torch.backends.cudnn.allow_tf32 = tf32
        for n, cin, cout, size, k, pad, stride, groups in PROBLEMS:
            x = torch.randn(n, cin, *size, device="cuda").to(dtype)
            w = (torch.randn(cin, cout, k, k, k, device="cuda") / (cin * k ** 3) ** 0.5).to(dtype)
            b = torch.randn(cout, device="cuda").to(dtype) * 0.1
            kw = dict(padding=pad, stride=stride)
            path = convt3d_ops.forward_path(x, w, **kw)
            h = convt3d_ops.conv_transpose3d_relu(x, w, b, **kw)
            y = convt3d_ops.fused_forward(x, w, b, num_groups=groups, **kw)
            torch.cuda.synchronize()
            h64 = torch.relu(F.conv_transpose3d(x.double(), w.double(), b.double(), **kw))
            y64 = F.group_norm(h64, groups)
            print(f"{str(dtype):15s} tf32={tf32!s:5s} {str((n, cin, cout, size, k, pad, stride)):44s} {path:8s} "
                  f"conv rel L2 {rel(h, h64):.2e}  fused rel L2 {rel(y, y64):.2e}", flush=True)


if __name__ == "__main__":
    main()
