// Gather and scatter along an axis (gather.h): one kernel templated on the op and the element
// type. It walks the shape R with the shared strided walk (cuda/strided_walk.h) over three
// operands: a with stride 0 along the axis (the index supplies that offset), the index, and the
// other array (broadcast dimensions with stride 0).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/check.h"
#include "cuda/elementwise/dispatch.h"
#include "cuda/elementwise/gather.h"
#include "cuda/launch.h"
#include "cuda/strided_walk.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 16;

// What the kernel does with each element; check only validates the indices.
enum class Mode { check, take, put, add };

// For each of the n elements of the walk (operand 0: a off the axis, 1: index, 2: other): k =
// index, made non-negative by adding `extent`; outside [0, extent) it is recorded in bad and
// skipped, else `M` is applied between a[offset + k * axis_stride] and other.
template <Mode M, typename T>
__global__ void __launch_bounds__(kThreads)
    along_axis_kernel(T* a, const std::int64_t* __restrict__ index, T* other, const Walk<3> walk, std::int64_t n,
                      std::int64_t extent, std::int64_t axis_stride, std::int64_t* bad) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    std::int64_t offset[3];
    walk_offsets(walk, i, offset);
    const std::int64_t given = index[offset[1]];
    const std::int64_t k = given < 0 ? given + extent : given;
    if (k < 0 || k >= extent) {
      bad[1] = given;  // any of the bad indices met will do
      bad[0] = 1;
      continue;
    }
    if constexpr (M == Mode::take) {
      other[offset[2]] = a[offset[0] + k * axis_stride];
    } else if constexpr (M == Mode::put) {
      a[offset[0] + k * axis_stride] = other[offset[2]];
    } else if constexpr (M == Mode::add) {
      atomicAdd(a + offset[0] + k * axis_stride, other[offset[2]]);
    }
  }
}

// x's strides (elements) for reading it broadcast to `shape` (as many dimensions or fewer): 0
// where x has extent 1 or lacks the dimension.
std::vector<std::int64_t> broadcast_strides(const DeviceArray& x, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size(), 0);
  const std::size_t lead = shape.size() - x.ndim();
  for (std::size_t k = 0; k < x.ndim(); ++k)
    if (x.shape[k] != 1) strides[lead + k] = x.strides[k];
  return strides;
}

template <Mode M, typename T>
void run(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t> (&strides)[3], T* a,
         const DeviceArray& index, T* other, std::int64_t extent, std::int64_t axis_stride, std::int64_t* bad,
         cudaStream_t stream) {
  std::int64_t n = 1;
  for (const std::int64_t e : shape) n *= e;
  if (n == 0) return;
  Walk<3> walk;
  if (!merge_walk<3>(shape, strides, &walk))
    throw std::invalid_argument("along_axis: arrays of " + std::to_string(shape.size()) +
                                " dimensions need more than " + std::to_string(kMaxKernelDims) +
                                " after merging; make them contiguous first");
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  launch("along_axis_kernel", along_axis_kernel<M, T>, blocks, kThreads, 0, stream, a,
         reinterpret_cast<const std::int64_t*>(index.data), other, walk, n, extent, axis_stride, bad);
}

template <typename T>
constexpr bool has_atomic_add() {
  return std::is_same_v<T, float> || std::is_same_v<T, double>;
}

}  // namespace

bool supports(AlongAxisOp op, DType dtype) {
  bool ok = false;
  ew::with_type(dtype, [&](auto t) { ok = op != AlongAxisOp::add || has_atomic_add<decltype(t)>(); });
  return ok;
}

void along_axis(AlongAxisOp op, const DeviceArray& a, const DeviceArray& index, const DeviceArray& other, int axis,
                std::int64_t* bad, cudaStream_t stream) {
  std::vector<std::int64_t> shape(a.ndim());
  for (std::size_t d = 0; d < a.ndim(); ++d)
    shape[d] = static_cast<int>(d) == axis ? index.shape[d] : std::max(a.shape[d], index.shape[d]);
  std::vector<std::int64_t> a_strides = broadcast_strides(a, shape);
  a_strides[axis] = 0;
  const std::vector<std::int64_t> strides[3] = {a_strides, broadcast_strides(index, shape),
                                                broadcast_strides(other, shape)};
  const bool found = ew::with_type(a.dtype, [&](auto t) {
    using T = decltype(t);
    T* data = reinterpret_cast<T*>(a.data);
    T* values = reinterpret_cast<T*>(other.data);
    const std::int64_t extent = a.shape[axis], stride = a.strides[axis];
    if (op == AlongAxisOp::take) {
      run<Mode::take>(shape, strides, data, index, values, extent, stride, bad, stream);
    } else if (op == AlongAxisOp::put) {
      run<Mode::put>(shape, strides, data, index, values, extent, stride, bad, stream);
    } else if constexpr (has_atomic_add<T>()) {
      run<Mode::add>(shape, strides, data, index, values, extent, stride, bad, stream);
    } else {
      throw std::invalid_argument("add.at has no CUDA kernel for dtype code " +
                                  std::to_string(static_cast<int>(a.dtype)));
    }
  });
  if (!found)
    throw std::invalid_argument("along_axis has no CUDA kernel for dtype code " +
                                std::to_string(static_cast<int>(a.dtype)));
}

void check_indices(const DeviceArray& index, std::int64_t extent, std::int64_t* bad, cudaStream_t stream) {
  const std::vector<std::int64_t> zeros(index.ndim(), 0);
  const std::vector<std::int64_t> strides[3] = {zeros, index.strides, zeros};
  run<Mode::check, float>(index.shape, strides, nullptr, index, nullptr, extent, 0, bad, stream);
}

}  // namespace deepkern::cuda
