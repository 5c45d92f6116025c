// deepkern._C, batch normalization: the fused forward (statistics, normalization, running
// statistics) and backward (grad_x, grad_weight, grad_bias) of deepkern.nn.functional.batch_norm.
// Contract: norm_binding.h.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>

#include "cpu/norm/norm.h"
#include "python/boundary.h"
#include "python/norm_binding.h"

namespace deepkern::python {
namespace {

void batch_norm_forward(const py::object& x, const py::object& weight, const py::object& bias,
                        const py::object& running_mean, const py::object& running_var, const py::object& out,
                        const py::object& save_mean, const py::object& save_invstd, const NormShapeTuple& shape,
                        bool training, double momentum, double eps) {
  constexpr const char* op = "batch_norm_forward";
  int64_t elements = 0;
  const cpu::BatchNormShape s = norm_shape(op, shape, &elements);
  check_forward_options(op, s, training, !running_mean.is_none() && !running_var.is_none(), momentum, eps);
  const Extent data = Extent::elements(elements), channels = Extent::elements(s.c);
  dispatch_float(x, op, "x", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const T* xp = arrays.input(x, "x", data);
    const T* wp = arrays.optional_input(weight, "weight", channels);
    const T* bp = arrays.optional_input(bias, "bias", channels);
    // The running statistics are written when training, only read otherwise; either way they are
    // taken as written arrays (writeable, sharing memory with no other argument).
    T* rm = arrays.optional_output(running_mean, "running_mean", channels);
    T* rv = arrays.optional_output(running_var, "running_var", channels);
    T* op_out = arrays.output(out, "out", data);
    double* sm = arrays.template output<double>(save_mean, "save_mean", channels);
    double* si = arrays.template output<double>(save_invstd, "save_invstd", channels);
    py::gil_scoped_release release;
    cpu::batch_norm_forward(s, xp, wp, bp, rm, rv, op_out, sm, si, training, momentum, eps);
  });
}

void batch_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_invstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias, const NormShapeTuple& shape,
                         bool training) {
  constexpr const char* op = "batch_norm_backward";
  int64_t elements = 0;
  const cpu::BatchNormShape s = norm_shape(op, shape, &elements);
  const Extent data = Extent::elements(elements), channels = Extent::elements(s.c);
  dispatch_float(grad_out, op, "grad_out", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "grad_out");
    const T* gp = arrays.input(grad_out, "grad_out", data);
    const T* xp = arrays.input(x, "x", data);
    const T* wp = arrays.optional_input(weight, "weight", channels);
    const double* sm = arrays.template input<double>(save_mean, "save_mean", channels);
    const double* si = arrays.template input<double>(save_invstd, "save_invstd", channels);
    T* gx = arrays.optional_output(grad_x, "grad_x", data);
    T* gw = arrays.optional_output(grad_weight, "grad_weight", channels);
    T* gb = arrays.optional_output(grad_bias, "grad_bias", channels);
    py::gil_scoped_release release;
    cpu::batch_norm_backward(s, gp, xp, wp, sm, si, gx, gw, gb, training);
  });
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("out"), py::arg("save_mean"), py::arg("save_invstd"),
        py::arg("shape"), py::arg("training"), py::arg("momentum"), py::arg("eps"));
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
        py::arg("shape"), py::arg("training"));
}

}  // namespace deepkern::python
