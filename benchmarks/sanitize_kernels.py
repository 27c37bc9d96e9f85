"""Runs every CUDA kernel of the package once on small problems, for compute-sanitizer
(scripts/sanitize.sh): Hopper (direct and sub-pixel) and portable forward paths in every
precision mode, the GroupNorm ops, and every backward kernel. Exits non-zero if a result is
off. The float64 references run on the CPU, so the only CUDA allocations are the package's
and its inputs' (PyTorch's own GPU convolutions could add library workspaces to memcheck's
leak report)."""
import gc

import torch
import torch.nn.functional as F

import convt3d_ops


def check(name, ours, ref, tol):
    err = ((ours.detach().cpu().double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()
    status = "ok" if err < tol else "WRONG"
    print(f"{name:60s} rel L2 {err:.2e} {status}", flush=True)
    return err < tol


def run() -> bool:
    torch.manual_seed(0)
    ok = True
    problems = [  # (name, conv kwargs, Cin, Cout, kernel, spatial, layout)
        ("stride1", dict(), 32, 48, 3, (5, 6, 7), "contiguous"),
        ("stride2_k2_oddW", dict(stride=2), 16, 24, 2, (3, 4, 3), "contiguous"),
        ("stride2_k2_evenW", dict(stride=2), 40, 24, 2, (3, 4, 6), "contiguous"),
        ("k4s2p1", dict(stride=2, padding=1), 8, 12, 4, (3, 4, 3), "contiguous"),
        ("groups_dil_pad", dict(groups=2, dilation=2, padding=1, stride=(1, 2, 1), output_padding=(0, 1, 0)), 8, 12,
         3, (4, 3, 5), "channels_last"),
    ]
    for dtype, tf32, tol in ((torch.float32, True, 5e-3), (torch.float32, False, 1e-5), (torch.bfloat16, True, 3e-2),
                             (torch.float16, True, 5e-3)):
        torch.backends.cudnn.allow_tf32 = tf32
        for name, kw, cin, cout, k, size, layout in problems:
            x = torch.randn(2, cin, *size, device="cuda").to(dtype)
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
            y.backward(upstream.to("cuda", dtype))
            h = convt3d_ops.conv_transpose3d_relu(x, w, b, **kw)
            gn = convt3d_ops.group_norm(h, gn_groups, gw, gb)
            ref_leaves = [t.detach().cpu().double().requires_grad_() for t in (x, w, b, gw, gb)]
            conv = torch.relu(F.conv_transpose3d(ref_leaves[0], ref_leaves[1], ref_leaves[2], **kw))
            ref = F.group_norm(conv, gn_groups, ref_leaves[3], ref_leaves[4])
            ref.backward(upstream)
            tag = f"{str(dtype).split('.')[-1]}{'' if tf32 else '-ieee'} {name} [{convt3d_ops.forward_path(x, w, **kw)}]"
            ok &= check(f"{tag} fused forward", y, ref, tol)
            ok &= check(f"{tag} conv+relu", h, conv, tol)
            ok &= check(f"{tag} group_norm", gn, ref, 3 * tol)
            for n, t, r in zip(("x", "w", "b", "gw", "gb"), leaves, ref_leaves):
                # gradients: the ReLU mask can flip near zero in reduced precision (see tests), so the
                # bound here is loose; the test suite checks gradients tightly
                ok &= check(f"{tag} grad {n}", t.grad, r.grad, 30 * tol)
    torch.cuda.synchronize()
    return ok


def main():
    ok = run()
    gc.collect()  # free every tensor before exit, so memcheck's leak check sees only real leaks
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    # what PyTorch's allocator still counts as live tensors, to compare with memcheck's leak report
    print(f"live CUDA tensor bytes at exit: {torch.cuda.memory_allocated()}")
    print("ALL OK" if ok else "SOME RESULTS WRONG")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
