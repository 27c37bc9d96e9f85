// Host cost of the CUDA calls the Hopper forward makes per call, each timed alone over many
// repetitions: the two tensor-map encodes, the shared-memory attribute, a launch with the
// kernel's parameter size (two tensor maps + 256 bytes), the device get/set of a device guard.
//   nvcc -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o host_costs host_costs.cu && ./host_costs
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <chrono>
#include <cstdio>

struct Params { char bytes[256]; };
__global__ void params_kernel(const __grid_constant__ CUtensorMap a, const __grid_constant__ CUtensorMap b, Params p) {
  if (threadIdx.x == 1000) printf("%p %p %d\n", &a, &b, p.bytes[0]);
}
__global__ void tiny_kernel(float* p) { if (p) p[threadIdx.x] = 0.f; }

template <typename F>
double us_per_call(F f, int reps = 20000) {
  for (int i = 0; i < 100; ++i) f();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
}

int main() {
  void *f1 = nullptr, *f2 = nullptr;
  cudaDriverEntryPointQueryResult q;
  cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f1, 12000, cudaEnableDefault, &q);
  cudaGetDriverEntryPointByVersion("cuTensorMapEncodeIm2col", &f2, 12000, cudaEnableDefault, &q);
  auto tiled = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f1);
  auto im2col = reinterpret_cast<PFN_cuTensorMapEncodeIm2col_v12000>(f2);
  float* buf;
  cudaMalloc(&buf, 64 << 20);
  CUtensorMap wmap, xmap;
  const cuuint64_t wd[2] = {27 * 64, 128}, ws[1] = {27 * 64 * 4};
  const cuuint32_t wb[2] = {32, 128}, e[5] = {1, 1, 1, 1, 1};
  const cuuint64_t xd[5] = {64, 8, 8, 8, 16}, xs[4] = {256, 2048, 16384, 131072};
  const int lo[3] = {-2, -2, -2}, hi[3] = {0, 0, 0};
  printf("encode tiled      %.2f us\n", us_per_call([&] {
    tiled(&wmap, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, buf, wd, ws, wb, e, CU_TENSOR_MAP_INTERLEAVE_NONE,
          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  }));
  printf("encode im2col     %.2f us\n", us_per_call([&] {
    im2col(&xmap, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 5, buf, xd, xs, lo, hi, 32, 256, e, CU_TENSOR_MAP_INTERLEAVE_NONE,
           CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  }));
  printf("func attribute    %.2f us\n", us_per_call([&] {
    cudaFuncSetAttribute(params_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
  }));
  int dev = 0;
  printf("get+set device    %.2f us\n", us_per_call([&] { cudaGetDevice(&dev); cudaSetDevice(dev); }));
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  Params p{};
  printf("launch, 2 maps    %.2f us\n", us_per_call([&] { params_kernel<<<132, 384, 200 * 1024, s>>>(wmap, xmap, p); }, 500));
  cudaStreamSynchronize(s);
  printf("launch, tiny      %.2f us\n", us_per_call([&] { tiny_kernel<<<1, 32, 0, s>>>(nullptr); }, 500));
  cudaStreamSynchronize(s);
  printf("last error        %.2f us\n", us_per_call([&] { (void)cudaGetLastError(); }));
  return 0;
}
