// deepkern._C, convolution: conv2d forward and its two backward passes (deepkern.ops.conv).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/conv/conv.h"
#include "cpu/conv/conv_bf16.h"
#include "cpu/conv/winograd.h"
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

// Every convolution binding's contract: C-contiguous arrays of one float dtype (float32, float64 or
// bfloat16: conv_bf16.h); x and grad_x
// (N, C, H, W), w and grad_w (K, C/groups, R, S), y and grad_y (N, K, P, Q), bias and grad_bias (K,)
// or None; stride and dilation >= 1 and padding >= 0 given as (H, W) pairs, the padding at the start
// of each axis (the end's is implied by P and Q, see output_size); groups divides C and K. The
// output is written, never read, and overlaps no other argument.
//
// conv_call runs body(s, arrays): s the shape from the x-, w- and y-shaped arrays, arrays the
// call's KernelArrays of the float dtype of `dtype_from`.
template <class Body>
void conv_call(const char* op, Named dtype_from, Named x, Named w, Named y, const ConvOptions& o, Body&& body) {
  auto run = [&](auto zero) {
    const cpu::Conv2dShape s = named_conv_shape(op, x, w, y, o);
    KernelArrays<decltype(zero)> arrays(op, dtype_from.name);
    body(s, arrays);
  };
  if (is_bfloat16(dtype_from.array))
    run(cpu::bf16{});
  else
    dispatch_float(dtype_from.array, op, dtype_from.name, run);
}

// The layout of winograd_weights (points, panels, width * C) given for shape s: F(2x2) for 16 points,
// F(4x4) for 36, the panel width from the last axis; a ValueError naming the shape and the two that
// fit (packed without an input shape, and for this one) when it is no layout of s's weights.
template <class T>
cpu::WinogradWeightsLayout winograd_layout_of(const py::object& winograd_weights, const cpu::Conv2dShape& s) {
  const char* op = "conv2d_forward";
  const Shape shape = shape_with_ndim(winograd_weights, op, "winograd_weights", 3, "(points, panels, width * C)");
  cpu::WinogradWeightsLayout layout{
      shape[0] == 16   ? 2
      : shape[0] == 36 ? 4
                       : 0,
      s.in_channels > 0 && shape[2] % s.in_channels == 0 ? static_cast<int>(shape[2] / s.in_channels) : 0};
  const bool known = layout.tile > 0 && layout.width > 0;
  if (!known || cpu::conv2d_winograd_weights_shape(s, layout) != std::array<int64_t, 3>{shape[0], shape[1], shape[2]}) {
    const auto shape_of = [&](cpu::WinogradWeightsLayout l) {
      const std::array<int64_t, 3> a = cpu::conv2d_winograd_weights_shape(s, l);
      return shape_str(Shape(a.begin(), a.end()));
    };
    std::string for_input;  // bfloat16 has no Winograd path, so no layout for this input
    if constexpr (!std::is_same_v<T, cpu::bf16>)
      for_input = " or " + shape_of(cpu::conv2d_winograd_layout<T>(s)) + " (packed for this input)";
    throw py::value_error(std::string(op) + ": winograd_weights of shape " + shape_str(shape) + " for w with " +
                          std::to_string(s.out_channels) + " output and " + std::to_string(s.in_channels) +
                          " input channels: expected " + shape_of({4, 1}) + " (packed without an input shape)" +
                          for_input);
  }
  return layout;
}

// The extent of packed GEMM weights of panel width `width` >= 1 (conv2d_gemm_weights_shape with that
// width).
Extent gemm_weights_extent(const cpu::Conv2dShape& s, int64_t width) {
  const int64_t group_out = s.out_channels / s.groups;
  return {s.groups, (group_out + width - 1) / width, s.in_channels / s.groups * s.kernel_h * s.kernel_w, width};
}

// The panel width of gemm_weights (None: 0), checked to be >= 1.
int64_t gemm_weights_width(const py::object& gemm_weights) {
  if (gemm_weights.is_none()) return 0;
  const Shape shape =
      shape_with_ndim(gemm_weights, "conv2d_forward", "gemm_weights", 4, "(groups, panels, C/groups*R*S, width)");
  if (shape[3] < 1)
    throw py::value_error("conv2d_forward: gemm_weights must have a panel width (last axis) >= 1, got shape " +
                          shape_str(shape));
  return shape[3];
}

