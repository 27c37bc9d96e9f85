// Operand packing for the implicit-GEMM kernels.
//
// Activations: (N, G*Cg, D, H, W) with any strides -> [N][D*H*W][G][Cp] (channels
// innermost, each group's channels zero-padded to Cp, a multiple of 8), so every
// 16-byte chunk of a GEMM K-row is one contiguous, aligned load.
// Weights of a transposed conv, (Cin, Cout_g, kD, kH, kW) -> [G][rows][taps][Cp].
#pragma once

#include "common/gemm_forms.h"
#include "common/host_utils.h"

namespace convt3d {

// Channels per group after padding: a multiple of 8 elements.
inline int64_t padded_channels(int64_t c) { return round_up(c, 8); }

// split_block > 0 (float only; a divisor of Cp): 3xTF32 operands. Every split_block channels
// are stored as [TF32-rounded value | TF32-rounded remainder], so rows hold 2 * Cp slots.
// Samples from first_sample on (those before are left as they are).
void pack_activation(const Tensor& src, void* dst, int64_t groups, int64_t Cp, bool round_tf32, cudaStream_t stream,
                     int split_block = 0, int64_t first_sample = 0);

// Whether each (sample, channel) of x is a row of positions, 16-byte aligned (then the pack loads
// 16 bytes at a time, and the Hopper kernel can pack samples itself: hopper_conv.cu).
bool activation_rows_aligned(const Tensor& x);

enum class WeightRows {
  kOutChannels,  // rows = output channels, K over input channels (the transposed conv itself)
  kInChannels,   // rows = input channels, K over output channels (its input gradient, a direct conv)
};
void pack_weight(const Tensor& w, void* dst, int64_t groups, int64_t Cp, WeightRows rows, bool round_tf32,
                 cudaStream_t stream);

// The Hopper kernel's operands, both packs in one launch: the activations of x (groups 1) and the
// weights (common/gemm_forms.h): [phase][rows_per_phase][taps][Cp], rows past the output channels
// zero. Phase form: a row is an output channel, the taps are K / s per dimension in filter-offset
// order (stride 1: the flipped kernel). W sub-pixel form (stride 2 along W): phases over (d, h)
// only, a row is (output channel, W-phase) (subpixel_row), the W taps are the union window, zero
// where the row's W-phase has no tap. W-rows form (stride 1): one phase, a row is (W filter
// offset, output channel), the taps are (d, h) only. Activations of the first `samples` samples
// only (the kernel packs the others itself where it can: hopper_conv.cu).
void pack_hopper_operands(const Tensor& x, void* xp, const Tensor& w, void* wp, int64_t Cp, int64_t rows_per_phase,
                          IntList stride, IntList padding, GemmForm form, bool round_tf32, int split_block,
                          cudaStream_t stream, int64_t samples);

}  // namespace convt3d
