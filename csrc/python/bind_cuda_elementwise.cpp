// deepkern._cuda's elementwise maps and reductions (csrc/cuda/elementwise/): checks every array the
// kernels will touch, then launches. NumPy's dispatch (python/deepkern/backends/cuda_numpy.py) sits
// on top; these functions take arrays whose dtypes it has already resolved.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/array.h"
#include "cuda/check.h"
#include "cuda/elementwise/elementwise.h"
#include "cuda/elementwise/gather.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;
namespace dkc = deepkern::cuda;
using deepkern::python::PyDeviceArray;
using dkc::shape_text;

namespace {

std::string type_name(const py::handle& obj) { return py::str(py::type::of(obj).attr("__name__")); }

template <typename Op>
Op op_from_name(const std::string& what, const std::string& name, const std::vector<std::string>& names) {
  const auto found = std::find(names.begin(), names.end(), name);
  if (found == names.end()) {
    std::string known;
    for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
    throw py::value_error(what + ": unknown op '" + name + "' (known: " + known + ")");
  }
  return static_cast<Op>(found - names.begin());
}

// The output `obj` of `what`: a DeviceArray whose elements are distinct memory (not a broadcast
// view, which several threads would write).
const dkc::DeviceArray& output_array(const std::string& what, const py::handle& obj) {
  const dkc::DeviceArray& out = device_array(obj, what.c_str(), "out");
  for (std::size_t k = 0; k < out.ndim(); ++k)
    if (out.strides[k] == 0 && out.shape[k] > 1 && out.size() > 0)
      throw py::value_error(what + ": out of shape " + shape_text(out.shape) +
                            " is a broadcast view (stride 0 along dimension " + std::to_string(k) +
                            "); it cannot be written");
  return out;
}

// The input `obj`: a DeviceArray on out's device that broadcasts to out's shape, or a number.
dkc::Operand operand(const std::string& what, const char* arg, const py::handle& obj, const dkc::DeviceArray& out) {
  dkc::Operand op;
  if (py::isinstance<PyDeviceArray>(obj)) {
    const dkc::DeviceArray& a = obj.cast<const PyDeviceArray&>().a;
    if (a.device != out.device)
      throw py::value_error(what + ": " + arg + " is on cuda:" + std::to_string(a.device) +
                            " and out on cuda:" + std::to_string(out.device));
    bool fits = a.ndim() <= out.ndim();
    for (std::size_t k = 0; fits && k < a.ndim(); ++k) {
      const std::int64_t extent = a.shape[k], target = out.shape[out.ndim() - a.ndim() + k];
      fits = extent == target || extent == 1;
    }
    if (!fits)
      throw py::value_error(what + ": " + arg + " of shape " + shape_text(a.shape) +
                            " does not broadcast to out's shape " + shape_text(out.shape));
    op.array = &a;
    return op;
  }
  const py::module_ numbers = py::module_::import("numbers");
  if (py::isinstance(obj, numbers.attr("Integral"))) {
    op.integer = py::reinterpret_borrow<py::object>(obj).cast<std::int64_t>();
    op.value = static_cast<double>(op.integer);
  } else if (py::isinstance(obj, numbers.attr("Real"))) {
    op.value = py::reinterpret_borrow<py::object>(obj).cast<double>();
  } else {
    throw py::type_error(what + ": " + arg + " must be a DeviceArray or a real number, got " + type_name(obj));
  }
  return op;
}

// [first, end) bytes of a's elements; empty for an empty array.
std::pair<const char*, const char*> byte_span(const dkc::DeviceArray& a) {
  if (a.size() == 0) return {a.data, a.data};
  std::int64_t low = 0, high = 0;
  for (std::size_t k = 0; k < a.ndim(); ++k) {
    const std::int64_t reach = (a.shape[k] - 1) * a.strides[k];
    (reach < 0 ? low : high) += reach;
  }
  return {a.data + low * a.itemsize(), a.data + (high + 1) * a.itemsize()};
}

// `out` may be an input itself (same data, shape, strides and element size: in place) but may not
// otherwise share memory with it.
void check_no_partial_overlap(const std::string& what, const char* arg, const dkc::Operand& op,
                              const dkc::DeviceArray& out) {
  if (op.array == nullptr) return;
  const dkc::DeviceArray& a = *op.array;
  if (a.data == out.data && a.shape == out.shape && a.strides == out.strides && a.itemsize() == out.itemsize()) return;
  const auto [a_first, a_end] = byte_span(a);
  const auto [o_first, o_end] = byte_span(out);
  if (a_first < o_end && o_first < a_end)
    throw py::value_error(what + ": out overlaps " + arg +
                          " without being the same array (in place needs the same data, shape and strides)");
}

// The dtype of the array operands (all the same), or `fallback` without arrays.
dkc::DType inputs_dtype(const std::string& what, std::initializer_list<std::pair<const char*, const dkc::Operand*>> ops,
                        dkc::DType fallback) {
  const char* first_name = nullptr;
  dkc::DType dtype = fallback;
  for (const auto& [name, op] : ops) {
    if (op->array == nullptr) continue;
    if (first_name == nullptr) {
      first_name = name;
      dtype = op->array->dtype;
    } else if (op->array->dtype != dtype) {
      throw py::type_error(what + ": " + first_name + " is " + dkc::info(dtype).name + " and " + name + " " +
                           dkc::info(op->array->dtype).name + "; cast them to one dtype first");
    }
  }
  return dtype;
}

void check_out_dtype(const std::string& what, const dkc::DeviceArray& out, dkc::DType expected) {
  if (out.dtype != expected)
    throw py::type_error(what + ": out is " + dkc::info(out.dtype).name + ", expected " + dkc::info(expected).name);
}

template <typename Op>
void check_supported(const std::string& what, Op op, dkc::DType dtype) {
  if (!dkc::supports(op, dtype))
    throw py::type_error(what + " has no CUDA kernel for " + dkc::info(dtype).name + " inputs");
}

// Runs launch(stream) without the GIL, with out's device current and its current stream.
template <typename Launch>
void run_on_device(const dkc::DeviceArray& out, Launch&& launch) {
  py::gil_scoped_release release;
  dkc::DeviceGuard guard(out.device);
  launch(static_cast<cudaStream_t>(dkc::current_stream(out.device)));
}

void unary(const std::string& name, const py::object& out_obj, const py::object& a_obj) {
  const std::string what = "cuda " + name;
  const auto op = op_from_name<dkc::UnaryOp>("cuda unary", name, dkc::unary_op_names());
  const dkc::DeviceArray& out = output_array(what, out_obj);
  device_array(a_obj, what.c_str(), "a");
  const dkc::Operand a = operand(what, "a", a_obj, out);
  check_supported(what, op, a.array->dtype);
  check_out_dtype(what, out, dkc::result_dtype(op, a.array->dtype));
  check_no_partial_overlap(what, "a", a, out);
  run_on_device(out, [&](cudaStream_t stream) { dkc::unary(op, out, a, stream); });
}

void binary(const std::string& name, const py::object& out_obj, const py::object& a_obj, const py::object& b_obj) {
  const std::string what = "cuda " + name;
  const auto op = op_from_name<dkc::BinaryOp>("cuda binary", name, dkc::binary_op_names());
  const dkc::DeviceArray& out = output_array(what, out_obj);
  const dkc::Operand a = operand(what, "a", a_obj, out), b = operand(what, "b", b_obj, out);
  if (a.array == nullptr && b.array == nullptr)
    throw py::type_error(what + ": a or b must be a DeviceArray, got two numbers");
  const dkc::DType dtype = inputs_dtype(what, {{"a", &a}, {"b", &b}}, out.dtype);
  check_supported(what, op, dtype);
  check_out_dtype(what, out, dkc::result_dtype(op, dtype));
  check_no_partial_overlap(what, "a", a, out);
  check_no_partial_overlap(what, "b", b, out);
  run_on_device(out, [&](cudaStream_t stream) { dkc::binary(op, out, a, b, stream); });
}

void where(const py::object& out_obj, const py::object& cond_obj, const py::object& a_obj, const py::object& b_obj) {
  const std::string what = "cuda where";
  const dkc::DeviceArray& out = output_array(what, out_obj);
  const dkc::Operand cond = operand(what, "condition", cond_obj, out);
  const dkc::Operand a = operand(what, "x", a_obj, out), b = operand(what, "y", b_obj, out);
  if (cond.array && cond.array->dtype != dkc::DType::bool_)
    throw py::type_error(what + ": condition is " + std::string(dkc::info(cond.array->dtype).name) + ", not bool");
  check_out_dtype(what, out, inputs_dtype(what, {{"x", &a}, {"y", &b}}, out.dtype));
  if (out.dtype != dkc::DType::float32 && out.dtype != dkc::DType::float64 && out.dtype != dkc::DType::int64 &&
      out.dtype != dkc::DType::bool_)
    throw py::type_error(what + " has no CUDA kernel for " + std::string(dkc::info(out.dtype).name));
  for (const auto& [name, op] : {std::pair{"condition", &cond}, {"x", &a}, {"y", &b}})
    check_no_partial_overlap(what, name, *op, out);
  run_on_device(out, [&](cudaStream_t stream) { dkc::where(out, cond, a, b, stream); });
}

void reduce(const std::string& name, const py::object& out_obj, const py::object& a_obj, std::vector<int> axes) {
  const std::string what = "cuda " + name;
  const auto op = op_from_name<dkc::ReduceOp>("cuda reduce", name, dkc::reduce_op_names());
  const dkc::DeviceArray& out = output_array(what, out_obj);
  const dkc::DeviceArray& a = device_array(a_obj, what.c_str(), "a");
  if (a.device != out.device)
    throw py::value_error(what + ": a is on cuda:" + std::to_string(a.device) +
                          " and out on cuda:" + std::to_string(out.device));
  const int ndim = static_cast<int>(a.ndim());
  std::vector<bool> reduced(ndim, false);
  for (int& axis : axes) {
    if (axis < -ndim || axis >= ndim)
      throw py::value_error(what + ": axis " + std::to_string(axis) + " is out of bounds for a of shape " +
                            shape_text(a.shape));
    axis = (axis + ndim) % ndim;
    if (reduced[axis]) throw py::value_error(what + ": axis " + std::to_string(axis) + " is repeated");
    reduced[axis] = true;
  }
  std::vector<std::int64_t> kept_shape;
  std::int64_t n_in = 1;
  for (int d = 0; d < ndim; ++d) {
    if (reduced[d]) {
      n_in *= a.shape[d];
    } else {
      kept_shape.push_back(a.shape[d]);
    }
  }
  if (out.shape != kept_shape)
    throw py::value_error(what + ": out has shape " + shape_text(out.shape) + ", expected " + shape_text(kept_shape) +
                          " (a of shape " + shape_text(a.shape) + " without the reduced axes)");
  check_supported(what, op, a.dtype);
  check_out_dtype(what, out, dkc::result_dtype(op, a.dtype));
  const bool needs_element = op != dkc::ReduceOp::sum && op != dkc::ReduceOp::prod && op != dkc::ReduceOp::mean;
  if (needs_element && n_in == 0 && out.size() > 0)
    throw py::value_error(what + ": zero-size reduction of a of shape " + shape_text(a.shape) + " has no identity");
  const auto [a_first, a_end] = byte_span(a);
  const auto [o_first, o_end] = byte_span(out);
  if (a_first < o_end && o_first < a_end) throw py::value_error(what + ": out overlaps a");
  run_on_device(out, [&](cudaStream_t stream) { dkc::reduce(op, out, a, axes, stream); });
}

// A view of `a` broadcast to `shape` (stride 0 along the broadcast dimensions), as np.broadcast_to.
PyDeviceArray broadcast_view(const py::object& a_obj, const std::vector<std::int64_t>& shape) {
  device_array(a_obj, "broadcast_to", "a");
  const auto& self = a_obj.cast<const PyDeviceArray&>();
  const dkc::DeviceArray& a = self.a;
  PyDeviceArray view{a, self.base.is_none() ? a_obj : self.base};
  view.a.shape = shape;
  view.a.strides.assign(shape.size(), 0);
  bool fits = a.ndim() <= shape.size();
  for (std::size_t k = 0; k < a.ndim() && fits; ++k) {
    const std::size_t d = shape.size() - a.ndim() + k;
    fits = shape[d] >= 0 && (a.shape[k] == shape[d] || a.shape[k] == 1);
    if (a.shape[k] != 1) view.a.strides[d] = a.strides[k];
  }
  for (const std::int64_t extent : shape) fits = fits && extent >= 0;
  if (!fits)
    throw py::value_error("broadcast_to: an array of shape " + shape_text(a.shape) + " cannot be broadcast to shape " +
                          shape_text(shape));
  return view;
}

// The array `obj` of `what` on `device`.
const dkc::DeviceArray& array_on(const std::string& what, const char* arg, const py::handle& obj, int device) {
  const dkc::DeviceArray& x = device_array(obj, what.c_str(), arg);
  if (x.device != device)
    throw py::value_error(what + ": " + arg + " is on cuda:" + std::to_string(x.device) +
                          " and a on cuda:" + std::to_string(device));
  return x;
}

bool overlap(const dkc::DeviceArray& x, const dkc::DeviceArray& y) {
  const auto [x_first, x_end] = byte_span(x);
  const auto [y_first, y_end] = byte_span(y);
  return x_first < y_end && y_first < x_end;
}

// The shape take_along_axis gives for `a` and `index` (NumPy's: one number of dimensions, the
// extents off `axis` broadcasting, index's extent along it); ValueError naming them otherwise.
std::vector<std::int64_t> along_axis_shape(const std::string& what, const dkc::DeviceArray& a,
                                           const dkc::DeviceArray& index, int& axis) {
  const int ndim = static_cast<int>(a.ndim());
  if (index.dtype != dkc::DType::int64)
    throw py::type_error(what + ": indices are " + std::string(dkc::info(index.dtype).name) + ", not int64");
  if (static_cast<int>(index.ndim()) != ndim)
    throw py::value_error(what + ": indices of shape " + shape_text(index.shape) + " and a of shape " +
                          shape_text(a.shape) + " must have the same number of dimensions");
  if (axis < -ndim || axis >= ndim)
    throw py::value_error(what + ": axis " + std::to_string(axis) + " is out of bounds for a of shape " +
                          shape_text(a.shape));
  axis = (axis + ndim) % ndim;
  std::vector<std::int64_t> shape(ndim);
  for (int d = 0; d < ndim; ++d) {
    const std::int64_t m = a.shape[d], n = index.shape[d];
    if (d != axis && m != n && m != 1 && n != 1)
      throw py::value_error(what + ": indices of shape " + shape_text(index.shape) +
                            " do not broadcast with a of shape " + shape_text(a.shape) + " off axis " +
                            std::to_string(axis));
    shape[d] = d == axis ? n : (m == 1 ? n : m);
  }
  return shape;
}

// Runs launch(stream, bad) on a's device with `bad` two zeroed int64 of device memory, waits for
// it, and raises IndexError naming the index the kernels recorded there, if any.
template <typename Launch>
void run_checked(const std::string& what, const dkc::DeviceArray& a, int axis, Launch&& launch) {
  std::int64_t bad[2] = {0, 0};
  run_on_device(a, [&](cudaStream_t stream) {
    const dkc::DeviceArray flag = dkc::empty({2}, dkc::DType::int64, a.device);
    dkc::fill(flag, 0);
    launch(stream, reinterpret_cast<std::int64_t*>(flag.data));
    dkc::copy_to_host(flag, bad);
  });
  if (bad[0] != 0)
    throw py::index_error(what + ": index " + std::to_string(bad[1]) + " is out of bounds for axis " +
                          std::to_string(axis) + " with size " + std::to_string(a.shape[axis]));
}

void take_along_axis(const py::object& out_obj, const py::object& a_obj, const py::object& index_obj, int axis) {
  const std::string what = "cuda take_along_axis";
  const dkc::DeviceArray& out = output_array(what, out_obj);
  const dkc::DeviceArray& a = array_on(what, "a", a_obj, out.device);
  const dkc::DeviceArray& index = array_on(what, "indices", index_obj, out.device);
  const std::vector<std::int64_t> shape = along_axis_shape(what, a, index, axis);
  if (out.shape != shape)
    throw py::value_error(what + ": out has shape " + shape_text(out.shape) + ", expected " + shape_text(shape));
  check_out_dtype(what, out, a.dtype);
  if (!dkc::supports(dkc::AlongAxisOp::take, a.dtype))
    throw py::type_error(what + " has no CUDA kernel for " + std::string(dkc::info(a.dtype).name));
  if (overlap(out, a) || overlap(out, index)) throw py::value_error(what + ": out overlaps a or indices");
  run_checked(what, a, axis, [&](cudaStream_t stream, std::int64_t* bad) {
    dkc::along_axis(dkc::AlongAxisOp::take, a, index, out, axis, bad, stream);
  });
}

void scatter_along_axis(const std::string& name, const py::object& a_obj, const py::object& index_obj,
                        const py::object& values_obj, int axis) {
  const std::string what = "cuda " + name;
  if (name != "put_along_axis" && name != "add.at")
    throw py::value_error("cuda scatter: unknown op '" + name + "' (known: put_along_axis, add.at)");
  const auto op = name == "add.at" ? dkc::AlongAxisOp::add : dkc::AlongAxisOp::put;
  const dkc::DeviceArray& a = output_array(what, a_obj);
  const dkc::DeviceArray& index = array_on(what, "indices", index_obj, a.device);
  const dkc::DeviceArray& values = array_on(what, "values", values_obj, a.device);
  const std::vector<std::int64_t> shape = along_axis_shape(what, a, index, axis);
  bool fits = values.ndim() <= shape.size();
  for (std::size_t k = 0; fits && k < values.ndim(); ++k) {
    const std::int64_t extent = values.shape[k], target = shape[shape.size() - values.ndim() + k];
    fits = extent == target || extent == 1;
  }
  if (!fits)
    throw py::value_error(what + ": values of shape " + shape_text(values.shape) +
                          " do not broadcast to the indexed shape " + shape_text(shape));
  if (values.dtype != a.dtype)
    throw py::type_error(what + ": values are " + std::string(dkc::info(values.dtype).name) + " and a " +
                         dkc::info(a.dtype).name + "; cast them to a's dtype first");
  if (!dkc::supports(op, a.dtype))
    throw py::type_error(what + " has no CUDA kernel for " + std::string(dkc::info(a.dtype).name));
  if (overlap(a, index) || overlap(a, values)) throw py::value_error(what + ": a overlaps indices or values");
  const std::int64_t extent = a.shape[axis];
  // The indices are checked before anything is written: a refused index leaves a as it was.
  run_checked(what, a, axis,
              [&](cudaStream_t stream, std::int64_t* bad) { dkc::check_indices(index, extent, bad, stream); });
  run_checked(what, a, axis, [&](cudaStream_t stream, std::int64_t* bad) {
    dkc::along_axis(op, a, index, values, axis, bad, stream);
  });
}

}  // namespace

