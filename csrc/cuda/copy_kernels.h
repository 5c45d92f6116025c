// Launchers of the element-copy and fill kernels (copy_kernels.cu); used by array.cpp. The walk
// over strides (cuda/strided_walk.h) is shared with the casts and the elementwise kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/strided_walk.h"

namespace deepkern::cuda {

// The walk of a copy or fill: operand 0 is the destination, operand 1 the source.
using StridedWalk = Walk<2>;

// dst[walk] = src[walk] for elements of `itemsize` bytes (1, 2, 4 or 8); n = product of shape > 0.
void launch_strided_copy(void* dst, const void* src, const StridedWalk& walk, std::int64_t n, int itemsize,
                         cudaStream_t stream);
// dst[walk] = pattern's low `itemsize` bytes; the source strides are unused.
void launch_fill(void* dst, std::uint64_t pattern, const StridedWalk& walk, std::int64_t n, int itemsize,
                 cudaStream_t stream);

}  // namespace deepkern::cuda
