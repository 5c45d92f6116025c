#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/check.h"
#include "cuda/device.h"

namespace deepkern::cuda {
namespace {

__global__ void iota_kernel(float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<float>(i);
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return count;
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(status);
  }
  return count > 0 ? "" : "no CUDA device is visible";
}

DeviceInfo device_info(int index) {
  if (index < 0 || index >= device_count())
    throw std::out_of_range("device index " + std::to_string(index) + " is out of range (" +
                            std::to_string(device_count()) + " devices)");
  cudaDeviceProp prop;
  DK_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return {prop.name, prop.major, prop.minor, static_cast<long long>(prop.totalGlobalMem)};
}

int runtime_version() {
  int version = 0;
  cudaRuntimeGetVersion(&version);
  return version;
}

std::vector<float> iota_on_device(int n) {
  if (n < 0) throw std::invalid_argument("n must be >= 0, got " + std::to_string(n));
  std::vector<float> host(static_cast<size_t>(n));
  if (n == 0) return host;
  float* device = nullptr;
  DK_CUDA_CHECK(cudaMalloc(&device, sizeof(float) * n));
  try {
    iota_kernel<<<(n + 255) / 256, 256>>>(device, n);
    DK_CUDA_CHECK_LAUNCH("iota_kernel");
    DK_CUDA_CHECK(cudaMemcpy(host.data(), device, sizeof(float) * n, cudaMemcpyDeviceToHost));
  } catch (...) {
    cudaFree(device);
    throw;
  }
  DK_CUDA_CHECK(cudaFree(device));
  return host;
}

}  // namespace deepkern::cuda
