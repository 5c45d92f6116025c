// What the CUDA module knows about the GPUs: plain C++ types only, so the pybind11 binding is
// compiled by the host compiler and never includes CUDA headers.
#pragma once
#include <string>
#include <vector>

namespace deepkern::cuda {

// Number of visible GPUs; 0 (never an exception) when there is no driver or no device.
int device_count();
// Why device_count() is 0, or "" when it is not.
std::string unavailable_reason();
// Name and compute capability ("NVIDIA H100 80GB HBM3", 9, 0); throws std::out_of_range.
struct DeviceInfo {
  std::string name;
  int major, minor;
  long long total_memory;
};
DeviceInfo device_info(int index);
// CUDA runtime version this module was built with, e.g. 13000.
int runtime_version();
// Runs a kernel that writes 0..n-1 into device memory and copies it back; throws
// std::runtime_error naming the failing CUDA call.
std::vector<float> iota_on_device(int n);

}  // namespace deepkern::cuda
