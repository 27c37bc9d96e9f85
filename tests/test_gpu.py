"""GPU-only checks: the headline problem in every precision mode against float64
and against PyTorch's own error, streams, devices and the dispatch report."""
import json
import math
import os
import re
import tempfile

import pytest
import torch
import torch.nn.functional as F

import convt3d_ops
from convt3d_ops import reference
from convt3d_ops._checks import conv_transpose_output_size
from cases import CASE_IDS, CASES, Case
from helpers import (allow_tf32, assert_close_class, errors, poison_cuda_cache, precision_class, reference_chain,
                     reference_group_stats, requires_cuda, seed_for)

pytestmark = [pytest.mark.gpu, requires_cuda]

MODES = [
    pytest.param(torch.float32, True, id="fp32-tf32"),
    pytest.param(torch.float32, False, id="fp32-ieee"),
    pytest.param(torch.float16, True, id="fp16"),
    pytest.param(torch.bfloat16, True, id="bf16"),
]


@pytest.fixture(scope="module")
def headline():
    """The reference problem (DESIGN.md section 1) and its float64 result, computed once."""
    torch.manual_seed(0)
    model = reference.Model(*convt3d_ops.get_init_inputs()).cuda()
    (x,) = convt3d_ops.get_inputs()
    x = x.cuda()
    with torch.no_grad():
        conv, gn = model.conv_transpose, model.group_norm
        ref64 = F.group_norm(torch.relu(F.conv_transpose3d(x.double(), conv.weight.double())), 8,
                             gn.weight.double(), gn.bias.double(), gn.eps)
    return model, x, ref64


@pytest.mark.parametrize("dtype,tf32", MODES)
def test_headline_problem_matches_float64_like_pytorch(headline, dtype, tf32):
    model, x, ref64 = headline
    new = convt3d_ops.ModelNew(*convt3d_ops.get_init_inputs()).cuda()
    new.load_state_dict(model.state_dict())
    new, torch_model, xd = new.to(dtype), model.to(dtype), x.to(dtype)
    try:
        poison_cuda_cache(1 << 30)
        with torch.no_grad(), allow_tf32(tf32):
            ours = new(xd)
            theirs = torch_model(xd)
        torch.cuda.synchronize()
    finally:
        model.float()
    ours_l2, ours_max = errors(ours, ref64)
    theirs_l2, theirs_max = errors(theirs, ref64)
    print(f"\nheadline {dtype} tf32={tf32}: ours rel L2 {ours_l2:.2e} max {ours_max:.2e} | "
          f"PyTorch rel L2 {theirs_l2:.2e} max {theirs_max:.2e}")
    assert_close_class(ours, ref64, precision_class(dtype, "cuda", tf32))
    # the same numerics class as PyTorch's own result on this problem
    assert ours_l2 <= 3 * theirs_l2 + 1e-7, (ours_l2, theirs_l2)


@pytest.mark.parametrize("dtype,tf32", MODES)
def test_large_problem_gradients_match_float64(dtype, tf32):
    """Gradients at a size where the reductions are long (K = 1728, 2 x 18^3 x 128 outputs)."""
    torch.manual_seed(1)
    model = convt3d_ops.ModelNew(64, 128, 3, 8, True).cuda().to(dtype)
    x = torch.rand(2, 64, 16, 16, 16, device="cuda", dtype=dtype, requires_grad=True)
    g_up = torch.randn(2, 128, 18, 18, 18, device="cuda")
    with allow_tf32(tf32):
        y = model(x)
        grads = torch.autograd.grad(y, [x] + list(model.parameters()), g_up.to(dtype))
    with torch.no_grad(), allow_tf32(tf32):  # our forward's ReLU decisions (see reference_chain)
        conv = model.conv_transpose
        mask = convt3d_ops.conv_transpose3d_relu(x, conv.weight, conv.bias) > 0
    leaves64 = [t.detach().double().requires_grad_() for t in [x] + list(model.parameters())]
    y64 = reference_chain(*leaves64, stride=1, padding=0, output_padding=0, dilation=1, groups=1, num_groups=8,
                          eps=1e-5, relu_mask=mask)
    grads64 = torch.autograd.grad(y64, leaves64, g_up.double())
    for name, g, r in zip(["x", "weight", "bias", "gn_weight", "gn_bias"], grads, grads64):
        assert_close_class(g, r, precision_class(dtype, "cuda", tf32), factor=3.0, what=f"grad of {name}")


