// The pooling bindings of every device (deepkern._C: bind_pool.cpp, deepkern._cuda:
// bind_cuda_pool.cpp): one shape tuple, checked one way.
#pragma once
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <string>

#include "cpu/pool/pool.h"
#include "python/boundary.h"

namespace deepkern::python {

// Every pooling binding's contract: x and grad_x are C-contiguous arrays of planes * in_h * in_w
// elements (NCHW planes, any shape), out and grad_out of planes * out_h * out_w, one float dtype;
// indices (max pooling) int64 of the output's count. `shape` is (planes, in_h, in_w, out_h, out_w,
// kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w): sizes and paddings
// in [0, 2**62), kernel, stride and dilation in [1, 2**62), the element counts and the windows'
// farthest reach within int64. The output is written, never read, and overlaps no other
// argument.
using PoolShapeTuple = std::array<int64_t, 13>;

struct PoolCounts {
  int64_t input, output;  // elements of x / grad_x and of out / grad_out
};

// The kernel's shape from `shape`, checked as the contract says.
inline cpu::Pool2dShape pool_shape(const char* op, const PoolShapeTuple& shape) {
  static constexpr const char* kNames[13] = {"planes",   "in_h",       "in_w",      "out_h",    "out_w",
                                             "kernel_h", "kernel_w",   "stride_h",  "stride_w", "pad_h",
                                             "pad_w",    "dilation_h", "dilation_w"};
  static constexpr int64_t kMinimum[13] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1};
  constexpr int64_t kLimit = int64_t(1) << 62;  // so that sums of a few fields cannot overflow
  for (int i = 0; i < 13; ++i) {
    const std::string field = std::string(op) + ": shape[" + std::to_string(i) + "] (" + kNames[i] + ") must be ";
    if (shape[i] < kMinimum[i])
      throw py::value_error(field + ">= " + std::to_string(kMinimum[i]) + ", got " + std::to_string(shape[i]));
    if (shape[i] >= kLimit) throw py::value_error(field + "< 2**62, got " + std::to_string(shape[i]));
  }
  const cpu::Pool2dShape s{shape[0], shape[1], shape[2], shape[3],  shape[4],  shape[5], shape[6],
                           shape[7], shape[8], shape[9], shape[10], shape[11], shape[12]};
  if (!window_indices_fit(s.in_h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h) ||
      !window_indices_fit(s.in_w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w))
    throw py::value_error(std::string(op) + ": shape's kernel, stride, padding or dilation too large to index");
  return s;
}

inline PoolCounts pool_counts(const char* op, const cpu::Pool2dShape& s) {
  return {checked_product(op, "in_h * in_w * planes", {s.in_h, s.in_w, s.planes}),
          checked_product(op, "out_h * out_w * planes", {s.out_h, s.out_w, s.planes})};
}

// Average pooling has no dilation.
inline void require_no_dilation(const char* op, const cpu::Pool2dShape& s) {
  if (s.dilation_h != 1 || s.dilation_w != 1)
    throw py::value_error(std::string(op) + ": shape's dilation_h and dilation_w must be 1, got " +
                          shape_str({s.dilation_h, s.dilation_w}));
}

// pool_shape() for the adaptive ops, whose windows' arithmetic multiplies an output index by
// the input size (pool_windows.h: adaptive_end): out * in + out must stay inside int64 per axis.
inline cpu::Pool2dShape adaptive_pool_shape(const char* op, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = pool_shape(op, shape);
  constexpr int64_t kMax = int64_t(1) << 62;
  const auto fits = [&](int64_t in, int64_t out) { return in == 0 || (out + 1) <= kMax / in; };
  if (!fits(s.in_h, s.out_h) || !fits(s.in_w, s.out_w))
    throw py::value_error(std::string(op) + ": shape's in_h * out_h or in_w * out_w too large to index, got " +
                          shape_str({s.in_h, s.out_h, s.in_w, s.out_w}) + " (in_h, out_h, in_w, out_w)");
  return s;
}

}  // namespace deepkern::python
