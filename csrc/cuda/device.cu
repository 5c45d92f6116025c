#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/device.h"

namespace deepkern::cuda {
namespace {

void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorString(status));
}

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
  check(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
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
  check(cudaMalloc(&device, sizeof(float) * n), "cudaMalloc");
  try {
    iota_kernel<<<(n + 255) / 256, 256>>>(device, n);
    check(cudaGetLastError(), "iota_kernel launch");
    check(cudaMemcpy(host.data(), device, sizeof(float) * n, cudaMemcpyDeviceToHost), "cudaMemcpy");
  } catch (...) {
    cudaFree(device);
    throw;
  }
  check(cudaFree(device), "cudaFree");
  return host;
}

}  // namespace deepkern::cuda
