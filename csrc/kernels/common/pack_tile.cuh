// The activation pack's shared-memory tile and its conversions, shared by the pack kernel (pack.cu)
// and the Hopper kernel's helper warps that pack later samples themselves (hopper_conv.cu).
#pragma once

#include <type_traits>

#include "common/ptx.cuh"

namespace convt3d {

// What a packed slot holds of its source value: the value, rounded to TF32, or 3xTF32's big part
// (rounded) or small part (the rounded remainder).
enum class Operand { kCopy, kRound, kBig, kSmall };

template <Operand kOp, typename T>
__device__ __forceinline__ T operand(T v) {
  if constexpr (std::is_same_v<T, float> && kOp != Operand::kCopy) {
    if constexpr (kOp == Operand::kRound) return __uint_as_float(tf32_round(v));
    uint32_t big, small;
    tf32_split(__float_as_uint(v), big, small);
    return __uint_as_float(kOp == Operand::kBig ? big : small);
  }
  return v;
}

// kPackSlots slots (channels) x kPositions positions, 512 bytes of each slot's row. The tile's 16-byte
// chunks are XOR-swizzled per row so that reading one position's kVec consecutive slots, as the
// write side does with a warp over 32 / kVec slot groups and kVec positions, hits 32 distinct banks.
constexpr int kPackSlots = 32;
// positions per tile for elements of elem_bytes (for host code that knows the size, not the type)
constexpr int pack_tile_positions(int elem_bytes) { return 512 / elem_bytes; }
template <typename T>
struct PackTile {
  static constexpr int kVec = 16 / sizeof(T);             // elements per 16-byte access
  static constexpr int kPositions = pack_tile_positions(sizeof(T));  // 128 fp32, 256 16-bit
  static constexpr int kChunks = kPositions / kVec;       // 32 chunks of 16 bytes per row
  static constexpr int kBytes = kPackSlots * kPositions * int(sizeof(T));
  // position p's element within slot q's row (the same for the kVec slots of one 16-byte group)
  static __device__ __forceinline__ int column(int q, int p) {
    return ((p / kVec) ^ ((q / kVec) & 7)) * kVec + p % kVec;
  }
  // element (slot q, position p) within the tile
  static __device__ __forceinline__ int index(int q, int p) { return q * kPositions + column(q, p); }
};

}  // namespace convt3d
