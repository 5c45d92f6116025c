// The softmax kernels of one ISA: this source is compiled once per ISA (DEEPKERN_ISA_NS = avx512,
// avx2, generic) and the compiler vectorizes its loops for that ISA's registers. Every loop is one
// pass over a row; the float exponential is written without a library call (core/vmath.h's
// pieces) so those loops vectorize, the double one is std::exp. Sums and maxima run in the vector
// lanes (a few partial sums per row, combined at the end).
#include <cmath>
#include <cstdint>

#include "core/vmath.h"
#include "cpu/softmax/kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// e^v in float for any v: NaN stays NaN, below -104 (e^v under half the smallest subnormal) 0,
// above 89 inf. v = n ln2 + r as in vmath.h; 2^n is applied as two factors 2^n1 2^n2 (n1, n2 in
// [-75, 65]), so a subnormal result is rounded once and a result near the overflow threshold is
// not lost. Error: vmath's exp_reduced (< 1 ulp) plus the reduction's (2^-24 |v| relative at most).
[[gnu::always_inline]] inline float exp_any(float v) {
  const float c = v > -104.0f ? (v < 89.0f ? v : 89.0f) : -104.0f;  // NaN -> -104, replaced below
  const float n = vmath::round_near(c * vmath::kLog2e);
  const float r = (c - n * vmath::kLn2Hi) - n * vmath::kLn2Lo;
  const float n1 = vmath::round_near(n * 0.5f);
  const float y =
      (vmath::exp_reduced(r) * vmath::pow2i(static_cast<int32_t>(n1))) * vmath::pow2i(static_cast<int32_t>(n - n1));
  return v == v ? y : v;
}
[[gnu::always_inline]] inline double exp_any(double v) { return std::exp(v); }

template <class T>
T row_max(const T* __restrict x, int64_t n) {
  T m = -__builtin_huge_val();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;  // NaN is skipped (the exps make it NaN)
  return m;
}

template <class T>
RowStats<T> stats(const T* __restrict x, int64_t n) {
  const T m = row_max(x, n);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += exp_any(x[i] - m);
  return {m, std::log(s)};
}

template <class T>
void softmax(const T* __restrict x, T* __restrict out, int64_t n) {
  const T m = row_max(x, n);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const T e = exp_any(x[i] - m);
    out[i] = e;
    s += e;
  }
  const T inv = T(1) / s;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] *= inv;
}

template <class T>
void log_softmax(const T* __restrict x, T* __restrict out, int64_t n) {
  const RowStats<T> st = stats(x, n);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - st.max) - st.log_sum;
}

template <class T>
void softmax_backward(const T* __restrict g, const T* __restrict y, T* __restrict out, int64_t n) {
  T dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t i = 0; i < n; ++i) dot += g[i] * y[i];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = y[i] * (g[i] - dot);
}

template <class T>
void log_softmax_backward(const T* __restrict g, const T* __restrict y, T* __restrict out, int64_t n) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += g[i];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] - exp_any(y[i]) * sum;
}

// Sum over the row of w_i * (-log p_i). The terms reach |x| (1e4 and more) and a row has
// thousands: the sum runs in double, so its error does not depend on how the compiler splits it
// into lanes (a float sum in one lane, as an unvectorized build runs it, lost 20 ulps of the loss).
template <class T>
T smoothing_sum(const T* __restrict x, const T* __restrict w, int64_t n, RowStats<T> st) {
  double s = 0;
  if (w == nullptr) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += (st.max - x[i]) + st.log_sum;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += w[i] * ((st.max - x[i]) + st.log_sum);
  }
  return static_cast<T>(s);
}

template <class T>
void cross_entropy_grad(const T* __restrict x, const T* __restrict w, T* __restrict out, int64_t n, RowStats<T> st, T a,
                        T b) {
  if (w == nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = a * exp_any((x[i] - st.max) - st.log_sum) - b;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = a * exp_any((x[i] - st.max) - st.log_sum) - b * w[i];
  }
}

template <class T>
constexpr SoftmaxKernels<T> table() {
  return {.stats = &stats<T>,
          .softmax = &softmax<T>,
          .log_softmax = &log_softmax<T>,
          .softmax_backward = &softmax_backward<T>,
          .log_softmax_backward = &log_softmax_backward<T>,
          .smoothing_sum = &smoothing_sum<T>,
          .cross_entropy_grad = &cross_entropy_grad<T>};
}

}  // namespace

const KernelsByType<SoftmaxKernels> softmax_kernels = {.f32 = table<float>(), .f64 = table<double>()};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
