// Issue 4's leak records, one suspect at a time: a library that is not a torch extension (loaded
// with ctypes by benchmarks/leak_baseline.py, callers ext_*), doing one of the things our ops do
// besides PyTorch's own work. If memcheck's leak records follow one of these, they follow that
// CUDA call, not anything in our kernels or in how the extension holds tensors.
//   nvcc -shared -Xcompiler -fPIC -gencode=arch=compute_90a,code=sm_90a -o leak_probe.so leak_probe.cu
#include <cuda_runtime.h>

__global__ void add_one(float* p, long n) {
  const long i = blockIdx.x * long(blockDim.x) + threadIdx.x;
  if (i < n) p[i] += 1.0f;
}

__global__ void big_smem_kernel(float* p) {
  extern __shared__ float s[];
  s[threadIdx.x] = p[threadIdx.x];
  __syncthreads();
  p[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

extern "C" {
// a plain kernel launch on the caller's tensor (stream 0 is fine: the caller synchronizes)
int probe_launch(float* p, long n) {
  add_one<<<(n + 255) / 256, 256>>>(p, n);
  return cudaDeviceSynchronize();
}
// a kernel launch on memory of the library's own (cudaMalloc / cudaFree), none of PyTorch's
int probe_launch_own() {
  float* p = nullptr;
  int r = cudaMalloc(&p, 1024 * sizeof(float));
  if (r) return r;
  add_one<<<4, 256>>>(p, 1024);
  r = cudaDeviceSynchronize();
  return r ? r : cudaFree(p);
}
// what our kernels with more than 48 KB of shared memory do before each launch
int probe_set_attribute(float* p) {
  int r = cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024);
  if (r) return r;
  big_smem_kernel<<<1, 128, 100 * 1024>>>(p);
  return cudaDeviceSynchronize();
}
// how the Hopper path gets the tensor-map encoders
int probe_entry_point() {
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q;
  return cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) ||
         q != cudaDriverEntryPointSuccess || f == nullptr;
}
}
