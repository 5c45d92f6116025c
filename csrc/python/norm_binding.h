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

// The layer and group norm bindings' arrays (and batch norm's backward): x, out, grad_out and
// grad_x C-contiguous of `data` elements of one float dtype; weight, bias, grad_weight and grad_bias
// `params` elements of it (None where not given or not wanted); save_mean and the saved inverse
// standard deviations (named `rstd_name`) `stats` float64 elements. Written arrays are writeable
// and overlap no other argument.
struct RowNormExtents {
  int64_t data, params, stats;
  const char* rstd_name = "save_rstd";
};

inline void check_eps(const char* op, double eps) {
  if (!std::isfinite(eps) || eps < 0)
    throw py::value_error(std::string(op) + ": eps must be finite and >= 0, got " + std::to_string(eps));
}

// Layer norm: `shape` is (rows, len), each in [0, 2**62) with rows * len within int64; the data
// arrays hold rows * len elements, the parameters len, the statistics rows.
inline RowNormExtents layer_norm_extents(const char* op, const std::array<int64_t, 2>& shape) {
  return {checked_sizes<2>(op, shape, {"rows", "len"}), shape[1], shape[0]};
}

// Group norm: `shape` is (n, c, s) as batch norm's, `groups` >= 1 divides c; the data arrays hold
// n * c * s elements, the parameters c, the statistics n * groups.
inline RowNormExtents group_norm_extents(const char* op, const NormShapeTuple& shape, int64_t groups) {
  const int64_t elements = checked_sizes<3>(op, shape, {"n", "c", "s"});
  if (groups < 1 || shape[1] % groups != 0)
    throw py::value_error(std::string(op) + ": groups must be >= 1 and divide the channels c = " +
                          std::to_string(shape[1]) + ", got groups = " + std::to_string(groups));
  return {elements, shape[1], checked_product(op, "n * groups", {shape[0], groups})};
}

}  // namespace deepkern::python
