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

namespace deepkern::python {
namespace {

using Pair = std::pair<int64_t, int64_t>;

std::string pair_str(Pair p) { return shape_str({p.first, p.second}); }

// An array of the call whose shape sets part of the convolution's, as the call names it.
struct Named {
  const char* name;
  py::handle array;
};

// The output size along one axis: `given` where it is what the input size, kernel, stride, start
// padding and dilation give with the same padding at the end or one more there (PyTorch's
// padding="same" with an odd total), else the size for the same padding (the one to ask for).
// In 128 bits: a kernel of 0 taps leaves the dilation unchecked by window_indices_fit.
int64_t output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, int64_t given) {
  auto size = [&](int64_t pad_end) {
    const __int128 span = __int128(in) + pad + pad_end - __int128(dilation) * (kernel - 1) - 1;
    return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;  // floor division
  };
  if (given == size(pad) || given == size(pad + 1)) return given;
  return static_cast<int64_t>(
      std::clamp<__int128>(size(pad), std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
}

// A convolution's options, as every binding takes them.
struct ConvOptions {
  Pair stride, padding, dilation;
  int64_t groups;
};

// The convolution's shape, read off x (N, C, H, W), w (K, C/groups, R, S) and y (N, K, P, Q) (named
// as the call names them) after checking that they fit each other and the options: strides and
// dilations >= 1, paddings >= 0, groups dividing C and K, P and Q as output_size gives.
cpu::Conv2dShape conv_shape(const char* op, Named x, Named w, Named y, const ConvOptions& o) {
  const Shape xs = shape_with_ndim(x.array, op, x.name, 4, "(N, C, H, W)");
  const Shape ws = shape_with_ndim(w.array, op, w.name, 4, "(K, C/groups, R, S)");
  const Shape ys = shape_with_ndim(y.array, op, y.name, 4, "(N, K, P, Q)");
  auto where = [&] { return std::string(op) + ": "; };
  for (const auto& [name, value, minimum] :
       {std::tuple{"stride", o.stride, 1}, std::tuple{"padding", o.padding, 0}, std::tuple{"dilation", o.dilation, 1}})
    if (value.first < minimum || value.second < minimum)
      throw py::value_error(where() + name + " must be >= " + std::to_string(minimum) + ", got " + pair_str(value));
  if (o.groups < 1 || xs[1] % o.groups || ws[0] % o.groups || ws[1] != xs[1] / o.groups)
    throw py::value_error(where() + "groups=" + std::to_string(o.groups) + " must divide " + x.name + "'s C and " +
                          w.name + "'s K, with C/groups in " + w.name + "'s second axis: " + x.name + " " +
                          shape_str(xs) + ", " + w.name + " " + shape_str(ws));
  auto options = [&] {  // for the errors below
    return " for " + std::string(x.name) + " " + shape_str(xs) + ", " + w.name + " " + shape_str(ws) + ", stride " +
           pair_str(o.stride) + ", padding " + pair_str(o.padding) + ", dilation " + pair_str(o.dilation);
  };
  if (!window_indices_fit(xs[2], ys[2], ws[2], o.stride.first, o.padding.first, o.dilation.first) ||
      !window_indices_fit(xs[3], ys[3], ws[3], o.stride.second, o.padding.second, o.dilation.second))
    throw py::value_error(where() + "stride, padding or dilation too large to index" + options());
  const Shape expected = {xs[0], ws[0],
                          output_size(xs[2], ws[2], o.stride.first, o.padding.first, o.dilation.first, ys[2]),
                          output_size(xs[3], ws[3], o.stride.second, o.padding.second, o.dilation.second, ys[3])};
  if (ys != expected)
    throw py::value_error(where() + y.name + " must have shape " + shape_str(expected) + options() +
                          " (P or Q may be one more, for one more padding at the end), got " + shape_str(ys));
  cpu::Conv2dShape s;
  s.batch = xs[0];
  s.in_channels = xs[1];
  s.in_h = xs[2];
  s.in_w = xs[3];
  s.out_channels = ws[0];
  s.kernel_h = ws[2];
  s.kernel_w = ws[3];
  s.groups = o.groups;
  std::tie(s.stride_h, s.stride_w) = o.stride;
  std::tie(s.pad_h, s.pad_w) = o.padding;
  std::tie(s.dilation_h, s.dilation_w) = o.dilation;
  s.out_h = ys[2];
  s.out_w = ys[3];
  return s;
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
    const cpu::Conv2dShape s = conv_shape(op, x, w, y, o);
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
