// Host-side dispatch shared by the elementwise and reduction launchers (include from .cu files
// only): from a run-time op or dtype to the functor or C++ type the kernels are templated on.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/array.h"
#include "cuda/elementwise/elementwise.h"
#include "cuda/elementwise/ops.h"

namespace deepkern::cuda::ew {

// fn(T{}) for the C++ type of `dtype` (float, double, int64, bool); false for the other dtypes.
template <typename Fn>
bool with_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::float32: fn(float{}); return true;
    case DType::float64: fn(double{}); return true;
    case DType::int64: fn(std::int64_t{}); return true;
    case DType::bool_: fn(bool{}); return true;
    default: return false;
  }
}

template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::float32;
  if constexpr (std::is_same_v<T, double>) return DType::float64;
  if constexpr (std::is_same_v<T, std::int64_t>) return DType::int64;
  return DType::bool_;
}

// fn(Functor{}) for the op's functor (ops.h).
#define DK_CASE(name, functor) \
  case Op::name: return fn(functor{});
template <typename Fn>
auto with_op(UnaryOp op, Fn&& fn) {
  using Op = UnaryOp;
  switch (op) { DK_UNARY_OPS(DK_CASE) }
  throw std::invalid_argument("unknown unary op " + std::to_string(static_cast<int>(op)));
}
template <typename Fn>
auto with_op(BinaryOp op, Fn&& fn) {
  using Op = BinaryOp;
  switch (op) { DK_BINARY_OPS(DK_CASE) }
  throw std::invalid_argument("unknown binary op " + std::to_string(static_cast<int>(op)));
}
template <typename Fn>
auto with_op(ReduceOp op, Fn&& fn) {
  using Op = ReduceOp;
  switch (op) { DK_REDUCE_OPS(DK_CASE) }
  throw std::invalid_argument("unknown reduction " + std::to_string(static_cast<int>(op)));
}
#undef DK_CASE

// Whether functor F has a kernel for inputs of C++ type T.
template <typename F, typename T>
constexpr bool has_kernel() {
  return (F::kinds & kind_of<T>()) != 0;
}

// Whether `op` has a kernel for `dtype`.
template <typename OpEnum>
bool op_supports(OpEnum op, DType dtype) {
  return with_op(op, [&](auto f) {
    bool ok = false;
    with_type(dtype, [&](auto t) { ok = has_kernel<decltype(f), decltype(t)>(); });
    return ok;
  });
}

// fn(F{}, T{}) for the op's functor and the dtype's type where a kernel exists; invalid_argument
// naming `what`, the op's `name` and the dtype's code otherwise (the binding names the dtype
// before a launcher gets there).
template <typename OpEnum, typename Fn>
void with_kernel(OpEnum op, DType dtype, const char* what, const std::string& name, Fn&& fn) {
  with_op(op, [&](auto f) {
    using F = decltype(f);
    bool found = false;
    with_type(dtype, [&](auto t) {
      using T = decltype(t);
      if constexpr (has_kernel<F, T>()) {
        fn(f, t);
        found = true;
      }
    });
    if (!found)
      throw std::invalid_argument(std::string(what) + " " + name + " has no CUDA kernel for dtype code " +
                                  std::to_string(static_cast<int>(dtype)));
  });
}

}  // namespace deepkern::cuda::ew
