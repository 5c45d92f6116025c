// Dropout on the GPU: the CPU kernels' contract (cpu/dropout/dropout.h) and the same Philox stream
// and per-element rule (cpu/dropout/philox.h), so the masks and outputs are bit-identical to the
// CPU's for the same (seed, offset). Work is queued on `stream` and the call returns at once; the
// mask is drawn on the device (no host memory involved).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

// y[i] = x[i] * (mask[i] ? 1 / (1 - p) : 0), mask[i] = element i kept, for i in [0, n): n
// contiguous elements of each array on the current device; no array overlaps another. T is float
// or double; p in [0, 1].
template <class T>
void launch_dropout(const T* x, T* y, std::uint8_t* mask, std::int64_t n, double p, std::uint64_t seed,
                    std::uint64_t offset, cudaStream_t stream);

// out[i] = grad[i] * (mask[i] ? 1 / (1 - p) : 0) for i in [0, n).
template <class T>
void launch_dropout_backward(const T* grad, const std::uint8_t* mask, T* out, std::int64_t n, double p,
                             cudaStream_t stream);

}  // namespace deepkern::cuda