def test_non_default_stream_and_device_guard():
    x = torch.randn(2, 8, 6, 6, 6, device="cuda")
    model = convt3d_ops.ModelNew(8, 16, 3, 4).cuda()
    expected = model(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # the producer of x runs on the side stream right before the op: no race if we use it
        x2 = x * 1.0
        out = model(x2)
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(out, expected)


def test_forward_path_is_reported():
    x = torch.randn(1, 8, 4, 4, 4, device="cuda")
    w = torch.randn(8, 16, 3, 3, 3, device="cuda")
    assert convt3d_ops.forward_path(x, w) in ("hopper", "portable")


HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability(0) == (9, 0)


@pytest.mark.skipif(not HOPPER, reason="the Hopper path needs an sm_90 GPU")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype,tf32", MODES)
def test_dispatch_picks_the_hopper_path_where_supported(case, dtype, tf32):
    """Proves which path the forward tests above ran: the Hopper kernel for ungrouped problems with
    dilation 1 whose kernel is a multiple of the stride and whose output is too, per dimension
    (the phase form, stride 1 being one phase; the W sub-pixel form for stride 2 along W; the W-rows
    form for stride 1 with few output channels), in every precision mode; the portable kernel otherwise."""
    x, w, _, _, _ = case.make(dtype, "cuda", seed=0)
    with allow_tf32(tf32):
        path = convt3d_ops.forward_path(x, w, **case.conv_kwargs())
    out = [conv_transpose_output_size(case.size[d], case.kernel[d], case.stride[d], case.padding[d],
                                      case.output_padding[d], case.dilation[d]) for d in range(3)]
    phases = all(case.kernel[d] % case.stride[d] == 0 and out[d] % case.stride[d] == 0 for d in range(3))
    expect_hopper = case.groups == 1 and case.dilation == (1, 1, 1) and phases
    assert path == ("hopper" if expect_hopper else "portable")


# Problems of hundreds of tiles, beyond the SMs of any Hopper GPU: the small cases above all run one
# tile per CTA, and (the phase and W sub-pixel forms) 128-position tiles, since 256-position tiles
# would leave more than half the SMs idle. Here the strided forms run 256-position tiles (stride 1
# does in the headline and large-problem tests above), and the W-rows form runs more than one tile
# per CTA (its staging buffer and statistics rows reused).
MANY_TILE_CASES = [
    # W sub-pixel form: 4 (d, h) phases x 16 * 16 * 24 columns = 96 tiles of 256 per sample
    Case("wide_tiles_k2s2", n=4, c_in=32, c_out=32, size=(16, 16, 24), kernel=(2, 2, 2), stride=(2, 2, 2),
         bias=True, num_groups=8),
    # phase form (80 channels, past the W sub-pixel form's limit): 8 phases x 16^3 columns = 128 tiles per sample,
    # 640 in all (the 4 rounds on up to 138 SMs that the helper warps' pack takes)
    Case("wide_tiles_k4s2p1", n=5, c_in=16, c_out=80, size=(16, 16, 16), kernel=(4, 4, 4), stride=(2, 2, 2),
         padding=(1, 1, 1), num_groups=5),
    # W-rows form: 22 * 22 * 25 columns (W widened by the padding) = 48 tiles of 254 per sample
    Case("several_tiles_wrows", n=4, c_in=16, c_out=32, size=(20, 20, 24), padding=(0, 0, 1), bias=True, num_groups=8),
    # phase form, stride 1, the TMA-store epilogue in 16-bit dtypes (fp32: register stores): 14 * 14 * 16
    # positions = 14 tiles of 240 per sample (112 in one round, as 13 of 256 would be; the last one 16 wide:
    # 96-byte unswizzled boxes, the first one partial), 80 channels (rows past Cout clipped by the output map;
    # groups of 16 straddling the two consumer warpgroups), 24 input channels (a partly padded K-block)
    Case("stride1_tma_store", n=8, c_in=24, c_out=80, size=(12, 12, 14), bias=True, num_groups=5),
    # the same in 256-column tiles (128-byte swizzled boxes): 15 * 16 * 17 positions = 16 tiles of 256 per
    # sample (the last one 240 wide: its fourth box partial), 128 in one round; 240 columns would take two
    Case("stride1_tma_store_256", n=8, c_in=24, c_out=80, size=(13, 14, 15), bias=True, num_groups=5),
    # the same with 40 channels: the second consumer warpgroup idle (no MMAs, no staged rows)
    Case("stride1_tma_store_idle_warpgroup", n=8, c_in=16, c_out=40, size=(12, 12, 14), num_groups=8),
    # 192-column tiles (on 132 SMs; choose_tile_width): 28 * 28 * 27 positions = 83 tiles of 256 per sample,
    # 166 in 2 rounds, run as 111 tiles of 192 (the last 48 wide: a partial TMA-store box); fp32 with TF32
    # off keeps 256 columns
    Case("mid_tiles_stride1", n=2, c_in=24, c_out=80, size=(26, 26, 25), bias=True, num_groups=5),
    # W sub-pixel form in 192-column tiles: 4 (d, h) phases x 14^3 columns = 15 tiles of 192 per phase
    Case("mid_tiles_k2s2", n=4, c_in=32, c_out=32, size=(14, 14, 14), kernel=(2, 2, 2), stride=(2, 2, 2),
         bias=True, num_groups=8),
    # 240-column tiles: 20 * 20 * 19 positions = 30 tiles of 256 per sample, 120 in one round,
    # run as 128 tiles of 240 (the last one 160 wide), still one round; 192 columns would take two
    Case("fit_tiles_stride1", n=4, c_in=24, c_out=80, size=(18, 18, 17), bias=True, num_groups=5),
    # W sub-pixel form in 240-column tiles: 4 (d, h) phases x 20 * 20 * 19 columns = 32 tiles of 240 per phase
    Case("fit_tiles_k2s2", n=1, c_in=32, c_out=32, size=(20, 20, 19), kernel=(2, 2, 2), stride=(2, 2, 2),
         bias=True, num_groups=8),
]


@pytest.mark.skipif(not HOPPER, reason="the Hopper path needs an sm_90 GPU")
@pytest.mark.parametrize("case", MANY_TILE_CASES, ids=[c.name for c in MANY_TILE_CASES])
@pytest.mark.parametrize("dtype,tf32", MODES)
def test_many_tile_problems_match_float64(case, dtype, tf32):
    """Also the GroupNorm statistics against float64, and every output bitwise the same in a second run."""
    x, w, b, gw, gb = case.make(dtype, "cuda", seed=seed_for(case.name, dtype, tf32))
    runs = []
    with allow_tf32(tf32):
        assert convt3d_ops.forward_path(x, w, **case.conv_kwargs()) == "hopper"
        for _ in range(2):
            poison_cuda_cache()
            runs.append(convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=case.num_groups, eps=case.eps,
                                                  return_stats=True, **case.conv_kwargs()))
    ref, pre = reference_chain(*(t.double() if t is not None else None for t in (x, w, b, gw, gb)),
                               num_groups=case.num_groups, eps=case.eps, return_pre=True, **case.conv_kwargs())
    first, again = runs
    y, mean, rstd = first
    cls = precision_class(dtype, "cuda", tf32)
    assert_close_class(y, ref, cls)
    ref_mean, ref_rstd = reference_group_stats(pre, case.num_groups, case.eps)
    assert_close_class(mean, ref_mean, cls, what="mean")
    assert_close_class(rstd, ref_rstd, cls, what="rstd")
    for out1, out2 in zip(first, again):
        assert torch.equal(out1, out2)


