// The strided walk every elementwise kernel shares (copies, fills, arithmetic, reductions): an
// n-dimensional C-order walk over a shape with one stride set (in elements) per operand. Host code
// builds it with merge_walk (extent-1 dimensions dropped, dimensions contiguous in every operand
// merged); kernels turn a linear index into each operand's offset with walk_offsets.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace deepkern::cuda {

// The most dimensions a kernel indexes after adjacent dimensions are merged.
constexpr int kMaxKernelDims = 12;

// Dimension 0 is the outermost; stride[j][k] is operand j's stride (elements) along dimension k.
template <int N>
struct Walk {
  int ndim;
  std::int64_t shape[kMaxKernelDims];
  std::int64_t stride[N][kMaxKernelDims];
};

// Offsets (in elements) of element i of the C-order walk in each operand.
template <int N>
__host__ __device__ __forceinline__ void walk_offsets(const Walk<N>& w, std::int64_t i, std::int64_t (&offset)[N]) {
  if (w.ndim == 1) {  // the contiguous case after merging: no division
#pragma unroll
    for (int j = 0; j < N; ++j) offset[j] = i * w.stride[j][0];
    return;
  }
#pragma unroll
  for (int j = 0; j < N; ++j) offset[j] = 0;
  for (int k = w.ndim - 1; k >= 0; --k) {
    const std::int64_t index = i % w.shape[k];
    i /= w.shape[k];
#pragma unroll
    for (int j = 0; j < N; ++j) offset[j] += index * w.stride[j][k];
  }
}

// The walk over `shape` with operand j's strides strides[j] (each as long as shape), extent-1
// dimensions dropped and a dimension merged into the one outside it where every operand steps over
// it exactly; false when more than kMaxKernelDims dimensions remain.
template <int N>
bool merge_walk(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t> (&strides)[N], Walk<N>* out) {
  Walk<N>& w = *out;
  w = Walk<N>{};
  int kept = 0;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 1) continue;
    bool merge = kept > 0;
    for (int j = 0; j < N && merge; ++j) merge = w.stride[j][kept - 1] == shape[k] * strides[j][k];
    if (merge) {  // the outer dimension steps exactly over this one
      w.shape[kept - 1] *= shape[k];
      for (int j = 0; j < N; ++j) w.stride[j][kept - 1] = strides[j][k];
      continue;
    }
    if (kept == kMaxKernelDims) return false;
    w.shape[kept] = shape[k];
    for (int j = 0; j < N; ++j) w.stride[j][kept] = strides[j][k];
    ++kept;
  }
  if (kept == 0) {  // a single element (or none): one dimension of extent 1
    w.shape[0] = 1;
    for (int j = 0; j < N; ++j) w.stride[j][0] = 0;
    kept = 1;
  }
  w.ndim = kept;
  return true;
}

}  // namespace deepkern::cuda