// y = conv(x, w) + bias, then relu(y) when `relu`. winograd_weights: None, or conv2d_pack_winograd_weights of
// this w and these options; gemm_weights: None, or conv2d_pack_gemm_weights of this w and these options
// (their shapes are checked; that they were packed from this w is the caller's contract).
void conv2d_forward(const py::object& x, const py::object& w, const py::object& bias, const py::object& y, Pair stride,
                    Pair padding, Pair dilation, int64_t groups, const py::object& winograd_weights,
                    const py::object& gemm_weights, bool relu) {
  conv_call(
      "conv2d_forward", {"x", x}, {"x", x}, {"w", w}, {"y", y}, {stride, padding, dilation, groups},
      [&](const cpu::Conv2dShape& s, auto& arrays) {
        const auto* xp = arrays.input(x, "x", input_extent(s));
        const auto* wp = arrays.input(w, "w", weight_extent(s));
        const auto* bp = arrays.optional_input(bias, "bias", {s.out_channels});
        if (!winograd_weights.is_none() && cpu::conv2d_winograd_weights_size(s) == 0)
          throw py::value_error("conv2d_forward: winograd_weights given for w " +
                                shape_str(shape_with_ndim(w, "conv2d_forward", "w", 4, "(K, C/groups, R, S)")) +
                                " with options that never take the Winograd path");
        const cpu::WinogradWeightsLayout layout =
            winograd_weights.is_none() ? cpu::WinogradWeightsLayout{}
                                       : winograd_layout_of<typename std::decay_t<decltype(*xp)>>(winograd_weights, s);
        const std::array<int64_t, 3> packed_shape = cpu::conv2d_winograd_weights_shape(s, layout);
        const auto* up = arrays.optional_input(winograd_weights, "winograd_weights",
                                               {packed_shape[0], packed_shape[1], packed_shape[2]});
        const int64_t width = gemm_weights_width(gemm_weights);
        decltype(xp) gp = width ? arrays.input(gemm_weights, "gemm_weights", gemm_weights_extent(s, width)) : nullptr;
        auto* yp = arrays.output(y, "y", output_extent(s));
        py::gil_scoped_release release;
        cpu::conv2d_forward(s, xp, wp, bp, yp, {up, layout, gp, width}, relu);
      });
}

// The Winograd weights of w for conv2d_forward's winograd_weights: with no input shape, the
// (36, K, C) F(4x4, 3x3) transform of each (k, c) pair; for inputs of shape x_shape (N, C, H, W)
// giving outputs of shape y_shape, in the layout that forward reads at the current thread count
// (conv2d_winograd_layout). A new array of w's dtype, or None when these options (that input) never
// take the Winograd path, w holds Inf or NaN or w is bfloat16 (which has no Winograd path).
py::object conv2d_pack_winograd_weights(const py::object& w, Pair stride, Pair padding, Pair dilation, int64_t groups,
                                        const std::optional<Shape>& x_shape, const std::optional<Shape>& y_shape) {
  const char* op = "conv2d_pack_winograd_weights";
  py::object packed = py::none();
  if (is_bfloat16(w)) return packed;
  if (x_shape.has_value() != y_shape.has_value())
    throw py::value_error(std::string(op) + ": give both x_shape and y_shape, or neither");
  for (const auto& [name, shape] : {std::pair{"x_shape", &x_shape}, std::pair{"y_shape", &y_shape}})
    if (shape->has_value() && (*shape)->size() != 4)
      throw py::value_error(std::string(op) + ": " + name + " must have 4 entries, got " + shape_str(**shape));
  dispatch_float(w, op, "w", [&](auto zero) {
    using T = decltype(zero);
    const Shape w_shape = shape_with_ndim(w, op, "w", 4, "(K, C/groups, R, S)");
    if (groups < 1) throw py::value_error(std::string(op) + ": groups must be >= 1, got " + std::to_string(groups));
    cpu::Conv2dShape s{};
    cpu::WinogradWeightsLayout layout{};
    if (x_shape) {
      s = conv_shape(op, {"x", *x_shape}, {"w", w_shape}, {"y", *y_shape}, {stride, padding, dilation, groups});
      layout = cpu::conv2d_winograd_layout<T>(s);
    } else {
      s.batch = 1;
      s.out_channels = w_shape[0];
      s.in_channels = w_shape[1] * groups;
      s.kernel_h = w_shape[2];
      s.kernel_w = w_shape[3];
      s.groups = groups;
      std::tie(s.stride_h, s.stride_w) = stride;
      std::tie(s.pad_h, s.pad_w) = padding;
      std::tie(s.dilation_h, s.dilation_w) = dilation;
      if (cpu::conv2d_winograd_weights_size(s) > 0) layout = {4, 1};
    }
    if (layout.tile == 0) return;
    KernelArrays<T> arrays(op, "w");
    const T* wp = arrays.input(w, "w", weight_extent(s));
    const std::array<int64_t, 3> shape = cpu::conv2d_winograd_weights_shape(s, layout);
    py::array_t<T> out(std::vector<int64_t>(shape.begin(), shape.end()));
    T* up = out.mutable_data();
    bool finite;
    {
      py::gil_scoped_release release;
      finite = cpu::conv2d_pack_winograd_weights(s, layout, wp, up);
    }
    if (finite) packed = std::move(out);
  });
  return packed;
}

