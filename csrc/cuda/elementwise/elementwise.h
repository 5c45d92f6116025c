// Elementwise maps (unary, binary, where) and reductions on device arrays, NumPy's semantics:
// inputs broadcast to the output's shape, any strides, NaN propagating (maximum, minimum, max,
// min, argmax of NaN give NaN or its index). The binding (and through it the Python dispatch,
// deepkern/backends/cuda_numpy.py) reaches the kernels through this header only.
//
// Contract of every launcher: the caller (csrc/python/bind_cuda_elementwise.cpp) has checked that
// the arrays are on one device, that each input broadcasts to `out`'s shape, that the dtypes are
// the ones `supports`/`result_dtype` name, and that `out` overlaps no input unless it is that
// input exactly (same data, shape and strides: in place). Work is queued on the current stream of
// `stream`, with the arrays' device current; nothing waits for it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/array.h"

namespace deepkern::cuda {

// X(name as NumPy spells it, functor in ops.h). The names are the binding's and Python's.
// clang-format off
#define DK_UNARY_OPS(X) \
  X(negative, Negative) \
  X(abs, Abs) \
  X(sign, Sign) \
  X(exp, Exp) \
  X(log, Log) \
  X(sqrt, Sqrt) \
  X(tanh, Tanh) \
  X(square, Square) \
  X(reciprocal, Reciprocal) \
  X(log1p, Log1p) \
  X(expm1, Expm1) \
  X(sin, Sin) \
  X(cos, Cos) \
  X(isnan, IsNan) \
  X(isinf, IsInf) \
  X(isfinite, IsFinite) \
  X(logical_not, LogicalNot)
#define DK_BINARY_OPS(X) \
  X(add, Add) \
  X(subtract, Subtract) \
  X(multiply, Multiply) \
  X(divide, Divide) \
  X(power, Power) \
  X(maximum, Maximum) \
  X(minimum, Minimum) \
  X(logaddexp, LogAddExp) \
  X(equal, Equal) \
  X(not_equal, NotEqual) \
  X(less, Less) \
  X(less_equal, LessEqual) \
  X(greater, Greater) \
  X(greater_equal, GreaterEqual) \
  X(logical_and, LogicalAnd) \
  X(logical_or, LogicalOr) \
  X(logical_xor, LogicalXor)
#define DK_REDUCE_OPS(X) \
  X(sum, Sum) \
  X(prod, Prod) \
  X(mean, Mean) \
  X(max, Max) \
  X(min, Min) \
  X(argmax, ArgMax) \
  X(argmin, ArgMin)
// clang-format on

#define DK_ENUM_ENTRY(name, functor) name,
enum class UnaryOp { DK_UNARY_OPS(DK_ENUM_ENTRY) };
enum class BinaryOp { DK_BINARY_OPS(DK_ENUM_ENTRY) };
enum class ReduceOp { DK_REDUCE_OPS(DK_ENUM_ENTRY) };
#undef DK_ENUM_ENTRY

// Every op's name, in enum order.
std::vector<std::string> unary_op_names();
std::vector<std::string> binary_op_names();
std::vector<std::string> reduce_op_names();

// Whether a kernel exists for inputs of `dtype` (float32 and float64 for arithmetic; int64 for
// the exact integer ops and comparisons; bool for logical ops, equality and sum).
bool supports(UnaryOp op, DType dtype);
bool supports(BinaryOp op, DType dtype);
bool supports(ReduceOp op, DType dtype);
// The output's dtype for inputs of `dtype` (bool for comparisons and predicates; int64 for argmax,
// argmin and the sum of bools; `dtype` otherwise). Meaningful where `supports` is true.
DType result_dtype(UnaryOp op, DType dtype);
DType result_dtype(BinaryOp op, DType dtype);
DType result_dtype(ReduceOp op, DType dtype);

// An input of a map: `array` broadcast to the output's shape, or (array null) the number `value`
// converted to the op's input dtype (`integer` holds it exactly for int64).
struct Operand {
  const DeviceArray* array = nullptr;
  double value = 0;
  std::int64_t integer = 0;
};

// out = op(a) and out = op(a, b) elementwise; the array inputs have one dtype.
void unary(UnaryOp op, const DeviceArray& out, const Operand& a, cudaStream_t stream);
void binary(BinaryOp op, const DeviceArray& out, const Operand& a, const Operand& b, cudaStream_t stream);
// out = cond ? a : b elementwise; cond is bool, a and b have out's dtype.
void where(const DeviceArray& out, const Operand& cond, const Operand& a, const Operand& b, cudaStream_t stream);
// out = op of `a` over the dimensions in `axes` (distinct, in [0, a.ndim)); out's shape is a's
// without them. An empty reduction gives the identity (sum 0, prod 1, mean NaN); max, min, argmax
// and argmin need at least one element per output (the caller refuses empty ones).
void reduce(ReduceOp op, const DeviceArray& out, const DeviceArray& a, const std::vector<int>& axes,
            cudaStream_t stream);

}  // namespace deepkern::cuda
