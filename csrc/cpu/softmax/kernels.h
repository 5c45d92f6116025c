// The softmax kernels of one ISA, as the table softmax.cpp dispatches on. Each kernel works on one
// contiguous row of n elements (the driver hands it the array's own rows, or copies of strided
// ones); the arrays do not overlap. Definitions are in softmax.h.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

// A row's max m and s = log sum_c exp(x_c - m).
template <class T>
struct RowStats {
  T max;
  T log_sum;
};

template <class T>
struct SoftmaxKernels {
  RowStats<T> (*stats)(const T* x, int64_t n);
  void (*softmax)(const T* x, T* out, int64_t n);
  void (*log_softmax)(const T* x, T* out, int64_t n);
  // out = y (g - sum g y), and out = g - exp(y) sum g.
  void (*softmax_backward)(const T* grad, const T* y, T* out, int64_t n);
  void (*log_softmax_backward)(const T* grad, const T* y, T* out, int64_t n);
  // sum_c w_c ((m - x_c) + s): the label-smoothing term of the loss (w null: all 1).
  T (*smoothing_sum)(const T* x, const T* w, int64_t n, RowStats<T> stats);
  // out_c = a exp((x_c - m) - s) - b w_c (w null: all 1): the loss gradient but for the target.
  void (*cross_entropy_grad)(const T* x, const T* w, T* out, int64_t n, RowStats<T> stats, T a, T b);
};

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<SoftmaxKernels>, softmax_kernels)

}  // namespace deepkern::cpu