void bind_cuda_elementwise(py::module_& m) {
  m.def("unary", &unary, py::arg("op"), py::arg("out"), py::arg("a"),
        "out = op(a) elementwise (op: a name of elementwise_ops()['unary']); a broadcasts to out.");
  m.def("binary", &binary, py::arg("op"), py::arg("out"), py::arg("a"), py::arg("b"),
        "out = op(a, b) elementwise; a and b are DeviceArrays of one dtype broadcasting to out, or numbers.");
  m.def("where", &where, py::arg("out"), py::arg("condition"), py::arg("x"), py::arg("y"),
        "out = x where condition else y; condition bool, x and y of out's dtype (or numbers), broadcast to out.");
  m.def("reduce", &reduce, py::arg("op"), py::arg("out"), py::arg("a"), py::arg("axes"),
        "out = op of a over `axes`; out has a's shape without them.");
  m.def("broadcast_view", &broadcast_view, py::arg("a"), py::arg("shape"),
        "A view of a broadcast to shape (stride 0 where broadcast); the kernels refuse it as an output.");
  m.def("take_along_axis", &take_along_axis, py::arg("out"), py::arg("a"), py::arg("indices"), py::arg("axis"),
        "out = np.take_along_axis(a, indices, axis); int64 indices, negative ones from the end; IndexError for one "
        "out of bounds.");
  m.def("scatter_along_axis", &scatter_along_axis, py::arg("op"), py::arg("a"), py::arg("indices"), py::arg("values"),
        py::arg("axis"),
        "np.put_along_axis(a, indices, values, axis) (op 'put_along_axis') or a[along axis at indices] += values "
        "with repeated indices accumulating (op 'add.at'); values of a's dtype broadcast to the indexed shape; "
        "IndexError, with a untouched, for an index out of bounds.");
  m.def(
      "elementwise_ops",
      [] {
        py::dict ops;
        ops["unary"] = dkc::unary_op_names();
        ops["binary"] = dkc::binary_op_names();
        ops["reduce"] = dkc::reduce_op_names();
        return ops;
      },
      "The op names the elementwise functions take, by kind.");
  m.def(
      "elementwise_result_dtype",
      [](const std::string& kind, const std::string& name, const std::string& dtype) -> py::object {
        const dkc::DType in = dkc::dtype_from_name(dtype);
        auto answer = [&](auto op) -> py::object {
          if (!dkc::supports(op, in)) return py::none();
          return py::str(dkc::info(dkc::result_dtype(op, in)).name);
        };
        if (kind == "unary") return answer(op_from_name<dkc::UnaryOp>(kind, name, dkc::unary_op_names()));
        if (kind == "binary") return answer(op_from_name<dkc::BinaryOp>(kind, name, dkc::binary_op_names()));
        if (kind == "reduce") return answer(op_from_name<dkc::ReduceOp>(kind, name, dkc::reduce_op_names()));
        throw py::value_error("kind must be 'unary', 'binary' or 'reduce', got '" + kind + "'");
      },
      py::arg("kind"), py::arg("op"), py::arg("dtype"),
      "The output dtype name of the op's kernel for inputs of `dtype`, or None where it has none.");
}
