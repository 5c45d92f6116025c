// The convolution bindings' shape check, shared by deepkern._C (bind_conv.cpp) and deepkern._cuda
// (bind_cuda_conv.cpp): the same options, the same messages.
#pragma once
#include <cstdint>
#include <utility>

#include "cpu/conv/conv.h"
#include "python/boundary.h"

namespace deepkern::python {

// A convolution's options, as every binding takes them.
struct ConvOptions {
  std::pair<int64_t, int64_t> stride, padding, dilation;
  int64_t groups;
};

// An array's shape (4 axes, checked by the caller) under the name the call gives the array.
struct NamedShape {
  const char* name;
  Shape shape;
};

// The convolution's shape, read off x (N, C, H, W), w (K, C/groups, R, S) and y (N, K, P, Q) after
// checking that they fit each other and the options: strides and dilations >= 1, paddings >= 0,
// groups dividing C and K, P and Q as the options give with the same padding at the end or one
// more there (PyTorch's padding="same" with an odd total). ValueError naming `op` and the arrays.
cpu::Conv2dShape conv_shape(const char* op, const NamedShape& x, const NamedShape& w, const NamedShape& y,
                            const ConvOptions& o);

}  // namespace deepkern::python
