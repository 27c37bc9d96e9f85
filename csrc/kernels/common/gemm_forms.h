// Index maps of the Hopper kernel's three GEMM forms of a transposed conv (dilation 1, groups 1),
// shared by the weight packing and the kernel's loads and epilogue.
//
// Phase form (kernel a multiple of the stride in every dimension): along one dimension with
// stride s, kernel K and padding p, the outputs o = s * m + r of one phase r in [0, s) receive
// input i = m + (r + p) / s - j through kernel tap k = (r + p) % s + s * j, j in [0, K / s):
// a stride-1 correlation over the input with K / s taps. All phases read windows that start
// at m + phase_window_lower (+ 0 or 1: phase_window_offset), so one im2col tensor map serves
// them all; filter offset f of a phase is tap j = K / s - 1 - f. Stride 1 is one phase: the
// plain correlation with the flipped kernel.
//
// W sub-pixel form (stride 2 along W with an even kW, the other dimensions as in the phase
// form): phases run over (d, h) only; along W a GEMM column is an input-aligned position m whose
// two outputs 2m + r_w (r_w = 0, 1) are two rows eight apart, so one accumulator thread holds the
// four consecutive outputs 2m .. 2m + 3 of a column pair. Row units are the output channels. The
// W taps are the union of both W-phases' windows, u in [0, K / 2 + p % 2) from m +
// phase_window_lower; a (W-phase, u) pair outside that phase's own window has a zero weight
// (so odd padding costs K / 2 + 1 taps instead of K / 2, which pays off for Cout <= 64, whose
// phase-form tile is half padding rows). kernel == stride with kW == 2 (the U-Net decoder's k2 s2)
// is the case of one tap per dimension.
//
// W-rows form (stride 1 in every dimension, few output channels: kW * round_up(Cout, 8) <= 96):
// the W taps become GEMM rows instead of K. Row fw * Cr + co (Cr = Cout rounded up to 8) holds
// channel co's products with W tap fw (the phase form's filter offset fw); K walks the (d, h)
// taps only, so one im2col pixel walk serves all kW taps. Columns are positions of a grid whose
// W extent is We = Wo + pW (every column whose pixel may be nonzero), and output (d, h, w) =
// sum over fw of row (fw, co) at column (d, h, w + fw), taken where w + fw < We (beyond, the
// pixel is zero padding). A tile therefore computes 256 columns and yields 256 - (kW - 1).
#pragma once

#if defined(__CUDACC__)
#define CONVT3D_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CONVT3D_HOST_DEVICE inline
#endif

namespace convt3d {

enum class GemmForm { kPhases, kWSubpixel, kWRows };

// ---- phase form, one dimension ----
CONVT3D_HOST_DEVICE int phase_window_lower(int s, int K, int p) { return p / s - K / s + 1; }
CONVT3D_HOST_DEVICE int phase_window_offset(int r, int s, int p) { return (r + p) / s - p / s; }
CONVT3D_HOST_DEVICE int phase_kernel_tap(int r, int s, int K, int p, int f) {
  return (r + p) % s + s * (K / s - 1 - f);
}

// Phase index -> residue per dimension (d, h, w), W fastest.
CONVT3D_HOST_DEVICE void phase_residues(int phase, const int (&s)[3], int (&r)[3]) {
  r[2] = phase % s[2];
  r[1] = (phase / s[2]) % s[1];
  r[0] = phase / (s[2] * s[1]);
}

// ---- W sub-pixel form ----
CONVT3D_HOST_DEVICE int subpixel_row(int q, int w_phase) { return 16 * (q >> 3) + 8 * w_phase + (q & 7); }
CONVT3D_HOST_DEVICE int subpixel_unit(int row) { return (row >> 4) * 8 + (row & 7); }
CONVT3D_HOST_DEVICE int subpixel_w_phase(int row) { return (row >> 3) & 1; }
// W taps of the union window, and the kernel tap of (W-phase, u), or -1 where that phase has none.
CONVT3D_HOST_DEVICE int subpixel_w_taps(int K, int p) { return K / 2 + p % 2; }
CONVT3D_HOST_DEVICE int subpixel_kernel_tap(int w_phase, int K, int p, int u) {
  const int f = u - phase_window_offset(w_phase, 2, p);
  return f >= 0 && f < K / 2 ? phase_kernel_tap(w_phase, 2, K, p, f) : -1;
}

// ---- W-rows form ----
constexpr int kWRowsMaxRows = 96;  // (W tap, channel) rows a tile may hold (the staging buffer's size)
CONVT3D_HOST_DEVICE int wrows_channel_rows(int Cout) { return (Cout + 7) / 8 * 8; }  // Cr

}  // namespace convt3d
