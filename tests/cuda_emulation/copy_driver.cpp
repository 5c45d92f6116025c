// csrc/cuda/copy_kernels.cu under the emulation: its launchers called with a walk built from the
// caller's shape and strides (in elements), as array.cpp builds it before merging dimensions.
#include "cuda/copy_kernels.cu"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "dk_emulation/driver.h"

namespace {

using deepkern::cuda::StridedWalk;

// The walk over `shape` (ndim dimensions) with the destination and source strides, and its size.
StridedWalk make_walk(std::int64_t ndim, const std::int64_t* shape, const std::int64_t* dst_strides,
                      const std::int64_t* src_strides, std::int64_t* size) {
  if (ndim < 1 || ndim > deepkern::cuda::kMaxKernelDims)
    throw std::invalid_argument("ndim " + std::to_string(ndim) + " is not in [1, 12]");
  StridedWalk walk{};
  walk.ndim = static_cast<int>(ndim);
  *size = 1;
  for (int k = 0; k < walk.ndim; ++k) {
    walk.shape[k] = shape[k];
    walk.stride[0][k] = dst_strides[k];
    walk.stride[1][k] = src_strides[k];
    *size *= shape[k];
  }
  return walk;
}

}  // namespace

DK_EMULATION_EXPORT int dk_strided_copy(void* dst, const void* src, std::int64_t ndim, const std::int64_t* shape,
                                        const std::int64_t* dst_strides, const std::int64_t* src_strides,
                                        std::int64_t itemsize) {
  return dk_emu::guarded([&] {
    std::int64_t n;
    const StridedWalk walk = make_walk(ndim, shape, dst_strides, src_strides, &n);
    deepkern::cuda::launch_strided_copy(dst, src, walk, n, static_cast<int>(itemsize), nullptr);
  });
}

DK_EMULATION_EXPORT int dk_fill(void* dst, std::uint64_t pattern, std::int64_t ndim, const std::int64_t* shape,
                                const std::int64_t* strides, std::int64_t itemsize) {
  return dk_emu::guarded([&] {
    std::int64_t n;
    const StridedWalk walk = make_walk(ndim, shape, strides, strides, &n);
    deepkern::cuda::launch_fill(dst, pattern, walk, n, static_cast<int>(itemsize), nullptr);
  });
}
