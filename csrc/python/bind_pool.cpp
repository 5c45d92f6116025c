// deepkern._C, pooling: max, average and adaptive average, forward and backward (deepkern.ops.pool).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "cpu/pool/pool.h"
#include "python/boundary.h"
#include "python/pool_binding.h"

namespace deepkern::python {
namespace {

// Runs body(arrays, count): arrays the call's KernelArrays of the float dtype of `dtype_from`
// (named `dtype_name`), count the element counts of `s`.
template <class Body>
void pool_call(const char* op, const cpu::Pool2dShape& s, const py::object& dtype_from, const char* dtype_name,
               Body&& body) {
  const PoolCounts count = pool_counts(op, s);
  dispatch_float(dtype_from, op, dtype_name, [&](auto zero) {
    KernelArrays<decltype(zero)> arrays(op, dtype_name);
    body(arrays, count);
  });
}

// out = the max over each window; indices (unless None) the flat position in its plane of each max.
void max_pool2d(const py::object& x, const py::object& out, const py::object& indices, const PoolShapeTuple& shape) {
  constexpr const char* op = "max_pool2d";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  pool_call(op, s, x, "x", [&](auto& arrays, const PoolCounts& count) {
    const auto* xp = arrays.input(x, "x", Extent::elements(count.input));
    auto* outp = arrays.output(out, "out", Extent::elements(count.output));
    int64_t* ip = arrays.template optional_output<int64_t>(indices, "indices", Extent::elements(count.output));
    py::gil_scoped_release release;
    cpu::max_pool2d(s, xp, outp, ip);
  });
}

// grad_x = zeros, plus each grad_out element added at its window's max (indices from max_pool2d);
// an index outside its plane (other than -1) is a ValueError, with grad_x left as it was.
void max_pool2d_backward(const py::object& grad_out, const py::object& indices, const py::object& grad_x,
                         const PoolShapeTuple& shape) {
  constexpr const char* op = "max_pool2d_backward";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  pool_call(op, s, grad_out, "grad_out", [&](auto& arrays, const PoolCounts& count) {
    const auto* gp = arrays.input(grad_out, "grad_out", Extent::elements(count.output));
    const int64_t* ip = arrays.template input<int64_t>(indices, "indices", Extent::elements(count.output));
    auto* gxp = arrays.output(grad_x, "grad_x", Extent::elements(count.input));
    py::gil_scoped_release release;
    cpu::max_pool2d_backward(s, gp, ip, gxp);
  });
}

enum class Pass { forward, backward };

// A pooling call that reads one array and writes one: `read` (named `read_name`) has the input's
// count in the forward pass (x) and the output's in the backward (grad_out), `written` the other.
// run(s, const T* read, T* written) runs the kernel, without the GIL.
template <class Run>
void pool_read_write(const char* op, const cpu::Pool2dShape& s, Pass pass, const py::object& read,
                     const char* read_name, const py::object& written, const char* written_name, Run&& run) {
  const bool forward = pass == Pass::forward;
  pool_call(op, s, read, read_name, [&](auto& arrays, const PoolCounts& count) {
    const auto* rp = arrays.input(read, read_name, Extent::elements(forward ? count.input : count.output));
    auto* wp = arrays.output(written, written_name, Extent::elements(forward ? count.output : count.input));
    py::gil_scoped_release release;
    run(s, rp, wp);
  });
}

// out = the mean over each window (divisor: divisor_override when nonzero, else the window's size,
// counting the padding when count_include_pad).
void avg_pool2d(const py::object& x, const py::object& out, const PoolShapeTuple& shape, bool count_include_pad,
                int64_t divisor_override) {
  constexpr const char* op = "avg_pool2d";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  require_no_dilation(op, s);
  pool_read_write(op, s, Pass::forward, x, "x", out, "out", [&](const auto& pool, const auto* xp, auto* outp) {
    cpu::avg_pool2d(pool, xp, outp, count_include_pad, divisor_override);
  });
}

// grad_x = the gradient of avg_pool2d (same arguments) from grad_out.
void avg_pool2d_backward(const py::object& grad_out, const py::object& grad_x, const PoolShapeTuple& shape,
                         bool count_include_pad, int64_t divisor_override) {
  constexpr const char* op = "avg_pool2d_backward";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  require_no_dilation(op, s);
  pool_read_write(op, s, Pass::backward, grad_out, "grad_out", grad_x, "grad_x",
                  [&](const auto& pool, const auto* gp, auto* gxp) {
                    cpu::avg_pool2d_backward(pool, gp, gxp, count_include_pad, divisor_override);
                  });
}

// out = the mean over PyTorch's adaptive windows (only planes and the sizes of `shape` are used).
void adaptive_avg_pool2d(const py::object& x, const py::object& out, const PoolShapeTuple& shape) {
  constexpr const char* op = "adaptive_avg_pool2d";
  pool_read_write(op, adaptive_pool_shape(op, shape), Pass::forward, x, "x", out, "out",
                  [](const auto& pool, const auto* xp, auto* outp) { cpu::adaptive_avg_pool2d(pool, xp, outp); });
}

// grad_x = the gradient of adaptive_avg_pool2d from grad_out.
void adaptive_avg_pool2d_backward(const py::object& grad_out, const py::object& grad_x, const PoolShapeTuple& shape) {
  constexpr const char* op = "adaptive_avg_pool2d_backward";
  pool_read_write(
      op, adaptive_pool_shape(op, shape), Pass::backward, grad_out, "grad_out", grad_x, "grad_x",
      [](const auto& pool, const auto* gp, auto* gxp) { cpu::adaptive_avg_pool2d_backward(pool, gp, gxp); });
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("out"), py::arg("indices"), py::arg("shape"));
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_out"), py::arg("indices"), py::arg("grad_x"),
        py::arg("shape"));
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("out"), py::arg("shape"), py::arg("count_include_pad"),
        py::arg("divisor_override"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_out"), py::arg("grad_x"), py::arg("shape"),
        py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d, py::arg("x"), py::arg("out"), py::arg("shape"));
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_out"), py::arg("grad_x"),
        py::arg("shape"));
}

}  // namespace deepkern::python
