// Host-side helpers shared by every op implementation: error checks, the
// current stream, dtype names, small integer helpers. Stable ABI only.
#pragma once

#include <cuda_runtime.h>

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

namespace convt3d {

using torch::stable::Tensor;
using torch::headeronly::ScalarType;
using IntList = torch::headeronly::HeaderOnlyArrayRef<int64_t>;

#define CONVT3D_CUDA_CHECK(expr)                                                                   \
  do {                                                                                              \
    cudaError_t err__ = (expr);                                                                     \
    STD_TORCH_CHECK(err__ == cudaSuccess, "convt3d: CUDA error ", cudaGetErrorString(err__), " at ", \
                    __FILE__, ":", __LINE__);                                                       \
  } while (0)

// After a kernel launch: reports launch-configuration errors without a device sync.
#define CONVT3D_CHECK_LAUNCH() CONVT3D_CUDA_CHECK(cudaGetLastError())

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The stream PyTorch is using on x's device (never the legacy default stream).
inline cudaStream_t current_stream(const Tensor& t) {
  void* stream = nullptr;
  STD_TORCH_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &stream) == AOTI_TORCH_SUCCESS,
                  "convt3d: could not get the current CUDA stream");
  return static_cast<cudaStream_t>(stream);
}

inline const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "float32";
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Double: return "float64";
    default: return "an unsupported dtype";
  }
}

inline bool is_supported_float(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Half || t == ScalarType::BFloat16;
}

// Properties of a device, read once per device index.
struct DeviceInfo {
  int sm_count;
  int major;
  int minor;
  int max_smem_optin;
};
const DeviceInfo& device_info(int device_index);

// Raises a kernel's dynamic shared memory limit (host-only call, cheap; done at
// every launch because the limit is per device and per kernel instantiation).
template <typename Kernel>
void set_dynamic_smem(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024)
    CONVT3D_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// A new uninitialized tensor on like's device, contiguous or channels-last (5-D). Allocated
// through the C shim's empty_strided: torch::stable::empty / new_empty find the op by name in
// the dispatcher and box their arguments on every call, which costs more host time than the
// allocation itself, and a forward allocates several tensors.
inline Tensor new_tensor(const Tensor& like, IntList sizes, ScalarType dtype, bool channels_last = false) {
  const int64_t ndim = static_cast<int64_t>(sizes.size());
  STD_TORCH_CHECK(ndim <= 8 && (!channels_last || ndim == 5), "convt3d: new_tensor: unsupported shape");
  int64_t strides[8];
  // innermost first: the last dimension (contiguous) or the channels (channels-last 3d: C, W, H, D, N)
  const int cl_order[5] = {1, 4, 3, 2, 0};
  int64_t step = 1;
  for (int64_t i = 0; i < ndim; ++i) {
    const int64_t d = channels_last ? cl_order[i] : ndim - 1 - i;
    strides[d] = step;
    step *= std::max<int64_t>(sizes[d], 1);
  }
  int32_t device_type = 0;
  STD_TORCH_CHECK(aoti_torch_get_device_type(like.get(), &device_type) == AOTI_TORCH_SUCCESS,
                  "convt3d: could not read a tensor's device");
  const int32_t aoti_dtype = torch::stable::detail::to<int32_t>(torch::stable::detail::from(dtype));
  AtenTensorHandle handle = nullptr;
  STD_TORCH_CHECK(aoti_torch_empty_strided(ndim, sizes.data(), strides, aoti_dtype, device_type,
                                           like.get_device_index(), &handle) == AOTI_TORCH_SUCCESS,
                  "convt3d: allocating a tensor failed");
  return Tensor(handle);
}

// An empty tensor on t's device: what a gradient that was not asked for returns.
inline Tensor empty_on(const Tensor& like, ScalarType dtype) { return new_tensor(like, {0}, dtype); }

// The temporaries of one call in one allocation: callers reserve slices (each starts on a
// 256-byte boundary, as TMA and vector loads want), then allocate once and read the pointers.
class Workspace {
 public:
  int reserve(int64_t bytes) {
    STD_TORCH_CHECK(count_ < kMaxSlices, "convt3d: too many workspace slices");
    offsets_[count_] = size_;
    size_ += round_up(std::max<int64_t>(bytes, 0), 256);
    return count_++;
  }
  void allocate(const Tensor& like) { buffer_ = new_tensor(like, {std::max<int64_t>(size_, 1)}, ScalarType::Byte); }
  template <typename T>
  T* slice(int index) const {
    return reinterpret_cast<T*>(static_cast<char*>(buffer_->mutable_data_ptr()) + offsets_[index]);
  }

 private:
  static constexpr int kMaxSlices = 8;
  int64_t offsets_[kMaxSlices] = {};
  int64_t size_ = 0;
  int count_ = 0;
  std::optional<Tensor> buffer_;  // freed with the Workspace: stream-ordered, so after the call's kernels
};

// True when a 5-D tensor is laid out channels-last (NDHWC) and not plainly contiguous:
// the same rule as Tensor.suggest_memory_format() for the 5-D case.
inline bool is_channels_last_3d(const Tensor& t) {
  if (t.dim() != 5 || t.is_contiguous()) return false;
  const int64_t C = t.size(1), D = t.size(2), H = t.size(3), W = t.size(4);
  const int64_t s[5] = {t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.stride(4)};
  // strides of a dense NDHWC tensor, ignoring dimensions of size 1
  int64_t expect = 1;
  const int order[5] = {1, 4, 3, 2, 0};
  const int64_t sizes[5] = {t.size(0), C, D, H, W};
  for (int i = 0; i < 5; ++i) {
    const int d = order[i];
    if (sizes[d] != 1 && s[d] != expect) return false;
    expect *= sizes[d];
  }
  return true;
}

}  // namespace convt3d
