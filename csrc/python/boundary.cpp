// The boundary policy's checks (boundary.h).
#include "python/boundary.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace deepkern::python {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

Shape shape_of(const py::array& arr) { return Shape(arr.shape(), arr.shape() + arr.ndim()); }

Shape strides_of(const py::array& arr) { return Shape(arr.strides(), arr.strides() + arr.ndim()); }

bool has_dtype(const py::array& arr, const py::dtype& dtype) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(arr.dtype().ptr(), dtype.ptr());
}

std::string dtype_str(const py::dtype& dtype) { return py::str(dtype).cast<std::string>(); }

// Bytes [lo, hi) from the lowest to past the highest element of `arr` (negative strides included);
// lo == hi for an empty array.
struct ByteSpan {
  intptr_t lo, hi;
};
ByteSpan byte_span(const py::array& arr) {
  const auto first = reinterpret_cast<intptr_t>(arr.data());
  if (arr.size() == 0) return {first, first};
  ByteSpan span{first, first + static_cast<intptr_t>(arr.itemsize())};
  for (py::ssize_t axis = 0; axis < arr.ndim(); ++axis) {
    const intptr_t reach = static_cast<intptr_t>(arr.shape(axis) - 1) * arr.strides(axis);
    (reach < 0 ? span.lo : span.hi) += reach;
  }
  return span;
}

// numpy.shares_memory(x, y) with the bounded effort deepkern.ops uses; too costly to rule out counts
// as shared.
bool share_memory(py::handle x, py::handle y) {
  const py::module_ numpy = py::module_::import("numpy");
  try {
    return numpy.attr("shares_memory")(x, y, py::arg("max_work") = 100000).cast<bool>();
  } catch (py::error_already_set& err) {
    const py::object errors = py::hasattr(numpy, "exceptions") ? numpy.attr("exceptions") : numpy;
    if (err.matches(errors.attr("TooHardError"))) return true;
    throw;
  }
}

}  // namespace

std::string shape_str(const Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += str(shape[i]);
  }
  return out + (shape.size() == 1 ? ",)" : ")");
}

py::array as_array(py::handle obj, const char* op, const std::string& name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(op) + ": " + name + " must be a numpy.ndarray, got " +
                         Py_TYPE(obj.ptr())->tp_name);
  return py::reinterpret_borrow<py::array>(obj);
}

Shape shape_with_ndim(py::handle obj, const char* op, const std::string& name, int min_ndim, int max_ndim,
                      const char* layout) {
  const py::array arr = as_array(obj, op, name);
  const Shape shape = shape_of(arr);
  if (arr.ndim() < min_ndim || arr.ndim() > max_ndim) {
    const std::string rank =
        min_ndim == max_ndim ? "be " + str(min_ndim) + "-D " : "have at least " + str(min_ndim) + " dimensions ";
    throw py::value_error(std::string(op) + ": " + name + " must " + rank + layout + ", got shape " + shape_str(shape));
  }
  return shape;
}

