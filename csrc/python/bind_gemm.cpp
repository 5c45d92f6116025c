// deepkern._C, gemm: batched C = epilogue(alpha * A @ B + beta * C) (deepkern.ops.gemm).
#include <pybind11/pybind11.h>

#include <climits>
#include <cstdint>
#include <string>

#include "cpu/gemm/gemm.h"
#include "python/boundary.h"

namespace deepkern::python {
namespace {

constexpr const char* kGemm = "gemm";

// The epilogue's bias axis: 0 exactly when bias is None, else 1 (one bias per row of C) or 2 (one
// per column).
cpu::BiasAxis bias_axis_of(int bias_axis, bool has_bias) {
  if (bias_axis < 0 || bias_axis > 2 || (bias_axis == 0) == has_bias)
    throw py::value_error(std::string(kGemm) + ": bias_axis must be 1 (rows) or 2 (cols) with a bias and 0 without, " +
                          "got " + std::to_string(bias_axis) + (has_bias ? " with a bias" : " without one"));
  return static_cast<cpu::BiasAxis>(bias_axis);
}

// Contract: for each i < len(a_offsets), C_i = epilogue(alpha * A_i @ B_i + beta * C_i), where A_i
// (m x k), B_i (k x n) and C_i (m x n) are the last two axes of a, b and c (m and n read off c; any
// strides, negative and zero ones included) starting a_offsets[i], b_offsets[i], c_offsets[i]
// elements from each array's first element, and every matrix lies inside its array. a, b, c and
// bias share one float dtype; the offsets are 1-D int64 arrays of one length; bias is None or a
// contiguous (m,) (bias_axis 1: bias[r] added to row r) or (n,) (bias_axis 2: bias[j] to column j);
// relu clamps after it. c is written (read only when beta != 0) and overlaps no other argument.
void gemm(const py::object& a, const py::object& b, const py::object& c, const py::object& a_offsets,
          const py::object& b_offsets, const py::object& c_offsets, int64_t k, double alpha, double beta,
          const py::object& bias, int bias_axis, bool relu) {
  dispatch_float(a, kGemm, "a", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(kGemm, "a");
    const Shape c_shape = shape_with_ndim(c, kGemm, "c", 2, INT_MAX, "(..., m, n)");
    const int64_t m = c_shape[c_shape.size() - 2], n = c_shape.back();
    const int64_t batch = shape_with_ndim(a_offsets, kGemm, "a_offsets", 1, "(batch,)")[0];
    const int64_t* a_off = arrays.template input<int64_t>(a_offsets, "a_offsets", {batch});
    const int64_t* b_off = arrays.template input<int64_t>(b_offsets, "b_offsets", {batch});
    const int64_t* c_off = arrays.template input<int64_t>(c_offsets, "c_offsets", {batch});
    const StridedMatrices A = arrays.matrices(a, "a", m, k, a_off, batch, "a_offsets", Access::read);
    const StridedMatrices B = arrays.matrices(b, "b", k, n, b_off, batch, "b_offsets", Access::read);
    const StridedMatrices C = arrays.matrices(c, "c", m, n, c_off, batch, "c_offsets", Access::write);
    cpu::GemmEpilogue<T> epilogue;
    epilogue.bias_axis = bias_axis_of(bias_axis, !bias.is_none());
    epilogue.bias = arrays.optional_input(bias, "bias", {epilogue.bias_axis == cpu::BiasAxis::rows ? m : n});
    epilogue.relu = relu;
    py::gil_scoped_release release;
    cpu::gemm_batched<T>(batch, a_off, b_off, c_off, m, n, k, static_cast<T>(alpha),
                         {static_cast<const T*>(A.data), A.row_stride, A.col_stride},
                         {static_cast<const T*>(B.data), B.row_stride, B.col_stride}, static_cast<T>(beta),
                         {static_cast<T*>(C.data), C.row_stride, C.col_stride}, epilogue);
  });
}

}  // namespace

void bind_gemm(py::module_& m) {
  // The micro-kernel gemm runs now ("avx512 12x32", ...), for show_config().
  m.def("gemm_kernel_name", &cpu::gemm_kernel_name, py::arg("double_precision") = false);
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("a_offsets"), py::arg("b_offsets"),
        py::arg("c_offsets"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("bias"), py::arg("bias_axis"),
        py::arg("relu"));
}

}  // namespace deepkern::python
