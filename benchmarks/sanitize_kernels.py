"""Runs every CUDA kernel of the package once on small problems, for compute-sanitizer
(scripts/sanitize.sh): Hopper (phase form: stride 1, one and two tiles per CTA, with the GroupNorm inside the kernel
(fp32, 8 samples), and k4 s2 p1 with two channel tiles; W
sub-pixel form: k2 s2, k4 s2 p1; W-rows form, one and two tiles per CTA) and portable forward paths in every
precision mode, the GroupNorm ops, and every backward kernel. Exits non-zero if a result is
off. The float64 references run on the CPU, so the only CUDA allocations are the package's
and its inputs' (PyTorch's own GPU convolutions could add library workspaces to memcheck's
leak report)."""
import gc
import os

import torch
import torch.nn.functional as F

import convt3d_ops


def check(name, ours, ref, tol):
    err = ((ours.detach().cpu().double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()
    status = "ok" if err < tol else "WRONG"
    print(f"{name:60s} rel L2 {err:.2e} {status}", flush=True)
    return err < tol


def run(only_problems=None, only_modes=None, skip=()) -> bool:
    """only_problems / only_modes: names to run (None: all); skip: steps to leave out of each
    problem ("backward", "separate" ops, CPU "reference" and checks), to bisect a finding."""
    torch.manual_seed(0)
    ok = True
    problems = [  # (name, conv kwargs, Cin, Cout, kernel, spatial, layout)
        ("stride1", dict(), 32, 48, 3, (5, 6, 7), "contiguous"),
        ("stride1_cout144", dict(padding=(1, 0, 1)), 16, 144, 3, (3, 4, 5), "contiguous"),  # two channel tiles
        ("stride1_wrows", dict(padding=(0, 1, 1)), 24, 32, 3, (4, 5, 9), "contiguous"),  # W-rows form: 96 rows
        # W-rows form with 164 tiles: up to 2 per CTA (the staging buffer and statistics rows reused)
        ("stride1_wrows_tiles", dict(padding=(0, 0, 1)), 4, 32, 3, (14, 14, 80), "contiguous"),
        # phase form with 220 tiles of 192 columns: up to 2 per CTA (16-bit: the TMA stores' staging reused)
        ("stride1_tma_tiles", dict(), 4, 80, 3, (14, 14, 80), "contiguous"),
        # the same with 218 tiles of 240 columns: up to 2 per CTA (16-bit: 96-byte TMA-store boxes)
        ("stride1_fit_tiles", dict(), 4, 80, 3, (14, 14, 100), "contiguous"),
        ("stride2_k2_oddW", dict(stride=2), 16, 24, 2, (3, 4, 3), "contiguous"),
        ("stride2_k2_evenW", dict(stride=2), 40, 24, 2, (3, 4, 6), "contiguous"),
        ("k4s2p1", dict(stride=2, padding=1), 8, 12, 4, (3, 4, 3), "contiguous"),  # W sub-pixel form
        ("k4s2p1_cout144", dict(stride=2, padding=1), 8, 144, 4, (3, 4, 3), "contiguous"),  # phase form
        ("groups_dil_pad", dict(groups=2, dilation=2, padding=1, stride=(1, 2, 1), output_padding=(0, 1, 0)), 8, 12,
         3, (4, 3, 5), "channels_last"),
        # 8 samples (below) of 26^3 outputs, 552 tiles: fp32 applies the GroupNorm inside the conv kernel
        ("stride1_norm_inside", dict(), 8, 80, 3, (24, 24, 24), "contiguous"),
        # ... and packs samples 1 .. 7 itself: two channel blocks (the second partly padding), a half position block
        ("stride1_norm_pack_tail", dict(), 40, 80, 3, (25, 24, 24), "contiguous"),
    ]
    batch = {"stride1_norm_inside": 8, "stride1_norm_pack_tail": 8}  # the others: 2 samples
    modes = [("fp32", torch.float32, True, 5e-3), ("ieee", torch.float32, False, 1e-5),
             ("bf16", torch.bfloat16, True, 3e-2), ("fp16", torch.float16, True, 5e-3)]
    for mode, dtype, tf32, tol in modes:
        if only_modes and mode not in only_modes:
            continue
        torch.backends.cudnn.allow_tf32 = tf32
        for name, kw, cin, cout, k, size, layout in problems:
            if only_problems and name not in only_problems:
                continue
            x = torch.randn(batch.get(name, 2), cin, *size, device="cuda").to(dtype)
            if layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last_3d)
            g = kw.get("groups", 1)
            w = (torch.randn(cin, cout // g, k, k, k, device="cuda") / (cin * k ** 3 / g) ** 0.5).to(dtype)
            b = (torch.randn(cout, device="cuda") * 0.1).to(dtype)
            gw = (torch.rand(cout, device="cuda") + 0.5).to(dtype)
            gb = (torch.randn(cout, device="cuda") * 0.1).to(dtype)
            gn_groups = 4 if cout % 4 == 0 else 3
            leaves = [t.detach().clone().requires_grad_() for t in (x, w, b, gw, gb)]
            y = convt3d_ops.fused_forward(*leaves, num_groups=gn_groups, **kw)
            upstream = torch.randn(y.shape, dtype=torch.float64)
            if "backward" not in skip:
                y.backward(upstream.to("cuda", dtype))
            if "separate" not in skip:
                h = convt3d_ops.conv_transpose3d_relu(x, w, b, **kw)
                gn = convt3d_ops.group_norm(h, gn_groups, gw, gb)
            if "reference" in skip:
                continue
            ref_leaves = [t.detach().cpu().double().requires_grad_() for t in (x, w, b, gw, gb)]
            conv = torch.relu(F.conv_transpose3d(ref_leaves[0], ref_leaves[1], ref_leaves[2], **kw))
            ref = F.group_norm(conv, gn_groups, ref_leaves[3], ref_leaves[4])
            ref.backward(upstream)
            tag = f"{str(dtype).split('.')[-1]}{'' if tf32 else '-ieee'} {name} [{convt3d_ops.forward_path(x, w, **kw)}]"
            ok &= check(f"{tag} fused forward", y, ref, tol)
            if "separate" not in skip:  # (each check only for the steps that ran)
                ok &= check(f"{tag} conv+relu", h, conv, tol)
                ok &= check(f"{tag} group_norm", gn, ref, 3 * tol)
            for n, t, r in zip(("x", "w", "b", "gw", "gb"), leaves, ref_leaves):
                # gradients: the ReLU mask can flip near zero in reduced precision (see tests), so the
                # bound here is loose; the test suite checks gradients tightly
                if "backward" not in skip:
                    ok &= check(f"{tag} grad {n}", t.grad, r.grad, 30 * tol)
    torch.cuda.synchronize()
    return ok


def live_blocks():
    """Blocks PyTorch's caching allocator still counts as allocated, with the Python frames that
    allocated them (memory history is recorded from the start), and the CUDA tensors the Python
    garbage collector can still reach. Only meaningful with the caching allocator on: with
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 (the sanitizer runs) the allocator keeps no books."""
    blocks = []
    for seg in torch.cuda.memory._snapshot()["segments"]:
        for block in seg["blocks"]:
            if block["state"] == "active_allocated":
                frames = [f"{f['filename'].rsplit('/', 1)[-1]}:{f['line']}" for f in block.get("frames", [])
                          if f["filename"].endswith(".py")][:4]
                blocks.append((block["requested_size"], frames))
    reachable = [tuple(o.shape) for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.is_cuda]
    return blocks, reachable


def main():
    caching = os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING", "0") != "1"
    if caching:
        torch.cuda.memory._record_memory_history(stacks="python")
    env = os.environ.get
    ok = run(*(env(v).split(",") if env(v) else None for v in ("SANITIZE_PROBLEMS", "SANITIZE_MODES")),
             skip=env("SANITIZE_SKIP", "").split(","))
    gc.collect()  # free every tensor before exit, so memcheck's leak check sees only real leaks
    torch.cuda.synchronize()
    if caching:
        blocks, reachable = live_blocks()
        print(f"live CUDA blocks at exit: {len(blocks)}, {sum(b[0] for b in blocks)} bytes")
        for size, frames in blocks:
            print(f"  {size} bytes allocated at {' <- '.join(frames)}")
        print(f"CUDA tensors reachable from Python at exit: {reachable}")
        ok &= not blocks
    print("ALL OK" if ok else "SOME RESULTS WRONG OR MEMORY LEFT ALLOCATED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
