// Device properties, read once per device index (multiprocessor count for grid
// sizing, compute capability for path dispatch).
#include <mutex>

#include "common/host_utils.h"

namespace convt3d {

const DeviceInfo& device_info(int device_index) {
  static std::mutex mutex;
  static DeviceInfo cache[64];
  static bool filled[64] = {};
  STD_TORCH_CHECK(device_index >= 0 && device_index < 64, "convt3d: device index out of range: ", device_index);
  std::lock_guard<std::mutex> lock(mutex);
  if (!filled[device_index]) {
    DeviceInfo info{};
    CONVT3D_CUDA_CHECK(cudaDeviceGetAttribute(&info.sm_count, cudaDevAttrMultiProcessorCount, device_index));
    CONVT3D_CUDA_CHECK(cudaDeviceGetAttribute(&info.major, cudaDevAttrComputeCapabilityMajor, device_index));
    CONVT3D_CUDA_CHECK(cudaDeviceGetAttribute(&info.minor, cudaDevAttrComputeCapabilityMinor, device_index));
    CONVT3D_CUDA_CHECK(
        cudaDeviceGetAttribute(&info.max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index));
    cache[device_index] = info;
    filled[device_index] = true;
  }
  return cache[device_index];
}

}  // namespace convt3d
