// deepkern._C, normalization: batch normalization's fused forward (statistics, normalization,
// running statistics) and backward (grad_x, grad_weight, grad_bias), contract in norm_binding.h;
// layer and group normalization's forward and backward, contract at their functions below.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>

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

// Runs `run(x, weight, bias, out, save_mean, save_rstd)` on the checked pointers of a forward call.
template <class Run>
void row_norm_forward(const char* op, const RowNormExtents& e, const py::object& x, const py::object& weight,
                      const py::object& bias, const py::object& out, const py::object& save_mean,
                      const py::object& save_rstd, Run&& run) {
  const Extent data = Extent::elements(e.data), params = Extent::elements(e.params), stats = Extent::elements(e.stats);
  dispatch_float(x, op, "x", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const T* xp = arrays.input(x, "x", data);
    const T* wp = arrays.optional_input(weight, "weight", params);
    const T* bp = arrays.optional_input(bias, "bias", params);
    T* o = arrays.output(out, "out", data);
    double* sm = arrays.template output<double>(save_mean, "save_mean", stats);
    double* sr = arrays.template output<double>(save_rstd, "save_rstd", stats);
    py::gil_scoped_release release;
    run(xp, wp, bp, o, sm, sr);
  });
}

// Runs `run(grad_out, x, weight, save_mean, save_rstd, grad_x, grad_weight, grad_bias)` on the
// checked pointers of a backward call.
template <class Run>
void row_norm_backward(const char* op, const RowNormExtents& e, const py::object& grad_out, const py::object& x,
                       const py::object& weight, const py::object& save_mean, const py::object& save_rstd,
                       const py::object& grad_x, const py::object& grad_weight, const py::object& grad_bias,
                       Run&& run) {
  const Extent data = Extent::elements(e.data), params = Extent::elements(e.params), stats = Extent::elements(e.stats);
  dispatch_float(grad_out, op, "grad_out", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "grad_out");
    const T* gp = arrays.input(grad_out, "grad_out", data);
    const T* xp = arrays.input(x, "x", data);
    const T* wp = arrays.optional_input(weight, "weight", params);
    const double* sm = arrays.template input<double>(save_mean, "save_mean", stats);
    const double* sr = arrays.template input<double>(save_rstd, e.rstd_name, stats);
    T* gx = arrays.optional_output(grad_x, "grad_x", data);
    T* gw = arrays.optional_output(grad_weight, "grad_weight", params);
    T* gb = arrays.optional_output(grad_bias, "grad_bias", params);
    py::gil_scoped_release release;
    run(gp, xp, wp, sm, sr, gx, gw, gb);
  });
}

void batch_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_invstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias, const NormShapeTuple& shape,
                         bool training) {
  constexpr const char* op = "batch_norm_backward";
  int64_t elements = 0;
  const cpu::BatchNormShape s = norm_shape(op, shape, &elements);
  row_norm_backward(op, {elements, s.c, s.c, "save_invstd"}, grad_out, x, weight, save_mean, save_invstd, grad_x,
                    grad_weight, grad_bias, [&](auto... p) { cpu::batch_norm_backward(s, p..., training); });
}

void layer_norm_forward(const py::object& x, const py::object& weight, const py::object& bias, const py::object& out,
                        const py::object& save_mean, const py::object& save_rstd, const std::array<int64_t, 2>& shape,
                        double eps) {
  constexpr const char* op = "layer_norm_forward";
  const RowNormExtents e = layer_norm_extents(op, shape);
  check_eps(op, eps);
  row_norm_forward(op, e, x, weight, bias, out, save_mean, save_rstd,
                   [&](auto... p) { cpu::layer_norm_forward(cpu::LayerNormShape{shape[0], shape[1]}, p..., eps); });
}

void layer_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_rstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias,
                         const std::array<int64_t, 2>& shape) {
  constexpr const char* op = "layer_norm_backward";
  const RowNormExtents e = layer_norm_extents(op, shape);
  row_norm_backward(op, e, grad_out, x, weight, save_mean, save_rstd, grad_x, grad_weight, grad_bias,
                    [&](auto... p) { cpu::layer_norm_backward(cpu::LayerNormShape{shape[0], shape[1]}, p...); });
}

void group_norm_forward(const py::object& x, const py::object& weight, const py::object& bias, const py::object& out,
                        const py::object& save_mean, const py::object& save_rstd, const NormShapeTuple& shape,
                        int64_t groups, double eps) {
  constexpr const char* op = "group_norm_forward";
  const RowNormExtents e = group_norm_extents(op, shape, groups);
  check_eps(op, eps);
  row_norm_forward(op, e, x, weight, bias, out, save_mean, save_rstd, [&](auto... p) {
    cpu::group_norm_forward(cpu::GroupNormShape{shape[0], shape[1], shape[2], groups}, p..., eps);
  });
}

void group_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_rstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias, const NormShapeTuple& shape,
                         int64_t groups) {
  constexpr const char* op = "group_norm_backward";
  const RowNormExtents e = group_norm_extents(op, shape, groups);
  row_norm_backward(op, e, grad_out, x, weight, save_mean, save_rstd, grad_x, grad_weight, grad_bias, [&](auto... p) {
    cpu::group_norm_backward(cpu::GroupNormShape{shape[0], shape[1], shape[2], groups}, p...);
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
  m.def("layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("shape"), py::arg("eps"));
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
        py::arg("shape"));
  m.def("group_norm_forward", &group_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("shape"), py::arg("groups"), py::arg("eps"));
  m.def("group_norm_backward", &group_norm_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
        py::arg("shape"), py::arg("groups"));
}

}  // namespace deepkern::python
