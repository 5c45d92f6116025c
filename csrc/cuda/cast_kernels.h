// Launcher of the dtype conversion kernel (cast_kernels.cu); used by array.cpp's astype.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/array.h"
#include "cuda/copy_kernels.h"

namespace deepkern::cuda {

// dst[walk] = src[walk] converted from dtype `from` to `to` (cuda/cast.h); n = product of shape > 0;
// from != to.
void launch_cast(void* dst, DType to, const void* src, DType from, const StridedWalk& walk, std::int64_t n,
                 cudaStream_t stream);

}  // namespace deepkern::cuda
