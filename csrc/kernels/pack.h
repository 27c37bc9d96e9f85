// Operand packing for the implicit-GEMM kernels.
//
// Activations: (N, G*Cg, D, H, W) with any strides -> [N][D*H*W][G][Cp] (channels
// innermost, each group's channels zero-padded to Cp, a multiple of 8), so every
// 16-byte chunk of a GEMM K-row is one contiguous, aligned load.
// Weights of a transposed conv, (Cin, Cout_g, kD, kH, kW) -> [G][rows][taps][Cp].
#pragma once

#include "common/host_utils.h"

namespace convt3d {

// Channels per group after padding: a multiple of 8 elements.
inline int64_t padded_channels(int64_t c) { return round_up(c, 8); }

// split_block > 0 (float only; a divisor of Cp): 3xTF32 operands. Every split_block channels
// are stored as [TF32-rounded value | TF32-rounded remainder], so rows hold 2 * Cp slots.
void pack_activation(const Tensor& src, void* dst, int64_t groups, int64_t Cp, bool round_tf32, cudaStream_t stream,
                     int split_block = 0);

enum class WeightRows {
  kOutChannels,  // rows = output channels, K over input channels (the transposed conv itself)
  kInChannels,   // rows = input channels, K over output channels (its input gradient, a direct conv)
};
// rows_padded (>= the real row count, or 0 for none): rows beyond the real ones are zero.
// flip_taps: tap (a, b, c) of the packed tensor holds kernel tap (kD-1-a, kH-1-b, kW-1-c).
void pack_weight(const Tensor& w, void* dst, int64_t groups, int64_t Cp, WeightRows rows, bool round_tf32,
                 cudaStream_t stream, int64_t rows_padded = 0, bool flip_taps = false, int split_block = 0);

// The weights of a transposed conv whose kernel equals its stride (kW == 2, groups 1, no
// padding) as one GEMM operand of the Hopper sub-pixel path, K = input channels, no taps:
// row R = 16 * (q / 8) + 8 * w_tap + q % 8 with q = (co * kD + d_tap) * kH + h_tap, so the
// two W-taps of an output pair sit 8 rows apart (one accumulator thread holds both).
// Rows up to rows_padded that map to no channel are zero.
void pack_weight_subpixel(const Tensor& w, void* dst, int64_t Cp, int64_t rows_padded, bool round_tf32,
                          cudaStream_t stream, int split_block = 0);

}  // namespace convt3d
