// Launchers of the element-copy and fill kernels (copy_kernels.cu); used by array.cpp. The walk
// over strides is shared with the other element-wise kernels (cast_kernels.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

// The most dimensions a kernel indexes after adjacent dimensions are merged.
constexpr int kMaxKernelDims = 12;

// An n-dimensional walk over `shape` in C order with a destination and a source stride (in
// elements) per dimension; dimension 0 is the outermost.
struct StridedWalk {
  int ndim;
  std::int64_t shape[kMaxKernelDims];
  std::int64_t dst_stride[kMaxKernelDims];
  std::int64_t src_stride[kMaxKernelDims];
};

#ifdef __CUDACC__
// Offsets (in elements) of element i of the C-order walk in the destination and the source.
__device__ __forceinline__ void walk_offsets(const StridedWalk& w, std::int64_t i, std::int64_t* dst,
                                             std::int64_t* src) {
  if (w.ndim == 1) {  // the contiguous case after merging: no division
    *dst = i * w.dst_stride[0];
    *src = i * w.src_stride[0];
    return;
  }
  std::int64_t d = 0, s = 0;
  for (int k = w.ndim - 1; k >= 0; --k) {
    const std::int64_t index = i % w.shape[k];
    i /= w.shape[k];
    d += index * w.dst_stride[k];
    s += index * w.src_stride[k];
  }
  *dst = d;
  *src = s;
}
#endif

// dst[walk] = src[walk] for elements of `itemsize` bytes (1, 2, 4 or 8); n = product of shape > 0.
void launch_strided_copy(void* dst, const void* src, const StridedWalk& walk, std::int64_t n, int itemsize,
                         cudaStream_t stream);
// dst[walk] = pattern's low `itemsize` bytes; src_stride unused.
void launch_fill(void* dst, std::uint64_t pattern, const StridedWalk& walk, std::int64_t n, int itemsize,
                 cudaStream_t stream);

}  // namespace deepkern::cuda
