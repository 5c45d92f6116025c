// Host stand-in for the CUDA runtime API used by deepkern's kernel sources and their launchers.
// "Device memory" is host memory: copies and sets are synchronous memcpy/memset, streams are
// tokens, and the device is an emulated sm_80 (see kDevice below). Errors follow the runtime's
// convention: a call returns its error and also leaves it for cudaGetLastError.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "dk_emulation/vector_types.h"

#define DEEPKERN_CUDA_EMULATION 1

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

struct cudaDeviceProp {
  char name[256];
  std::size_t totalGlobalMem;
  std::size_t sharedMemPerBlock;
  std::size_t sharedMemPerBlockOptin;
  int warpSize;
  int maxThreadsPerBlock;
  int multiProcessorCount;
  int major;
  int minor;
};

namespace dk_emu {

// The emulated device: an A100-like sm_80 (the kernels' sm_80 paths run; Hopper-only ones cannot).
struct DeviceLimits {
  int major = 8, minor = 0, multiprocessors = 108, max_threads_per_block = 1024;
  std::size_t default_shared = 48 * 1024;  // dynamic shared memory without the attribute
  std::size_t optin_shared = 166912;       // cudaDevAttrMaxSharedMemoryPerBlockOptin of sm_80
};
inline const DeviceLimits kDevice{};

inline thread_local cudaError_t last_error = cudaSuccess;

// Records `status` for cudaGetLastError (errors only) and returns it.
inline cudaError_t report(cudaError_t status) {
  if (status != cudaSuccess) last_error = status;
  return status;
}

// The dynamic shared memory each kernel may take (cudaFuncSetAttribute), keyed by its address.
inline std::size_t& max_dynamic_shared(const void* kernel) {
  static std::mutex mutex;
  static std::map<const void*, std::size_t> limits;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = limits.find(kernel);
  if (found == limits.end()) found = limits.emplace(kernel, kDevice.default_shared).first;
  return found->second;
}

}  // namespace dk_emu

inline cudaError_t cudaGetLastError() {
  const cudaError_t status = dk_emu::last_error;
  dk_emu::last_error = cudaSuccess;
  return status;
}
inline cudaError_t cudaPeekAtLastError() { return dk_emu::last_error; }

inline const char* cudaGetErrorName(cudaError_t status) {
  switch (status) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

inline const char* cudaGetErrorString(cudaError_t status) {
  switch (status) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

// One device, index 0.
inline cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : dk_emu::report(cudaErrorInvalidDevice);
}

inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (device != 0) return dk_emu::report(cudaErrorInvalidDevice);
  const dk_emu::DeviceLimits& d = dk_emu::kDevice;
  switch (attribute) {
    case cudaDevAttrMaxThreadsPerBlock: *value = d.max_threads_per_block; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(d.default_shared); return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = d.multiprocessors; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = d.major; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = d.minor; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(d.optin_shared); return cudaSuccess;
  }
  return dk_emu::report(cudaErrorInvalidValue);
}

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return dk_emu::report(cudaErrorInvalidDevice);
  const dk_emu::DeviceLimits& d = dk_emu::kDevice;
  *prop = cudaDeviceProp{};
  std::strcpy(prop->name, "deepkern emulated sm_80");
  prop->totalGlobalMem = std::size_t{1} << 34;
  prop->sharedMemPerBlock = d.default_shared;
  prop->sharedMemPerBlockOptin = d.optin_shared;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = d.max_threads_per_block;
  prop->multiProcessorCount = d.multiprocessors;
  prop->major = d.major;
  prop->minor = d.minor;
  return cudaSuccess;
}

// Raises the dynamic shared memory `kernel` may take, up to the device's opt-in limit.
template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attribute, int value) {
  if (attribute == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<std::size_t>(value) > dk_emu::kDevice.optin_shared)
    return dk_emu::report(cudaErrorInvalidValue);
  dk_emu::max_dynamic_shared(reinterpret_cast<const void*>(kernel)) = static_cast<std::size_t>(value);
  return cudaSuccess;
}

// Memory: host allocations (256-byte aligned, as cudaMalloc's), synchronous copies and sets.
inline cudaError_t cudaMalloc(void** pointer, std::size_t bytes) {
  *pointer = bytes == 0 ? nullptr : std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return bytes != 0 && *pointer == nullptr ? dk_emu::report(cudaErrorMemoryAllocation) : cudaSuccess;
}
template <typename T>
cudaError_t cudaMalloc(T** pointer, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(pointer), bytes);
}
inline cudaError_t cudaFree(void* pointer) {
  std::free(pointer);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, bytes, kind);
}
inline cudaError_t cudaMemcpy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                                     std::size_t width, std::size_t height, cudaMemcpyKind, cudaStream_t = nullptr) {
  if (width > dpitch || width > spitch) return dk_emu::report(cudaErrorInvalidValue);
  for (std::size_t row = 0; row < height; ++row)
    std::memmove(static_cast<char*>(dst) + row * dpitch, static_cast<const char*>(src) + row * spitch, width);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* dst, int value, std::size_t bytes) {
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t = nullptr) {
  return cudaMemset(dst, value, bytes);
}

inline cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}

// Resident blocks per multiprocessor by the thread limit alone (2048 threads, 32 blocks on sm_80).
template <typename Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel*, int block_size, std::size_t) {
  if (block_size <= 0 || block_size > dk_emu::kDevice.max_threads_per_block)
    return dk_emu::report(cudaErrorInvalidValue);
  *blocks = std::min(2048 / block_size, 32);
  return cudaSuccess;
}

// Work runs when it is issued, so there is never anything to wait for.
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
