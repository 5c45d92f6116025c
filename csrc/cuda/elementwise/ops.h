// The elementwise ops as functors (include from .cu files only): `apply` computes one element,
// `kinds` says which input dtypes have a kernel, `predicate` that the result is bool. Reductions
// fold a State (value, index) with `step` and `merge`, and `finish` gives the output element.
// NaN propagates as in NumPy: maximum/minimum/max/min of a NaN is NaN, argmax/argmin give the
// first NaN's index.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace deepkern::cuda::ew {

// Input dtype kinds.
constexpr unsigned kFloat = 1, kInt = 2, kBool = 4;

template <typename T>
constexpr unsigned kind_of() {
  return std::is_same_v<T, bool> ? kBool : std::is_integral_v<T> ? kInt : kFloat;
}

// float and double versions of the math functions, chosen by overload.
#define DK_MATH(name, f32, f64)                                     \
  __device__ __forceinline__ float name(float x) { return f32(x); } \
  __device__ __forceinline__ double name(double x) { return f64(x); }
DK_MATH(dk_exp, expf, exp)
DK_MATH(dk_log, logf, log)
DK_MATH(dk_sqrt, sqrtf, sqrt)
DK_MATH(dk_tanh, tanhf, tanh)
DK_MATH(dk_log1p, log1pf, log1p)
DK_MATH(dk_expm1, expm1f, expm1)
DK_MATH(dk_sin, sinf, sin)
DK_MATH(dk_cos, cosf, cos)
#undef DK_MATH
__device__ __forceinline__ float dk_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double dk_pow(double x, double y) { return pow(x, y); }

template <typename T>
__device__ __forceinline__ bool is_nan(T x) {
  return x != x;  // false for integers
}

// ---- unary ----------------------------------------------------------------------------------------

// Name::apply(x) = expr, of type R (T, the input's, or bool).
#define DK_UNARY(Name, kinds_, R, expr)              \
  struct Name {                                      \
    static constexpr unsigned kinds = kinds_;        \
    template <typename T>                            \
    __device__ __forceinline__ static R apply(T x) { \
      return expr;                                   \
    }                                                \
  };
DK_UNARY(Negative, kFloat | kInt, T, static_cast<T>(-x))
DK_UNARY(Abs, kFloat | kInt, T, static_cast<T>(x < T(0) ? -x : x == T(0) ? T(0) : x))     // abs(-0) = +0
DK_UNARY(Sign, kFloat | kInt, T, static_cast<T>(x > T(0) ? T(1) : x < T(0) ? T(-1) : x))  // NaN stays NaN
DK_UNARY(Exp, kFloat, T, dk_exp(x))
DK_UNARY(Log, kFloat, T, dk_log(x))
DK_UNARY(Sqrt, kFloat, T, dk_sqrt(x))
DK_UNARY(Tanh, kFloat, T, dk_tanh(x))
DK_UNARY(Square, kFloat | kInt, T, static_cast<T>(x* x))
DK_UNARY(Reciprocal, kFloat, T, T(1) / x)
DK_UNARY(Log1p, kFloat, T, dk_log1p(x))
DK_UNARY(Expm1, kFloat, T, dk_expm1(x))
DK_UNARY(Sin, kFloat, T, dk_sin(x))
DK_UNARY(Cos, kFloat, T, dk_cos(x))
DK_UNARY(IsNan, kFloat, bool, is_nan(x))
DK_UNARY(IsInf, kFloat, bool, !is_nan(x) && is_nan(x - x))
DK_UNARY(IsFinite, kFloat, bool, !is_nan(x - x))
DK_UNARY(LogicalNot, kBool, bool, !x)
#undef DK_UNARY

// ---- binary ---------------------------------------------------------------------------------------

// Name::apply(a, b) = expr, of type R (T, the inputs', or bool).
#define DK_BINARY(Name, kinds_, R, expr)                  \
  struct Name {                                           \
    static constexpr unsigned kinds = kinds_;             \
    template <typename T>                                 \
    __device__ __forceinline__ static R apply(T a, T b) { \
      return expr;                                        \
    }                                                     \
  };
