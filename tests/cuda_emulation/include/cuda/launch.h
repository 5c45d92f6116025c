// Host version of csrc/cuda/launch.h for the emulation: the same API, the kernel run on host
// threads (dk_emulation/runtime.h). The launch is checked as on the GPU: the block's size, the
// grid's, and dynamic shared memory against the kernel's limit (48 KiB unless raised with
// cudaFuncSetAttribute, which launch does above 48 KiB as the real one). A configuration error is
// a CudaError naming `name` and the CUDA error; an exception on a kernel thread is a CudaError too.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda/check.h"

namespace deepkern::cuda {

namespace emulation {

// Why the GPU would refuse the launch, or cudaSuccess.
inline cudaError_t configuration_error(const void* kernel, dim3 grid, dim3 block, std::size_t shared_bytes) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > static_cast<unsigned>(dk_emu::kDevice.max_threads_per_block) || block.z > 64)
    return cudaErrorInvalidConfiguration;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
    return cudaErrorInvalidConfiguration;
  if (shared_bytes > dk_emu::max_dynamic_shared(kernel)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace emulation

// kernel<<<grid, block, shared_bytes, stream>>>(args...) on the host, then checked.
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  static_cast<void>(stream);
  if (shared_bytes > 48 * 1024) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
          name);
  }
  const cudaError_t status =
      dk_emu::report(emulation::configuration_error(reinterpret_cast<const void*>(kernel), grid, block, shared_bytes));
  if (status != cudaSuccess) check(status, (std::string("launch of ") + name).c_str());
  // The arguments converted to the parameters' types, as a launch copies them.
  using Call = std::pair<void (*)(Params...), std::tuple<std::decay_t<Params>...>>;
  const Call call{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
  const auto invoke = [](const void* data) {
    const Call& c = *static_cast<const Call*>(data);
    std::apply(c.first, c.second);
  };
  try {
    dk_emu::run(name, grid, block, shared_bytes, invoke, &call);
  } catch (const std::exception& e) {
    throw CudaError(e.what());
  }
}

// The block's dynamic shared memory (the launch's shared_bytes), aligned to 128 bytes.
template <typename T>
__device__ __forceinline__ T* dynamic_shared_memory() {
  return reinterpret_cast<T*>(dk_emu::current_launch("dynamic_shared_memory").shared());
}

}  // namespace deepkern::cuda
