// Device memory: the caching allocator and the errors of the CUDA side. Plain C++ (no CUDA
// headers), so the pybind11 bindings are compiled by the host compiler.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace deepkern::cuda {

// A failed CUDA call: the message names the call and cudaGetErrorString's text.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An allocation the device could not satisfy even after the cache was emptied; the message gives
// the size asked and the device's free memory. Python sees a MemoryError.
class OutOfMemory : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `bytes` of memory on `device`, usable by work on `stream` (a cudaStream_t; nullptr: the legacy
// default stream). The memory goes back to the allocator's cache, for that stream only, when the
// last copy of the returned pointer is dropped, so work queued on the stream before the release
// finishes before any later allocation's work on it. 0 bytes gives a null pointer and no block.
// Sizes are rounded up to a size class: multiples of 512 bytes up to 1 MiB, of 2 MiB above.
// A cached block of the stream is reused when it is at most twice the rounded size; otherwise
// cudaMalloc, and when that fails, the whole cache of the device is freed and cudaMalloc retried
// once before OutOfMemory is thrown.
std::shared_ptr<void> allocate(int device, std::size_t bytes, void* stream);

struct MemoryStats {
  std::size_t allocated = 0;     // bytes of the blocks in use (size-class rounded)
  std::size_t reserved = 0;      // allocated + cached: what deepkern holds from cudaMalloc
  std::size_t cuda_mallocs = 0;  // cudaMalloc calls that succeeded so far
  std::size_t cache_hits = 0;    // allocations served from the cache
};
MemoryStats memory_stats(int device);
// Frees every cached block of every device (after synchronizing the device); blocks in use stay.
void empty_cache();
// (free, total) bytes of the device (cudaMemGetInfo).
std::pair<std::size_t, std::size_t> mem_get_info(int device);
// The size class of a request (see allocate).
std::size_t rounded_size(std::size_t bytes);

}  // namespace deepkern::cuda
