// deepkern._C, convolution: conv2d forward and its two backward passes (deepkern.ops.conv).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <utility>

#include "cpu/conv/conv.h"
#include "python/boundary.h"
#include "python/conv_shape.h"

namespace deepkern::python {
namespace {

using Pair = std::pair<int64_t, int64_t>;

// An array of the call whose shape sets part of the convolution's, as the call names it.
struct Named {
  const char* name;
  py::handle array;
};

// conv_shape (conv_shape.h) on the arrays' shapes, after checking that each is a 4-D NumPy array.
cpu::Conv2dShape named_conv_shape(const char* op, Named x, Named w, Named y, const ConvOptions& o) {
  return conv_shape(op, {x.name, shape_with_ndim(x.array, op, x.name, 4, "(N, C, H, W)")},
                    {w.name, shape_with_ndim(w.array, op, w.name, 4, "(K, C/groups, R, S)")},
                    {y.name, shape_with_ndim(y.array, op, y.name, 4, "(N, K, P, Q)")}, o);
}

Extent input_extent(const cpu::Conv2dShape& s) { return {s.batch, s.in_channels, s.in_h, s.in_w}; }
Extent weight_extent(const cpu::Conv2dShape& s) {
  return {s.out_channels, s.in_channels / s.groups, s.kernel_h, s.kernel_w};
}
Extent output_extent(const cpu::Conv2dShape& s) { return {s.batch, s.out_channels, s.out_h, s.out_w}; }

// Every convolution binding's contract: C-contiguous arrays of one float dtype; x and grad_x
// (N, C, H, W), w and grad_w (K, C/groups, R, S), y and grad_y (N, K, P, Q), bias and grad_bias (K,)
// or None; stride and dilation >= 1 and padding >= 0 given as (H, W) pairs, the padding at the start
// of each axis (the end's is implied by P and Q, see output_size); groups divides C and K. The
// output is written, never read, and overlaps no other argument.
//
// conv_call runs body(s, arrays): s the shape from the x-, w- and y-shaped arrays, arrays the
// call's KernelArrays of the float dtype of `dtype_from`.
template <class Body>
void conv_call(const char* op, Named dtype_from, Named x, Named w, Named y, const ConvOptions& o, Body&& body) {
  dispatch_float(dtype_from.array, op, dtype_from.name, [&](auto zero) {
    const cpu::Conv2dShape s = named_conv_shape(op, x, w, y, o);
    KernelArrays<decltype(zero)> arrays(op, dtype_from.name);
    body(s, arrays);
  });
}

// y = conv(x, w) + bias.
void conv2d_forward(const py::object& x, const py::object& w, const py::object& bias, const py::object& y, Pair stride,
                    Pair padding, Pair dilation, int64_t groups) {
  conv_call("conv2d_forward", {"x", x}, {"x", x}, {"w", w}, {"y", y}, {stride, padding, dilation, groups},
            [&](const cpu::Conv2dShape& s, auto& arrays) {
              const auto* xp = arrays.input(x, "x", input_extent(s));
              const auto* wp = arrays.input(w, "w", weight_extent(s));
              const auto* bp = arrays.optional_input(bias, "bias", {s.out_channels});
              auto* yp = arrays.output(y, "y", output_extent(s));
              py::gil_scoped_release release;
              cpu::conv2d_forward(s, xp, wp, bp, yp);
            });
}

// grad_x = the gradient of sum(grad_y * conv(x, w)) with respect to x.
void conv2d_backward_data(const py::object& grad_y, const py::object& w, const py::object& grad_x, Pair stride,
                          Pair padding, Pair dilation, int64_t groups) {
  conv_call("conv2d_backward_data", {"grad_y", grad_y}, {"grad_x", grad_x}, {"w", w}, {"grad_y", grad_y},
            {stride, padding, dilation, groups}, [&](const cpu::Conv2dShape& s, auto& arrays) {
              const auto* gyp = arrays.input(grad_y, "grad_y", output_extent(s));
              const auto* wp = arrays.input(w, "w", weight_extent(s));
              auto* gxp = arrays.output(grad_x, "grad_x", input_extent(s));
              py::gil_scoped_release release;
              cpu::conv2d_backward_data(s, gyp, wp, gxp);
            });
}

// grad_w and, unless None, grad_bias: the gradients with respect to w and the bias.
void conv2d_backward_weight(const py::object& grad_y, const py::object& x, const py::object& grad_w,
                            const py::object& grad_bias, Pair stride, Pair padding, Pair dilation, int64_t groups) {
  conv_call("conv2d_backward_weight", {"grad_y", grad_y}, {"x", x}, {"grad_w", grad_w}, {"grad_y", grad_y},
            {stride, padding, dilation, groups}, [&](const cpu::Conv2dShape& s, auto& arrays) {
              const auto* gyp = arrays.input(grad_y, "grad_y", output_extent(s));
              const auto* xp = arrays.input(x, "x", input_extent(s));
              auto* gwp = arrays.output(grad_w, "grad_w", weight_extent(s));
              auto* gbp = arrays.optional_output(grad_bias, "grad_bias", {s.out_channels});
              py::gil_scoped_release release;
              cpu::conv2d_backward_weight(s, gyp, xp, gwp, gbp);
            });
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("y"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("grad_y"), py::arg("w"), py::arg("grad_x"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("grad_y"), py::arg("x"), py::arg("grad_w"),
        py::arg("grad_bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
}

}  // namespace deepkern::python