DK_BINARY(Add, kFloat | kInt, T, static_cast<T>(a + b))
DK_BINARY(Subtract, kFloat | kInt, T, static_cast<T>(a - b))
DK_BINARY(Multiply, kFloat | kInt, T, static_cast<T>(a* b))
DK_BINARY(Divide, kFloat, T, a / b)
DK_BINARY(Power, kFloat, T, dk_pow(a, b))
DK_BINARY(Maximum, kFloat | kInt, T, (is_nan(a) || a > b) ? a : b)  // b when b is NaN
DK_BINARY(Minimum, kFloat | kInt, T, (is_nan(a) || a < b) ? a : b)
DK_BINARY(Equal, kFloat | kInt | kBool, bool, a == b)
DK_BINARY(NotEqual, kFloat | kInt | kBool, bool, a != b)
DK_BINARY(Less, kFloat | kInt, bool, a < b)
DK_BINARY(LessEqual, kFloat | kInt, bool, a <= b)
DK_BINARY(Greater, kFloat | kInt, bool, a > b)
DK_BINARY(GreaterEqual, kFloat | kInt, bool, a >= b)
DK_BINARY(LogicalAnd, kBool, bool, a&& b)
DK_BINARY(LogicalOr, kBool, bool, a || b)
DK_BINARY(LogicalXor, kBool, bool, a != b)
#undef DK_BINARY

// log(exp(a) + exp(b)) without overflow, as NumPy computes it.
struct LogAddExp {
  static constexpr unsigned kinds = kFloat;
  template <typename T>
  __device__ __forceinline__ static T apply(T a, T b) {
    if (a == b) return a + T(0.69314718055994530942);  // equal infinities included
    const T d = a - b;
    if (d > T(0)) return a + dk_log1p(dk_exp(-d));
    if (d <= T(0)) return b + dk_log1p(dk_exp(d));
    return d;  // NaN
  }
};

// out = cond ? a : b.
struct Where {
  template <typename T>
  __device__ __forceinline__ static T apply(bool cond, T a, T b) {
    return cond ? a : b;
  }
};

// ---- reductions ------------------------------------------------------------------------------------

// The accumulator: float for float32 (and in general the input type), int64 for integers and bools.
template <typename T>
using Acc = std::conditional_t<std::is_integral_v<T>, std::int64_t, T>;

template <typename A>
struct State {
  A value;
  std::int64_t index;  // the element's position in the reduced walk (arg reductions only)
};

// Sum, Prod, Mean: a + b or a * b; Mean scales the sum by 1/count in `finish`.
template <bool multiply, bool scaled, unsigned kinds_>
struct Fold {
  static constexpr unsigned kinds = kinds_;
  template <typename T>
  using Out = Acc<T>;
  template <typename A>
  __device__ __forceinline__ static State<A> identity() {
    return {A(multiply ? 1 : 0), 0};
  }
  template <typename A>
  __device__ __forceinline__ static State<A> merge(State<A> a, State<A> b) {
    return {multiply ? a.value * b.value : a.value + b.value, 0};
  }
  template <typename A>
  __device__ __forceinline__ static A finish(State<A> s, A scale) {
    return scaled ? s.value * scale : s.value;
  }
};
using Sum = Fold<false, false, kFloat | kInt | kBool>;
using Prod = Fold<true, false, kFloat | kInt>;
using Mean = Fold<false, true, kFloat>;

// Max, Min (value) and ArgMax, ArgMin (index): NaN wins, then the larger (smaller), then the
// earlier element. The identity is the empty state (index kEmpty), which any element replaces.
constexpr std::int64_t kEmpty = INT64_MAX;

template <bool largest, bool arg>
struct Extreme {
  static constexpr unsigned kinds = kFloat | kInt;
  template <typename T>
  using Out = std::conditional_t<arg, std::int64_t, Acc<T>>;
  template <typename A>
  __device__ __forceinline__ static State<A> identity() {
    return {A(0), kEmpty};
  }
  template <typename A>
  __device__ __forceinline__ static State<A> merge(State<A> a, State<A> b) {
    if (b.index == kEmpty) return a;
    if (a.index == kEmpty) return b;
    const bool a_nan = is_nan(a.value), b_nan = is_nan(b.value);
    bool take_a;
    if (a_nan || b_nan) {
      take_a = a_nan && (!b_nan || a.index < b.index);
    } else if (a.value == b.value) {
      take_a = a.index < b.index;
    } else {
      take_a = largest ? a.value > b.value : a.value < b.value;
    }
    return take_a ? a : b;
  }
  template <typename A>
  __device__ __forceinline__ static std::conditional_t<arg, std::int64_t, A> finish(State<A> s, A) {
    if constexpr (arg) {
      return s.index;
    } else {
      return s.value;
    }
  }
};
using Max = Extreme<true, false>;
using Min = Extreme<false, false>;
using ArgMax = Extreme<true, true>;
using ArgMin = Extreme<false, true>;

}  // namespace deepkern::cuda::ew
