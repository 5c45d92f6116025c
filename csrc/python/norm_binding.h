// The normalization bindings of every device (deepkern._C: bind_norm.cpp, deepkern._cuda:
// bind_cuda_norm.cpp): one shape tuple and one set of option checks.
//
// Contract of both bindings: x, out, grad_out and grad_x are C-contiguous arrays of n * c * s
// elements ((N, C, spatial...) seen as (n, c, s), any shape) of one float dtype (x's, or
// grad_out's); weight, bias, running_mean, running_var and grad_weight, grad_bias hold c elements of
// that dtype (None where not given or not wanted); save_mean and save_invstd hold c float64
// elements. Written arrays (the running statistics among them, read only when not training)
// are writeable and overlap no other argument. `shape` is (n, c, s), each in [0, 2**62)
// with n * c * s within int64; training needs n * s > 1, evaluation the running statistics.
#pragma once
#include <pybind11/pybind11.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>

#include "cpu/norm/norm.h"
#include "python/boundary.h"

namespace deepkern::python {

using NormShapeTuple = std::array<int64_t, 3>;

// Each of `shape`'s sizes (named by `names`) in [0, 2**62) and their product within int64, which
// it returns.
template <size_t N>
int64_t checked_sizes(const char* op, const std::array<int64_t, N>& shape, const std::array<const char*, N>& names) {
  for (size_t i = 0; i < N; ++i)
    if (shape[i] < 0 || shape[i] >= (int64_t(1) << 62))
      throw py::value_error(std::string(op) + ": shape[" + std::to_string(i) + "] (" + names[i] +
                            ") must be in [0, 2**62), got " + std::to_string(shape[i]));
  int64_t elements = 1;
  std::string what;
  for (size_t i = 0; i < N; ++i) what += std::string(i ? " * " : "") + names[i];
  for (size_t i = 0; i < N; ++i) elements = checked_product(op, what.c_str(), {elements, shape[i]});
  return elements;
}

// The kernel's shape from `shape`, checked as the contract says, and its element count.
inline cpu::BatchNormShape norm_shape(const char* op, const NormShapeTuple& shape, int64_t* elements) {
  *elements = checked_sizes<3>(op, shape, {"n", "c", "s"});
  return {shape[0], shape[1], shape[2]};
}

// The forward's options: training with more than one value per channel, or evaluation with the
// running statistics; momentum and eps finite, eps >= 0.
inline void check_forward_options(const char* op, const cpu::BatchNormShape& s, bool training, bool has_running,
                                  double momentum, double eps) {
  if (training && s.c > 0 && s.n * s.s <= 1)
    throw py::value_error(std::string(op) + ": training needs more than 1 value per channel, got n * s = " +
                          std::to_string(s.n * s.s) + " for shape " + shape_str({s.n, s.c, s.s}));
  if (!training && !has_running)
    throw py::value_error(std::string(op) + ": running_mean and running_var are needed when not training");
  if (!std::isfinite(momentum))
    throw py::value_error(std::string(op) + ": momentum must be finite, got " + std::to_string(momentum));
  if (!std::isfinite(eps) || eps < 0)
    throw py::value_error(std::string(op) + ": eps must be finite and >= 0, got " + std::to_string(eps));
}

}  // namespace deepkern::python