@pytest.mark.skipif(not HOPPER or torch.cuda.get_device_properties(0).multi_processor_count != 132,
                    reason="the tile widths below are those of a 132-SM Hopper GPU")
@pytest.mark.parametrize("case_name,dtype,tf32,cols", [
    ("mid_tiles_stride1", torch.float32, True, 192), ("mid_tiles_stride1", torch.bfloat16, True, 192),
    ("mid_tiles_stride1", torch.float32, False, 256), ("mid_tiles_k2s2", torch.float32, True, 192),
    ("stride1_tma_store", torch.bfloat16, True, 240), ("stride1_tma_store_256", torch.bfloat16, True, 256),
    ("fit_tiles_stride1", torch.float32, True, 240), ("fit_tiles_stride1", torch.bfloat16, True, 240),
    ("fit_tiles_stride1", torch.float32, False, 256),
    ("fit_tiles_k2s2", torch.float32, True, 240)])
def test_tile_width_follows_the_rounds(case_name, dtype, tf32, cols):
    """choose_tile_width: which kernel instance ran (its last template argument is the tile width)."""
    case = next(c for c in MANY_TILE_CASES if c.name == case_name)
    x, w, b, gw, gb = case.make(dtype, "cuda", seed=0)
    with allow_tf32(tf32), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        convt3d_ops.fused_forward(x, w, b, gw, gb, num_groups=case.num_groups, **case.conv_kwargs())
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if "hopper_conv_kernel" in e.name]
    assert len(names) == 1 and re.search(rf"hopper_conv_kernel<.*, {cols}>", names[0]), names