// The packed GEMM weights of w for conv2d_forward's gemm_weights, for inputs of shape x_shape (N, C, H,
// W) giving outputs of shape y_shape (N, K, P, Q) (a new (groups, panels, C/groups*R*S, width) array of
// w's dtype), or None when such a forward at the current thread count does not run on them.
py::object conv2d_pack_gemm_weights(const py::object& w, const Shape& x_shape, const Shape& y_shape, Pair stride,
                                    Pair padding, Pair dilation, int64_t groups) {
  const char* op = "conv2d_pack_gemm_weights";
  py::object packed = py::none();
  if (is_bfloat16(w)) return packed;
  for (const auto& [name, shape] : {std::pair{"x_shape", &x_shape}, std::pair{"y_shape", &y_shape}})
    if (shape->size() != 4)
      throw py::value_error(std::string(op) + ": " + name + " must have 4 entries, got " + shape_str(*shape));
  dispatch_float(w, op, "w", [&](auto zero) {
    using T = decltype(zero);
    const cpu::Conv2dShape s =
        conv_shape(op, {"x", x_shape}, {"w", shape_with_ndim(w, op, "w", 4, "(K, C/groups, R, S)")}, {"y", y_shape},
                   {stride, padding, dilation, groups});
    const std::array<int64_t, 4> shape = cpu::conv2d_gemm_weights_shape<T>(s);
    if (shape[0] == 0) return;
    KernelArrays<T> arrays(op, "w");
    const T* wp = arrays.input(w, "w", weight_extent(s));
    py::array_t<T> out(std::vector<int64_t>(shape.begin(), shape.end()));
    T* gp = out.mutable_data();
    {
      py::gil_scoped_release release;
      cpu::conv2d_pack_gemm_weights(s, wp, gp);
    }
    packed = std::move(out);
  });
  return packed;
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
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("winograd_weights") = py::none(),
        py::arg("gemm_weights") = py::none(), py::arg("relu") = false);
  m.def("last_conv2d_forward_path", &cpu::last_conv2d_forward_path,
        "The path the last CPU conv2d forward took (depthwise, winograd, im2col, im2col_row_blocks, ...).");
  m.def("last_winograd_tile", &cpu::winograd_last_forward_tile,
        "The output tile (2 or 4) of the Winograd F(tile x tile, 3x3) the last winograd forward ran (0 before one).");
  m.def("conv2d_pack_winograd_weights", &conv2d_pack_winograd_weights, py::arg("w"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("x_shape") = py::none(),
        py::arg("y_shape") = py::none());
  m.def("conv2d_pack_gemm_weights", &conv2d_pack_gemm_weights, py::arg("w"), py::arg("x_shape"), py::arg("y_shape"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("grad_y"), py::arg("w"), py::arg("grad_x"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("grad_y"), py::arg("x"), py::arg("grad_w"),
        py::arg("grad_bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
}

}  // namespace deepkern::python
