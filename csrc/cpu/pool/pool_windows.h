// The window arithmetic of 2-D pooling along one axis, shared by the CPU kernels (pool.cpp,
// pool_kernels.cpp) and the CUDA kernels (cuda/pool/pool.cu), so both devices use the same windows,
// taps and divisors. Plain integer arithmetic (no std:: calls, which nvcc's device code lacks); the
// callers checked that the indices stay inside int64 (window_indices_fit in the bindings).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DK_POOL_FN __host__ __device__ __forceinline__
#else
#define DK_POOL_FN inline
#endif

namespace deepkern::pool_windows {

// The in-bounds taps of one window along an axis: input positions first, first + step, ... (count).
struct AxisTaps {
  std::int64_t first, count, step;
};

// The taps of window `o` (of `kernel` taps `dilation` apart from o * stride - pad) that fall inside
// [0, in).
DK_POOL_FN AxisTaps axis_taps(std::int64_t o, std::int64_t in, std::int64_t kernel, std::int64_t stride,
                              std::int64_t pad, std::int64_t dilation) {
  const std::int64_t start = o * stride - pad;
  const std::int64_t lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  const std::int64_t reach = (in - 1 - start) / dilation + 1;
  const std::int64_t hi = start >= in ? 0 : (kernel < reach ? kernel : reach);
  return {start + lo * dilation, hi > lo ? hi - lo : 0, dilation};
}

// The divisor's factor along one axis for the average window starting at `start` (PyTorch's rule):
// the window clipped to the padded input (count_include_pad) or to the input. The product of two
// is taken in double by the callers (exact below 2**53): int64 would overflow for kernels of 2**40.
DK_POOL_FN std::int64_t window_extent(std::int64_t start, std::int64_t n_in, std::int64_t kernel, std::int64_t pad,
                                      bool count_include_pad) {
  const std::int64_t end = start + kernel < n_in + pad ? start + kernel : n_in + pad;
  if (count_include_pad) return end - start;
  return (end < n_in ? end : n_in) - (start > 0 ? start : 0);
}

// PyTorch's adaptive windows: output i of n_out covers inputs [adaptive_start, adaptive_end).
DK_POOL_FN std::int64_t adaptive_start(std::int64_t i, std::int64_t n_in, std::int64_t n_out) {
  return i * n_in / n_out;
}
DK_POOL_FN std::int64_t adaptive_end(std::int64_t i, std::int64_t n_in, std::int64_t n_out) {
  return ((i + 1) * n_in + n_out - 1) / n_out;
}

}  // namespace deepkern::pool_windows

#undef DK_POOL_FN
