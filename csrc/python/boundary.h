// The boundary policy of deepkern._C: how a binding turns Python objects into what a kernel takes.
//
// Every array a kernel touches is checked before the GIL is released, against what the kernel will
// actually read or write, so a direct call of deepkern._C with a wrong array raises instead of
// reading or writing outside it:
//   TypeError   not a numpy.ndarray, or a dtype other than the one the kernel takes;
//   ValueError  a shape or element count other than the one the kernel touches, an array that is not
//               C-contiguous (where the kernel needs it) or not aligned to its item size, a read-only
//               array the kernel writes, an array the kernel writes that shares memory with another
//               argument of the call, or (gemm) a matrix offset that leaves the array.
// Every message starts with the op, names the argument and gives the shape expected and the one got.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::python {

namespace py = pybind11;

using Shape = std::vector<int64_t>;

// `shape` as Python prints a tuple: "(2, 3)", "(4,)".
std::string shape_str(const Shape& shape);

// `obj` as an array; TypeError naming `name` of `op` unless it is a numpy.ndarray.
py::array as_array(py::handle obj, const char* op, const std::string& name);

// The shape of `obj`, an array of `min_ndim` to `max_ndim` dimensions (`layout` names them in the
// error, e.g. "(N, C, H, W)").
Shape shape_with_ndim(py::handle obj, const char* op, const std::string& name, int min_ndim, int max_ndim,
                      const char* layout);
inline Shape shape_with_ndim(py::handle obj, const char* op, const std::string& name, int ndim, const char* layout) {
  return shape_with_ndim(obj, op, name, ndim, ndim, layout);
}

// True for float32, false for float64; TypeError naming `name` of `op` for any other dtype.
bool is_float32(py::handle obj, const char* op, const std::string& name);

// The NumPy dtype of a kernel element type: NumPy's own, and ml_dtypes.bfloat16 for cpu::bf16.
template <class E>
py::dtype dtype_of() {
  return py::dtype::of<E>();
}
template <>
py::dtype dtype_of<cpu::bf16>();

// True when `obj` is a numpy.ndarray of dtype bfloat16 (ml_dtypes).
bool is_bfloat16(py::handle obj);

// The one float dispatch of every binding: calls run(T{}) with T = float or double, the dtype of
// `obj` (argument `name` of `op`).
template <class Run>
void dispatch_float(py::handle obj, const char* op, const std::string& name, Run&& run) {
  if (is_float32(obj, op, name))
    run(float{});
  else
    run(double{});
}

// The product of `factors` (each >= 0), multiplied in order; ValueError naming `what` of `op` when a
// partial product overflows int64 (no array has that many elements).
int64_t checked_product(const char* op, const char* what, std::initializer_list<int64_t> factors);

// One spatial axis of a sliding window (convolution, pooling): `in` input positions, `out` outputs
// `stride` apart, windows of `kernel` taps `dilation` apart starting `pad` before the input, all
// >= 0. True when the kernel's index arithmetic (at most in + pad + (out-1)*stride + (kernel-1)*
// dilation) stays well inside int64.
bool window_indices_fit(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation);

// What of an array a kernel touches: exactly `shape` (at most kMaxAxes axes), or (kernels that see
// an array as flat memory: pooling planes, optimizer tensors) `count` elements of any shape.
class Extent {
 public:
  static constexpr size_t kMaxAxes = 4;
  Extent(std::initializer_list<int64_t> shape);
  static Extent elements(int64_t count);
  bool fits(const py::array& arr) const;
  // "must have shape (2, 3), got shape (2, 4)" or "must have 12 elements, got shape (5,) (5 elements)".
  std::string mismatch(const py::array& arr) const;

 private:
  Extent() = default;
  std::array<int64_t, kMaxAxes> dims_{};
  size_t ndim_ = 0;
  int64_t count_ = -1;  // >= 0: any shape of this many elements
};

