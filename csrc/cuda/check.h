// CUDA-side helpers (include only from .cu files and CUDA-side .cpp files): the check macro that
// turns every failed CUDA call into an exception, and a guard that makes a device current.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "cuda/memory.h"

namespace deepkern::cuda {

// Throws CudaError naming `what` (the call's text) and cudaGetErrorString, and clears the error.
inline void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // a non-sticky error must not be reported again by the next check
  throw CudaError(std::string(what) + " failed: " + cudaGetErrorString(status) + " (" + cudaGetErrorName(status) + ")");
}

// Every CUDA runtime call goes through this; after a kernel launch use DK_CUDA_CHECK_LAUNCH.
#define DK_CUDA_CHECK(call) ::deepkern::cuda::check((call), #call)
#define DK_CUDA_CHECK_LAUNCH(kernel_name) ::deepkern::cuda::check(cudaGetLastError(), "launch of " kernel_name)

// Makes `device` current for the guard's lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    DK_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) DK_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace deepkern::cuda
