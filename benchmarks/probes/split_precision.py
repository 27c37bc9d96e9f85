"""CPU emulation of fp32-accurate operand splits for the TF32-off mode (NOTES v25): the error of each
scheme's operand representation against float64, on a dot-product set shaped like the headline GEMM
(K = 1728). Products are summed in float64, so only the representation errs (plus, for reference, a
plain fp32 matmul, whose error is its accumulation).

    python3 benchmarks/probes/split_precision.py
"""
import torch


def tf32(t):
    """Round fp32 to TF32 (10 mantissa bits), to nearest, ties to even."""
    i = t.float().contiguous().view(torch.int32)
    return ((i + 0xFFF + ((i >> 13) & 1)) & ~0x1FFF).view(torch.float32)


def bf16(t):
    return t.float().to(torch.bfloat16).double()


def rel(y, ref):
    d = y - ref
    return f"rel L2 {(d.norm() / ref.norm()).item():.2e}, rel max {(d.abs().max() / ref.abs().max()).item():.2e}"


def main():
    torch.manual_seed(0)
    M, K, N = 4096, 1728, 128
    for name, x in (("normal", torch.randn(M, K)), ("relu(normal)", torch.relu(torch.randn(M, K)))):
        w = torch.randn(K, N) * 0.05
        ref = x.double() @ w.double()
        bx, bw = tf32(x), tf32(w)
        sx, sw = x - bx, w - bw  # exact in fp32
        big = bx.double() @ bw.double()
        schemes = {
            "3xTF32 (small parts in TF32)": big + tf32(sx).double() @ bw.double() + bx.double() @ tf32(sw).double(),
            "TF32 + both cross terms in bf16": big + bf16(sx) @ bf16(bw) + bf16(bx) @ bf16(sw),
            "TF32 x 2 + one cross term in bf16": big + tf32(sx).double() @ bw.double() + bf16(bx) @ bf16(sw),
            "plain fp32 matmul (fp32 sums)": (x @ w).double(),
            "TF32": big,
        }
        for scheme, y in schemes.items():
            print(f"{name:13s} {scheme:36s} {rel(y, ref)}")


if __name__ == "__main__":
    main()
