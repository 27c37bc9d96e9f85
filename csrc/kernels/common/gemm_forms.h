// Index maps of the Hopper kernel's two GEMM forms of a transposed conv (dilation 1, groups 1),
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
// Sub-pixel form (kernel == stride, kW == 2, no padding): one GEMM over input positions whose
// rows are units q = (co * kD + d_tap) * kH + h_tap, each as two rows (W-taps) eight apart, so
// one accumulator thread holds the four consecutive outputs of an input pair.
#pragma once

#if defined(__CUDACC__)
#define CONVT3D_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CONVT3D_HOST_DEVICE inline
#endif

namespace convt3d {

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

// ---- sub-pixel form ----
CONVT3D_HOST_DEVICE int subpixel_row(int q, int w_tap) { return 16 * (q >> 3) + 8 * w_tap + (q & 7); }
CONVT3D_HOST_DEVICE int subpixel_unit(int row) { return (row >> 4) * 8 + (row & 7); }
CONVT3D_HOST_DEVICE int subpixel_w_tap(int row) { return (row >> 3) & 1; }

}  // namespace convt3d