enum class Access { read, write };

// gemm's operands: matrices of one shape inside a strided array, element strides.
struct StridedMatrices {
  void* data;  // the array's first element; matrix i starts offsets[i] elements from it
  int64_t row_stride, col_stride;
};

// The arrays of one kernel call, checked one at a time as they become pointers. Each array is also
// compared with those taken before it: one the kernel writes may not share memory with any other
// (the kernel would read its own writes, or two outputs would write over each other). Holds
// borrowed handles: the arrays belong to the call's arguments.
class CallArrays {
 public:
  // `op` names the call in errors; `dtype_from`, the argument whose dtype chose the call's.
  CallArrays(const char* op, std::string dtype_from) : op_(op), dtype_from_(std::move(dtype_from)) {
    taken_.reserve(kTypicalArrays);
  }

 protected:
  // `obj`, a C-contiguous, aligned array of `dtype` and `extent`, writeable for Access::write.
  void* contiguous(py::handle obj, const std::string& name, const py::dtype& dtype, const Extent& extent,
                   Access access);

  // gemm: the last two axes of `obj` (any strides, negative and zero included) hold `rows` x `cols`
  // matrices, matrix i at `offsets[i]` (i < `count`, argument `offsets_name`) elements from its first
  // element. Checks the dtype, the two axes' sizes, that the strides (of axes longer than 1) and the
  // data pointer are multiples of the item size and that every matrix lies within the array's memory;
  // for Access::write also that the array is writeable and no two of its elements share memory.
  StridedMatrices strided(py::handle obj, const std::string& name, const py::dtype& dtype, int64_t rows, int64_t cols,
                          const int64_t* offsets, int64_t count, const std::string& offsets_name, Access access);

 private:
  struct Taken {
    std::string name;
    py::handle array;
    intptr_t lo, hi;  // bytes [lo, hi) between its first and last element; lo == hi when empty
    bool dense;       // no gaps: memory shared with [lo, hi) is memory shared with the array
    bool written;
  };
  py::array checked(py::handle obj, const std::string& name, const py::dtype& dtype) const;
  void remember(const py::array& arr, const std::string& name, Access access);

  static constexpr size_t kTypicalArrays = 18;  // lstm_backward's, the most of any call

  const char* op_;
  std::string dtype_from_;
  std::vector<Taken> taken_;
};

// CallArrays of a call whose float type is T: pointers typed T by default, or E for other arrays
// (pooling's int64 indices, gemm's offsets).
template <class T>
class KernelArrays : public CallArrays {
 public:
  using CallArrays::CallArrays;

  // An array the kernel reads / writes (see CallArrays::contiguous).
  template <class E = T>
  const E* input(py::handle obj, const std::string& name, const Extent& extent) {
    return static_cast<const E*>(contiguous(obj, name, dtype_of<E>(), extent, Access::read));
  }
  template <class E = T>
  E* output(py::handle obj, const std::string& name, const Extent& extent) {
    return static_cast<E*>(contiguous(obj, name, dtype_of<E>(), extent, Access::write));
  }
  // None: the kernel's null pointer (an argument it does without).
  template <class E = T>
  const E* optional_input(const py::object& obj, const std::string& name, const Extent& extent) {
    return obj.is_none() ? nullptr : input<E>(obj, name, extent);
  }
  template <class E = T>
  E* optional_output(const py::object& obj, const std::string& name, const Extent& extent) {
    return obj.is_none() ? nullptr : output<E>(obj, name, extent);
  }
  // gemm's operands (see CallArrays::strided), of element type E.
  template <class E = T>
  StridedMatrices matrices(py::handle obj, const std::string& name, int64_t rows, int64_t cols, const int64_t* offsets,
                           int64_t count, const std::string& offsets_name, Access access) {
    return strided(obj, name, dtype_of<E>(), rows, cols, offsets, count, offsets_name, access);
  }
};

}  // namespace deepkern::python