# stride 1, phase form, 8 samples of 26^3 outputs: 69 tiles of 256 per sample, 552 in all (4 rounds on up
# to 138 SMs): the conv kernel applies the GroupNorm itself in fp32 (hopper_conv.cu, `apply`); the second case
# has two channel blocks, the second partly padding, and a last position block of 64 positions; the third
# takes the general pack (channels-last x) before the kernel
NORM_INSIDE_CASES = [
    Case("stride1_norm_inside", n=8, c_in=8, c_out=80, size=(24, 24, 24), bias=True, num_groups=5),
    Case("stride1_norm_pack_tail", n=8, c_in=40, c_out=80, size=(25, 24, 24), bias=True, num_groups=5),
    Case("stride1_norm_channels_last", n=8, c_in=8, c_out=80, size=(24, 24, 24), bias=True, num_groups=5,
         layout="channels_last"),
]


def kernel_grids(prof, name):
    """The grids of the profiled kernels whose name contains `name` (from the profiler's trace)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    return [e["args"]["grid"] for e in events if e.get("cat") == "kernel" and name in e.get("name", "")]


def hopper_pack_grid(case, dtype, tf32, samples):
    """The pack kernel's grid for a phase-form problem (pack.cu, launch_packs), packing `samples` samples:
    (position blocks of 512 bytes, 32-slot blocks, the samples + the planes the weight blocks take)."""
    elem = torch.tensor([], dtype=dtype).element_size()
    ch = 64 // elem if elem == 2 and case.c_in <= 32 else 128 // elem  # channels per K-block (GemmShape)
    slots = math.ceil(case.c_in / ch) * ch * (1 if elem == 2 or tf32 else 2)  # 3xTF32: big and small
    phases, taps = math.prod(case.stride), math.prod(k // s for k, s in zip(case.kernel, case.stride))
    rows = math.ceil(case.c_out / 128) * 128
    weight_blocks = math.ceil(phases * rows * taps / 32) * math.ceil(slots / 32)
    gx, gy = math.ceil(math.prod(case.size) / (512 // elem)), slots // 32
    return [gx, gy, samples + math.ceil(weight_blocks / (gx * gy))]


@pytest.mark.skipif(not HOPPER or torch.cuda.get_device_properties(0).multi_processor_count > 138,
                    reason="the Hopper path on an sm_90 GPU of at most 138 SMs (4 rounds of tiles)")
@pytest.mark.parametrize("case_name", [c.name for c in NORM_INSIDE_CASES] + ["stride1_tma_store", "wide_tiles_k4s2p1"])
@pytest.mark.parametrize("save_h", [False, True], ids=["in-place", "keep-h"])
@pytest.mark.parametrize("dtype,tf32", MODES)
def test_group_norm_inside_the_conv_kernel(case_name, save_h, dtype, tf32):
    """Stride 1, fp32, 8 samples or more and 4 tiles per CTA or more: the conv kernel normalizes its own
    tiles once their sample's statistics are complete (no finalize or apply kernel runs), in place, or into
    a second tensor next to the kept ReLU output h (training). Elsewhere (one round of tiles, 16-bit
    outputs, strided forms) passes after the kernel normalize. The kernel's helper warps pack the
    activations of all samples but the first themselves where x's rows are aligned and there are 4 rounds
    of tiles or more (stride1_tma_store has one), unless they normalize in TF32 (every case here has the
    MMAs per pack tile that takes): the pack kernel's grid then covers sample 0 only. Every output against
    float64."""
    inside_cases = {c.name: c for c in NORM_INSIDE_CASES}
    inside = case_name in inside_cases and dtype == torch.float32
    case = inside_cases.get(case_name) or next(c for c in MANY_TILE_CASES if c.name == case_name)
    pack_inside = case.layout != "channels_last" and case_name != "stride1_tma_store" and not (inside and tf32)
    x, w, b, gw, gb = case.make(dtype, "cuda", seed=seed_for(case.name + str(save_h), dtype, tf32))
    kw = case.conv_kwargs()
    poison_cuda_cache()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        y, h, mean, rstd = torch.ops.convt3d.fused_forward(
            x, w, b, gw, gb, kw["stride"], kw["padding"], kw["output_padding"], kw["dilation"], kw["groups"],
            case.num_groups, case.eps, tf32, save_h)
        torch.cuda.synchronize()
    passes = [e.name for e in prof.events() if "gn_apply_kernel" in e.name or "gn_finalize_kernel" in e.name]
    assert (not passes) == inside, passes
    (grid,) = kernel_grids(prof, "pack_kernel")
    assert grid == hopper_pack_grid(case, dtype, tf32, 1 if pack_inside else case.n), (grid, pack_inside)
    ref, pre = reference_chain(*(t.double() if t is not None else None for t in (x, w, b, gw, gb)),
                               num_groups=case.num_groups, eps=case.eps, return_pre=True, **kw)
    cls = precision_class(dtype, "cuda", tf32)
    assert_close_class(y, ref, cls)
    ref_mean, ref_rstd = reference_group_stats(pre, case.num_groups, case.eps)
    assert_close_class(mean, ref_mean, cls, what="mean")
    assert_close_class(rstd, ref_rstd, cls, what="rstd")
    if save_h:
        assert_close_class(h, torch.relu(pre), cls, what="h")
    else:
        assert h.numel() == 0


@pytest.mark.skipif(not HOPPER or torch.cuda.get_device_properties(0).multi_processor_count > 138,
                    reason="the Hopper path on an sm_90 GPU of at most 138 SMs (4 rounds of tiles)")
@pytest.mark.parametrize("case_name", ["stride1_norm_inside", "stride1_norm_pack_tail", "stride1_tma_store",
                                       "wide_tiles_k4s2p1"])
@pytest.mark.parametrize("dtype,tf32", MODES)
def test_conv_relu_op_packs_later_samples_inside(case_name, dtype, tf32):
    """The conv+ReLU op has no GroupNorm, so the helper warps are free in every mode: they pack samples
    1 .. N - 1 wherever x's rows are aligned and there are 4 rounds of tiles or more (stride1_tma_store
    has one round); the pack kernel then packs sample 0 only. (A channels-last x is packed whole before
    the kernel: test_conv_relu_op_channels_last_runs_the_hopper_kernel.) The output against float64."""
    cases = {c.name: c for c in NORM_INSIDE_CASES + MANY_TILE_CASES}
    case = cases[case_name]
    pack_inside = case_name != "stride1_tma_store"
    x, w, b, _, _ = case.make(dtype, "cuda", seed=seed_for(case.name, "conv+relu", dtype, tf32))
    poison_cuda_cache()
    with allow_tf32(tf32), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        out = convt3d_ops.conv_transpose3d_relu(x, w, b, **case.conv_kwargs())
        torch.cuda.synchronize()
    (grid,) = kernel_grids(prof, "pack_kernel")
    assert grid == hopper_pack_grid(case, dtype, tf32, 1 if pack_inside else case.n), (grid, pack_inside)
    ref = torch.relu(F.conv_transpose3d(x.double(), w.double(), b.double() if b is not None else None,
                                        **case.conv_kwargs()))
    assert_close_class(out, ref, precision_class(dtype, "cuda", tf32))


CHANNELS_LAST_CASES = [
    next(c for c in NORM_INSIDE_CASES if c.layout == "channels_last"),  # 80 channels: laid out by the pack
    Case("stride1_channels_last_c12", n=3, c_in=8, c_out=12, size=(10, 11, 9), layout="channels_last"),  # by copy_
]


@pytest.mark.skipif(not HOPPER, reason="the Hopper path needs an sm_90 GPU")
@pytest.mark.parametrize("case", CHANNELS_LAST_CASES, ids=[c.name for c in CHANNELS_LAST_CASES])
@pytest.mark.parametrize("dtype,tf32", MODES)
def test_conv_relu_op_channels_last_runs_the_hopper_kernel(case, dtype, tf32):
    """A channels-last x: the op keeps x's memory format, so the Hopper kernel writes a contiguous output
    and one pass lays it out channels-last (the activation pack where Cout is a multiple of 8, else
    copy_). Which kernel ran, the output's layout, every element against float64."""
    x, w, b, _, _ = case.make(dtype, "cuda", seed=seed_for(case.name, "conv+relu", dtype, tf32))
    assert x.is_contiguous(memory_format=torch.channels_last_3d)
    poison_cuda_cache()
    with allow_tf32(tf32), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        out = convt3d_ops.conv_transpose3d_relu(x, w, b, **case.conv_kwargs())
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    assert any("hopper_conv_kernel" in n for n in names), names
    # the pack kernel packs x; where Cout is a multiple of 8 it runs again for the output's layout
    assert len(kernel_grids(prof, "pack_kernel")) == (2 if case.c_out % 8 == 0 else 1), names
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    ref = torch.relu(F.conv_transpose3d(x.double(), w.double(), b.double() if b is not None else None,
                                        **case.conv_kwargs()))
    assert_close_class(out, ref, precision_class(dtype, "cuda", tf32))