template <>
py::dtype dtype_of<cpu::bf16>() {
  // ml_dtypes is imported once (a dependency of deepkern); the dtype lives as long as the process.
  static const py::dtype* bfloat16 =
      new py::dtype(py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16")));
  return *bfloat16;
}

bool is_bfloat16(py::handle obj) {
  if (!py::isinstance<py::array>(obj)) return false;
  const auto arr = py::reinterpret_borrow<py::array>(obj);
  // ml_dtypes' bfloat16 is a 2-byte kind 'V' dtype: only such an array pays for dtype_of (which
  // imports ml_dtypes), so float32 programs never load it.
  return arr.dtype().kind() == 'V' && arr.itemsize() == 2 && has_dtype(arr, dtype_of<cpu::bf16>());
}

bool is_float32(py::handle obj, const char* op, const std::string& name) {
  const py::array arr = as_array(obj, op, name);
  if (has_dtype(arr, py::dtype::of<float>())) return true;
  if (has_dtype(arr, py::dtype::of<double>())) return false;
  throw py::type_error(std::string(op) + ": " + name + " must be float32 or float64, got dtype " +
                       dtype_str(arr.dtype()));
}

int64_t checked_product(const char* op, const char* what, std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (const int64_t factor : factors)
    if (__builtin_mul_overflow(product, factor, &product))
      throw py::value_error(std::string(op) + ": " + what + " overflows int64");
  return product;
}

bool window_indices_fit(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  const __int128 reach = __int128(in) + pad + __int128(std::max<int64_t>(out - 1, 0)) * stride +
                         __int128(std::max<int64_t>(kernel - 1, 0)) * dilation;
  return reach < (__int128(1) << 62);
}

Extent::Extent(std::initializer_list<int64_t> shape) : ndim_(shape.size()) {
  if (ndim_ > kMaxAxes) throw std::logic_error("Extent: more than " + str(kMaxAxes) + " axes");
  std::copy(shape.begin(), shape.end(), dims_.begin());
}

Extent Extent::elements(int64_t count) {
  Extent extent;
  extent.count_ = count;
  return extent;
}

bool Extent::fits(const py::array& arr) const {
  if (count_ >= 0) return arr.size() == count_;
  return static_cast<size_t>(arr.ndim()) == ndim_ && std::equal(dims_.begin(), dims_.begin() + ndim_, arr.shape());
}

std::string Extent::mismatch(const py::array& arr) const {
  const std::string got = ", got shape " + shape_str(shape_of(arr));
  if (count_ < 0) return "must have shape " + shape_str(Shape(dims_.begin(), dims_.begin() + ndim_)) + got;
  return "must have " + str(count_) + " elements" + got + " (" + str(arr.size()) + " elements)";
}

py::array CallArrays::checked(py::handle obj, const std::string& name, const py::dtype& dtype) const {
  py::array arr = as_array(obj, op_, name);
  if (!has_dtype(arr, dtype))
    throw py::type_error(std::string(op_) + ": " + name + " must have dtype " + dtype_str(dtype) +
                         (dtype.kind() == 'f' ? " (as " + dtype_from_ + ")" : "") + ", got " + dtype_str(arr.dtype()));
  return arr;
}

void* CallArrays::contiguous(py::handle obj, const std::string& name, const py::dtype& dtype, const Extent& extent,
                             Access access) {
  const py::array arr = checked(obj, name, dtype);
  auto where = [&] { return std::string(op_) + ": " + name; };
  if (!extent.fits(arr)) throw py::value_error(where() + " " + extent.mismatch(arr));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(where() + " must be C-contiguous, got strides " + shape_str(strides_of(arr)) + " for shape " +
                          shape_str(shape_of(arr)));
  if (reinterpret_cast<uintptr_t>(arr.data()) % arr.itemsize())
    throw py::value_error(where() + " is not aligned to its item size (" + str(arr.itemsize()) + " bytes)");
  if (access == Access::write && !arr.writeable())
    throw py::value_error(where() + " is read-only; the kernel writes it");
  remember(arr, name, access);
  return const_cast<void*>(arr.data());
}

StridedMatrices CallArrays::strided(py::handle obj, const std::string& name, const py::dtype& dtype, int64_t rows,
                                    int64_t cols, const int64_t* offsets, int64_t count,
                                    const std::string& offsets_name, Access access) {
  const py::array arr = checked(obj, name, dtype);
  auto where = [&] { return std::string(op_) + ": " + name; };
  auto layout = [&] { return "shape " + shape_str(shape_of(arr)) + ", strides " + shape_str(strides_of(arr)); };
  const py::ssize_t nd = arr.ndim();
  if (nd < 2 || arr.shape(nd - 2) != rows || arr.shape(nd - 1) != cols)
    throw py::value_error(where() + " must have shape (..., " + str(rows) + ", " + str(cols) + "), got shape " +
                          shape_str(shape_of(arr)));
  const int64_t item = arr.itemsize();
  for (py::ssize_t axis = 0; axis < nd; ++axis)
    if (arr.shape(axis) > 1 && arr.strides(axis) % item)
      throw py::value_error(where() + " (" + layout() + ") has strides that are not multiples of its item size (" +
                            str(item) + " bytes)");
  const auto first = reinterpret_cast<intptr_t>(arr.data());
  if (first % item) throw py::value_error(where() + " is not aligned to its item size (" + str(item) + " bytes)");
  const ByteSpan span = byte_span(arr);
  if (access == Access::write) {
    if (!arr.writeable()) throw py::value_error(where() + " is read-only; the kernel writes it");
    if (span.hi - span.lo < arr.size() * item)
      throw py::value_error(where() + " (" + layout() + ") has elements that share memory");
  }
  const int64_t row_stride = arr.strides(nd - 2) / item, col_stride = arr.strides(nd - 1) / item;
  if (rows > 0 && cols > 0) {
    // Matrix i touches elements offsets[i] + [low, high] of the array's [lowest, highest].
    const int64_t low = std::min<int64_t>(0, (rows - 1) * row_stride) + std::min<int64_t>(0, (cols - 1) * col_stride);
    const int64_t high = std::max<int64_t>(0, (rows - 1) * row_stride) + std::max<int64_t>(0, (cols - 1) * col_stride);
    const int64_t lowest = (span.lo - first) / item, highest = (span.hi - first) / item - 1;
    for (int64_t i = 0; i < count; ++i)
      if (offsets[i] < lowest - low || offsets[i] > highest - high)
        throw py::value_error(std::string(op_) + ": " + offsets_name + "[" + str(i) + "] = " + str(offsets[i]) +
                              " puts a " + str(rows) + " x " + str(cols) + " matrix of " + name +
                              " (element strides (" + str(row_stride) + ", " + str(col_stride) + ")) outside its " +
                              layout() +
                              (lowest - low <= highest - high
                                   ? ": offsets " + str(lowest - low) + " to " + str(highest - high) + " keep it inside"
                                   : ": no offset keeps it inside"));
  }
  remember(arr, name, access);
  return {const_cast<void*>(arr.data()), row_stride, col_stride};
}

void CallArrays::remember(const py::array& arr, const std::string& name, Access access) {
  const ByteSpan span = byte_span(arr);
  const bool dense = span.hi - span.lo == arr.size() * arr.itemsize();
  const bool written = access == Access::write;
  Taken now{name, arr, span.lo, span.hi, dense, written};
  for (const Taken& other : taken_) {
    if (!(written || other.written) || now.lo >= other.hi || other.lo >= now.hi) continue;
    if ((now.dense && other.dense) || share_memory(now.array, other.array))
      throw py::value_error(std::string(op_) + ": " + name + " overlaps " + other.name + " (shapes " +
                            shape_str(shape_of(arr)) + " and " +
                            shape_str(shape_of(py::reinterpret_borrow<py::array>(other.array))) + ")");
  }
  taken_.push_back(std::move(now));
}

}  // namespace deepkern::python
