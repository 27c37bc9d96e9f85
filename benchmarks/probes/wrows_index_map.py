"""CPU check of the Hopper kernel's W-rows index map (csrc/kernels/common/gemm_forms.h), run before
the kernel was written (v14 in benchmarks/NOTES.md): rows (W tap fw, channel) over a column grid whose
W extent is We = Wo + pW, each output the sum over fw of row fw at column w + fw where w + fw < We,
K over the (d, h) taps of the flipped kernel. Compared with F.conv_transpose3d in float64 over random
stride-1 geometries; prints how many differ (0 expected). Not project code:

    python3 benchmarks/probes/wrows_index_map.py
"""
import random

import torch
import torch.nn.functional as F


def wrows_conv_transpose(x, w, pad):
    """Stride-1 transposed conv computed the way the W-rows form does."""
    K = w.shape[2:]
    q = [K[d] - 1 - pad[d] for d in range(3)]  # the correlation's zero padding per side
    out = [x.shape[2 + d] + K[d] - 1 - 2 * pad[d] for d in range(3)]
    We = out[2] + pad[2]  # column grid along W: every column whose pixel may be nonzero
    margin = max(K) + max(abs(v) for v in q) + 2
    xp = F.pad(x, (margin,) * 6)
    # rows[:, fw]: the GEMM rows of W tap fw, column (d, h, w') reading pixel w' - q_w
    rows = torch.zeros(x.shape[0], K[2], w.shape[1], out[0], out[1], We, dtype=x.dtype)
    for fd in range(K[0]):
        for fh in range(K[1]):
            d0, h0, w0 = margin - q[0] + fd, margin - q[1] + fh, margin - q[2]
            B = xp[:, :, d0:d0 + out[0], h0:h0 + out[1], w0:w0 + We]
            for fw in range(K[2]):
                tap = w[:, :, K[0] - 1 - fd, K[1] - 1 - fh, K[2] - 1 - fw]  # (Cin, Cout), flipped kernel
                rows[:, fw] += torch.einsum("ncdhw,co->nodhw", B, tap)
    y = torch.zeros(x.shape[0], w.shape[1], *out, dtype=x.dtype)
    for fw in range(K[2]):  # the epilogue: output w takes row fw at column w + fw while inside the grid
        for col in range(out[2]):
            if col + fw < We:
                y[..., col] += rows[:, fw, ..., col + fw]
    return y


def main():
    torch.manual_seed(0)
    random.seed(0)
    trials, bad = 60, 0
    for _ in range(trials):
        K = [random.randint(1, 4), random.randint(1, 4), random.randint(2, 5)]
        pad = [random.randint(0, K[d] - 1) for d in range(3)]
        size = [random.randint(1, 6) for _ in range(3)]
        for d in range(3):
            while size[d] + K[d] - 1 - 2 * pad[d] < 1:
                size[d] += 1
        x = torch.randn(2, 3, *size, dtype=torch.float64)
        w = torch.randn(3, 5, *K, dtype=torch.float64)
        err = (F.conv_transpose3d(x, w, padding=pad) - wrows_conv_transpose(x, w, pad)).abs().max().item()
        if err > 1e-9:
            bad += 1
            print("differs:", K, pad, size, err)
    print(f"{trials} geometries, {bad} differ")


if __name__ == "__main__":
    main()
