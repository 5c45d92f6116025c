// The convolution bindings' shape check (conv_shape.h).
#include "python/conv_shape.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>

namespace deepkern::python {
namespace {

using Pair = std::pair<int64_t, int64_t>;

std::string pair_str(Pair p) { return shape_str({p.first, p.second}); }

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

}  // namespace

cpu::Conv2dShape conv_shape(const char* op, const NamedShape& x, const NamedShape& w, const NamedShape& y,
                            const ConvOptions& o) {
  const Shape &xs = x.shape, &ws = w.shape, &ys = y.shape;
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

}  // namespace deepkern::python
