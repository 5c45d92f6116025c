// Element copies and fills over any strides, one kernel each per element width (the dtype only
// matters through its size: bytes are moved, never converted).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/check.h"
#include "cuda/copy_kernels.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void strided_copy_kernel(T* __restrict__ dst, const T* __restrict__ src, const StridedWalk walk,
                                    std::int64_t n) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    std::int64_t offset[2];
    walk_offsets(walk, i, offset);
    dst[offset[0]] = src[offset[1]];
  }
}

template <typename T>
__global__ void fill_kernel(T* __restrict__ dst, T value, const StridedWalk walk, std::int64_t n) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    std::int64_t offset[2];
    walk_offsets(walk, i, offset);
    dst[offset[0]] = value;
  }
}

// Enough blocks for one element per thread, capped (the loops stride over the rest).
unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, std::int64_t{1} << 20));
}

// Calls fn with a value of the unsigned type of `itemsize` bytes (1, 2, 4 or 8).
template <typename Fn>
void with_element_type(int itemsize, const char* what, Fn&& fn) {
  switch (itemsize) {
    case 1: return fn(std::uint8_t{});
    case 2: return fn(std::uint16_t{});
    case 4: return fn(std::uint32_t{});
    case 8: return fn(std::uint64_t{});
  }
  throw std::invalid_argument(std::string(what) + ": element size " + std::to_string(itemsize) +
                              " is not 1, 2, 4 or 8");
}

}  // namespace

void launch_strided_copy(void* dst, const void* src, const StridedWalk& walk, std::int64_t n, int itemsize,
                         cudaStream_t stream) {
  with_element_type(itemsize, "strided copy", [&](auto element) {
    using T = decltype(element);
    launch("strided_copy_kernel", strided_copy_kernel<T>, dim3(blocks_for(n)), dim3(kThreads), 0, stream,
           static_cast<T*>(dst), static_cast<const T*>(src), walk, n);
  });
}

void launch_fill(void* dst, std::uint64_t pattern, const StridedWalk& walk, std::int64_t n, int itemsize,
                 cudaStream_t stream) {
  with_element_type(itemsize, "fill", [&](auto element) {
    using T = decltype(element);
    launch("fill_kernel", fill_kernel<T>, dim3(blocks_for(n)), dim3(kThreads), 0, stream, static_cast<T*>(dst),
           static_cast<T>(pattern), walk, n);
  });
}

}  // namespace deepkern::cuda
