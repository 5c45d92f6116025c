// 2-D pooling on the GPU: max, average and adaptive average, forward and backward, with the CPU
// kernels' contract (cpu/pool/pool.h: C-contiguous NCHW planes, the same windows, divisors, NaN and
// tie rules) and their window arithmetic (cpu/pool/pool_windows.h). T is float or double; every
// pointer is device memory of the current device; outputs overlap no input. Work is queued on
// `stream` and the calls return at once. Every result is deterministic (no float atomics): the
// forwards compute each output from its window, the backward passes each input element's gradient
// from the outputs that reach it, summed in the CPU's order.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/pool/pool.h"

namespace deepkern::cuda {

// max_pool2d (cpu/pool/pool.h); indices may be null.
template <class T>
void launch_max_pool2d(const cpu::Pool2dShape& s, const T* x, T* out, std::int64_t* indices, cudaStream_t stream);

// Where launch_check_pool_indices records an index outside [0, in_h * in_w) other than -1: device
// memory the caller zeroed. `found` becomes nonzero, and `position` (the flat position in indices)
// and `index` name one such index, all written by one thread.
struct PoolBadIndex {
  std::int64_t position, index;
  int found;
};

// Records in *bad one index of the planes * out_h * out_w `indices` that is neither -1 nor inside
// [0, in_h * in_w), if there is one; reads nothing else.
void launch_check_pool_indices(const cpu::Pool2dShape& s, const std::int64_t* indices, PoolBadIndex* bad,
                               cudaStream_t stream);

// max_pool2d_backward (cpu/pool/pool.h): grad_x = 0, then grad_x[p, indices[p, i]] += grad_out[p, i]
// in the order of i, each plane by one block. Does nothing when bad->found is nonzero (the check
// ran before it on the stream), so a refused call leaves grad_x as it was; bad may be null when
// the caller knows every index to be -1 or inside the plane.
template <class T>
void launch_max_pool2d_backward(const cpu::Pool2dShape& s, const T* grad_out, const std::int64_t* indices, T* grad_x,
                                const PoolBadIndex* bad, cudaStream_t stream);

// avg_pool2d and avg_pool2d_backward (cpu/pool/pool.h); dilation must be 1.
template <class T>
void launch_avg_pool2d(const cpu::Pool2dShape& s, const T* x, T* out, bool count_include_pad,
                       std::int64_t divisor_override, cudaStream_t stream);
template <class T>
void launch_avg_pool2d_backward(const cpu::Pool2dShape& s, const T* grad_out, T* grad_x, bool count_include_pad,
                                std::int64_t divisor_override, cudaStream_t stream);

// adaptive_avg_pool2d and its backward pass (cpu/pool/pool.h); only planes and the sizes of `s`
// are read.
template <class T>
void launch_adaptive_avg_pool2d(const cpu::Pool2dShape& s, const T* x, T* out, cudaStream_t stream);
template <class T>
void launch_adaptive_avg_pool2d_backward(const cpu::Pool2dShape& s, const T* grad_out, T* grad_x, cudaStream_t stream);

}  // namespace deepkern::cuda
