// The precision policy (DESIGN.md section 4) as compile-time configurations, and
// the host-side dispatch from (dtype, allow_tf32) to one of them.
#pragma once

#include "common/host_utils.h"
#include "common/ptx.cuh"

namespace convt3d {

// T: element type in memory; Mma: the tensor-core instruction;
// kSplit: 3xTF32 (operands split into big + small, three MMAs per product).
template <typename T_, typename Mma_, bool kSplit_>
struct MathConfig {
  using T = T_;
  using Mma = Mma_;
  static constexpr bool kSplit = kSplit_;
};
using Tf32Math = MathConfig<float, MmaTf32, false>;    // float32, TF32 allowed: operands rounded to nearest
using Fp32Math = MathConfig<float, MmaTf32, true>;     // float32, TF32 off: 3xTF32, fp32-class accuracy
using F16Math = MathConfig<__half, MmaF16, false>;     // float16 operands, fp32 accumulation
using Bf16Math = MathConfig<__nv_bfloat16, MmaBf16, false>;

enum class MathMode { kTf32, kFp32, kF16, kBf16 };

inline MathMode math_mode(ScalarType dtype, bool allow_tf32) {
  switch (dtype) {
    case ScalarType::Float: return allow_tf32 ? MathMode::kTf32 : MathMode::kFp32;
    case ScalarType::Half: return MathMode::kF16;
    case ScalarType::BFloat16: return MathMode::kBf16;
    default: STD_TORCH_CHECK(false, "convt3d: unsupported dtype ", dtype_name(dtype));
  }
  return MathMode::kTf32;
}

// Calls fn(Config{}) with the configuration of `mode`.
template <typename Fn>
void dispatch_math(MathMode mode, Fn&& fn) {
  switch (mode) {
    case MathMode::kTf32: fn(Tf32Math{}); break;
    case MathMode::kFp32: fn(Fp32Math{}); break;
    case MathMode::kF16: fn(F16Math{}); break;
    case MathMode::kBf16: fn(Bf16Math{}); break;
  }
}

// Calls fn(T{}) with the element type of `dtype` (float, __half, __nv_bfloat16).
template <typename Fn>
void dispatch_float_type(ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case ScalarType::Float: fn(float{}); break;
    case ScalarType::Half: fn(__half{}); break;
    case ScalarType::BFloat16: fn(__nv_bfloat16{}); break;
    default: STD_TORCH_CHECK(false, "convt3d: unsupported dtype ", dtype_name(dtype));
  }
}

}  // namespace convt3d
