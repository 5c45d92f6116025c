// Kernel launches and dynamic shared memory, shared by every kernel family (include from .cu files
// only). Kernel sources launch only through `launch`, take dynamic shared memory only from
// `dynamic_shared_memory` and reach inline PTX only through cuda/ptx.h: the emulation tests
// (tests/cuda_emulation) build the same sources for host threads with their own versions of these
// three headers, so kernel logic is tested on machines without a GPU.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "cuda/check.h"

namespace deepkern::cuda {

// kernel<<<grid, block, shared_bytes, stream>>>(args...), then the launch checked: a failure is a
// CudaError naming `name`. Dynamic shared memory above the default 48 KiB is enabled first.
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
            cudaStream_t stream, Args&&... args) {
  if (shared_bytes > 48 * 1024) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
          name);
  }
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) check(status, (std::string("launch of ") + name).c_str());
}

// The block's dynamic shared memory (the launch's shared_bytes), aligned to 128 bytes.
template <typename T>
__device__ __forceinline__ T* dynamic_shared_memory() {
  extern __shared__ __align__(128) unsigned char dk_dynamic_shared[];
  return reinterpret_cast<T*>(dk_dynamic_shared);
}

}  // namespace deepkern::cuda
