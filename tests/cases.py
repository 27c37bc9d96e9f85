"""Problem configurations shared by the forward and backward tests."""
from __future__ import annotations

import dataclasses

import torch

from helpers import random_tensor


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    n: int = 2
    c_in: int = 8
    c_out: int = 16
    size: tuple = (5, 6, 7)
    kernel: tuple = (3, 3, 3)
    stride: tuple = (1, 1, 1)
    padding: tuple = (0, 0, 0)
    output_padding: tuple = (0, 0, 0)
    dilation: tuple = (1, 1, 1)
    groups: int = 1
    bias: bool = False
    num_groups: int = 4
    eps: float = 1e-5
    affine: bool = True
    layout: str = "contiguous"  # or "channels_last", "strided"

    def make(self, dtype, device, seed):
        """Fresh random inputs for this case: (x, weight, bias, gn_weight, gn_bias)."""
        g = torch.Generator().manual_seed(seed)
        shape = (self.n, self.c_in) + tuple(self.size)
        if self.layout == "strided":
            # a non-contiguous view: every other element of a larger tensor along W
            big = random_tensor(shape[:-1] + (2 * shape[-1],), dtype, device, g)
            x = big[..., ::2]
        else:
            x = random_tensor(shape, dtype, device, g)
            if self.layout == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last_3d)
        fan = self.c_in // self.groups * self.kernel[0] * self.kernel[1] * self.kernel[2]
        w = random_tensor((self.c_in, self.c_out // self.groups) + tuple(self.kernel), dtype, device, g,
                          scale=fan ** -0.5)
        b = random_tensor((self.c_out,), dtype, device, g, scale=0.2) if self.bias else None
        gw = random_tensor((self.c_out,), dtype, device, g, scale=0.3, offset=1.0) if self.affine else None
        gb = random_tensor((self.c_out,), dtype, device, g, scale=0.3) if self.affine else None
        return x, w, b, gw, gb

    def conv_kwargs(self):
        return dict(stride=list(self.stride), padding=list(self.padding), output_padding=list(self.output_padding),
                    dilation=list(self.dilation), groups=self.groups)


CASES = [
    Case("base"),
    Case("bias", bias=True),
    Case("unet_k2_s2", kernel=(2, 2, 2), stride=(2, 2, 2), bias=True),
    Case("k4_s2_p1", kernel=(4, 4, 4), stride=(2, 2, 2), padding=(1, 1, 1)),
    Case("mixed_stride_outpad", stride=(1, 2, 3), padding=(0, 1, 1), output_padding=(0, 1, 2), bias=True),
    Case("dilation", kernel=(3, 2, 3), dilation=(2, 1, 3), padding=(2, 0, 1), output_padding=(1, 0, 0)),
    Case("stride_dilation", kernel=(3, 3, 3), stride=(2, 2, 2), dilation=(2, 2, 2), padding=(1, 2, 0)),
    Case("groups", c_in=8, c_out=12, groups=2, num_groups=3, bias=True),
    Case("depthwise", c_in=6, c_out=6, groups=6, num_groups=2),
    Case("odd_channels", c_in=3, c_out=5, num_groups=5, size=(4, 3, 5)),
    Case("kernel1", kernel=(1, 1, 1), num_groups=1),
    Case("wide", n=1, c_in=72, c_out=96, size=(4, 4, 4), num_groups=8),
    Case("no_affine", affine=False, num_groups=2),
    Case("channels_last", layout="channels_last", bias=True),
    Case("strided_view", layout="strided"),
    Case("eps", eps=0.1, num_groups=16),
    # shapes aimed at the Hopper kernel's edges: an odd number of output positions (no paired
    # stores), padding (other im2col corners), more than one 128-channel tile with a GroupNorm
    # group straddling the two tiles, and several 256-position tiles per sample
    Case("odd_positions", size=(4, 4, 4), kernel=(2, 2, 2), bias=True, num_groups=8),
    Case("padding", padding=(1, 0, 2), num_groups=2),
    Case("cout_two_tiles", n=1, c_in=16, c_out=144, size=(3, 4, 5), num_groups=3, bias=True),
    # the Hopper kernel's TMA-store epilogue (16-bit dtypes, stride 1, rows of a multiple of 16 bytes:
    # 288 positions here, three 128-position tiles, the last partial; 72 channels, the rows past Cout
    # clipped by the output map). cout_two_tiles above (210 positions) takes its register stores.
    Case("tma_store_rows", c_in=8, c_out=72, size=(4, 4, 6), num_groups=6, bias=True),
    Case("many_tiles", n=3, c_in=32, c_out=32, size=(9, 10, 11), num_groups=8),
    # positions a multiple of 8 (the activation pack's 16-byte loads in every dtype) and 40 input
    # channels (a second, partly padded 32-slot block of the packed rows)
    Case("aligned_rows", c_in=40, c_out=24, size=(4, 4, 8), bias=True, num_groups=4),
    # the Hopper sub-pixel path (kernel == stride): even W (4-element stores), rows of two
    # 128-row tiles with groups straddling them, a partial position tile; anisotropic kernel
    Case("subpixel_tiles", n=2, c_in=40, c_out=24, size=(6, 8, 10), kernel=(2, 2, 2), stride=(2, 2, 2),
         num_groups=3, bias=True),
    Case("subpixel_k132", c_out=12, size=(3, 4, 6), kernel=(1, 3, 2), stride=(1, 3, 2), num_groups=4),
    # the W sub-pixel form beyond kernel == stride: odd W padding (a union window of three W taps,
    # zero weights where a W-phase has no tap) with D phases and an odd column count along W (paired
    # stores); even padding with two 128-row channel tiles and a group straddling them
    Case("subpixel_k4s2p1", n=2, c_in=24, c_out=40, size=(5, 6, 7), kernel=(4, 2, 4), stride=(2, 1, 2),
         padding=(1, 0, 1), num_groups=5, bias=True),
    Case("subpixel_two_tiles", c_in=16, c_out=72, size=(3, 4, 5), kernel=(2, 2, 4), stride=(2, 2, 2),
         padding=(0, 0, 2), num_groups=6, bias=True),
    # the Hopper phase form (kernel a multiple of the stride): mixed strides with padding and
    # output padding (a phase whose window starts one further); two channel tiles, two position
    # tiles per phase, groups straddling the channel tiles
    Case("phases_mixed", c_out=12, size=(3, 4, 5), kernel=(4, 3, 2), stride=(2, 3, 1), padding=(1, 1, 0),
         output_padding=(0, 2, 0), num_groups=3, bias=True),
    Case("phases_tiles", n=2, c_in=24, c_out=144, size=(6, 7, 8), kernel=(4, 4, 4), stride=(2, 2, 2),
         padding=(1, 1, 1), num_groups=3, bias=True),
    # output rows wider than a 256-position tile; a 5-wide W kernel with per-dimension padding
    # over few planes and an odd width (single stores); an 11-tap W kernel (far im2col corners)
    Case("wide_rows", n=1, size=(2, 3, 300), num_groups=2, bias=True),
    Case("kernel_w5", size=(5, 3, 7), kernel=(3, 3, 5), padding=(0, 1, 2), num_groups=8),
    Case("many_w_taps", size=(3, 3, 4), kernel=(1, 1, 11), padding=(0, 0, 3)),
    # the Hopper W-rows form (stride 1, kW * round_up(Cout, 8) <= 96; most stride-1 cases above run in
    # it too): 96 rows, so the second consumer warpgroup holds real rows, with two K-blocks of input
    # channels, padding in D and W and a group straddling the warpgroups; 11 W taps with W padding
    # (columns past the output width that still hold pixels) over several tiles per row
    Case("wrows_two_warpgroups", c_in=40, c_out=48, size=(4, 5, 9), kernel=(3, 2, 2), padding=(1, 0, 1),
         num_groups=6, bias=True),
    Case("wrows_long_w_kernel", n=1, c_out=8, size=(2, 3, 300), kernel=(1, 2, 11), padding=(0, 1, 5),
         num_groups=2),
]
CASE_IDS = [c.name for c in CASES]
