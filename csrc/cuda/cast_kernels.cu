// Dtype conversion over any strides: one kernel per (source, destination) pair of dtypes, each
// element converted by cuda/cast.h.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/cast.h"
#include "cuda/cast_kernels.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;

template <class From, class To>
__global__ void __launch_bounds__(kThreads)
    cast_kernel(To* __restrict__ dst, const From* __restrict__ src, const StridedWalk walk, std::int64_t n) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    std::int64_t offset[2];
    walk_offsets(walk, i, offset);
    dst[offset[0]] = cast::convert<To>(src[offset[1]]);
  }
}

// Calls fn with a value of the storage type of `dtype`.
template <class Fn>
void with_storage_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::float32: return fn(float{});
    case DType::float64: return fn(double{});
    case DType::float16: return fn(cast::Half{});
    case DType::bfloat16: return fn(cast::BFloat16{});
    case DType::int32: return fn(std::int32_t{});
    case DType::int64: return fn(std::int64_t{});
    case DType::bool_: return fn(cast::Bool{});
    case DType::uint8: return fn(std::uint8_t{});
  }
  throw std::invalid_argument("cast: unknown dtype code " + std::to_string(static_cast<int>(dtype)));
}

}  // namespace

void launch_cast(void* dst, DType to, const void* src, DType from, const StridedWalk& walk, std::int64_t n,
                 cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, 1 << 20));
  with_storage_type(from, [&](auto source) {
    with_storage_type(to, [&](auto destination) {
      using From = decltype(source);
      using To = decltype(destination);
      if constexpr (std::is_same_v<From, To>)
        throw std::invalid_argument("cast: source and destination have the same dtype; copy instead");
      else
        launch("cast_kernel", cast_kernel<From, To>, dim3(blocks), dim3(kThreads), 0, stream, static_cast<To*>(dst),
               static_cast<const From*>(src), walk, n);
    });
  });
}

}  // namespace deepkern::cuda
