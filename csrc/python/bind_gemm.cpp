// deepkern._C, gemm: batched C = epilogue(alpha * A @ B + beta * C) (deepkern.ops.gemm).
#include <pybind11/pybind11.h>

#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cpu/gemm/gemm.h"
#include "cpu/gemm_bf16/gemm_bf16.h"
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

// One batched call with inputs of type In and C (and bias) of type Out: float/float,
// double/double, or bfloat16 inputs with a bfloat16 or float32 C (gemm_bf16: float32 accumulation).
template <class In, class Out>
void run_gemm(const py::object& a, const py::object& b, const py::object& c, const py::object& a_offsets,
              const py::object& b_offsets, const py::object& c_offsets, int64_t k, double alpha, double beta,
              const py::object& bias, int bias_axis, bool relu) {
  KernelArrays<Out> arrays(kGemm, std::is_same_v<In, Out> ? "a" : "c");
  const Shape c_shape = shape_with_ndim(c, kGemm, "c", 2, INT_MAX, "(..., m, n)");
  const int64_t m = c_shape[c_shape.size() - 2], n = c_shape.back();
  const int64_t batch = shape_with_ndim(a_offsets, kGemm, "a_offsets", 1, "(batch,)")[0];
  const int64_t* a_off = arrays.template input<int64_t>(a_offsets, "a_offsets", {batch});
  const int64_t* b_off = arrays.template input<int64_t>(b_offsets, "b_offsets", {batch});
  const int64_t* c_off = arrays.template input<int64_t>(c_offsets, "c_offsets", {batch});
  const StridedMatrices A = arrays.template matrices<In>(a, "a", m, k, a_off, batch, "a_offsets", Access::read);
  const StridedMatrices B = arrays.template matrices<In>(b, "b", k, n, b_off, batch, "b_offsets", Access::read);
  const StridedMatrices C = arrays.matrices(c, "c", m, n, c_off, batch, "c_offsets", Access::write);
  cpu::GemmEpilogue<Out> epilogue;
  epilogue.bias_axis = bias_axis_of(bias_axis, !bias.is_none());
  epilogue.bias = arrays.optional_input(bias, "bias", {epilogue.bias_axis == cpu::BiasAxis::rows ? m : n});
  epilogue.relu = relu;
  const cpu::StridedMatrix<const In> a_mat{static_cast<const In*>(A.data), A.row_stride, A.col_stride};
  const cpu::StridedMatrix<const In> b_mat{static_cast<const In*>(B.data), B.row_stride, B.col_stride};
  const cpu::StridedMatrix<Out> c_mat{static_cast<Out*>(C.data), C.row_stride, C.col_stride};
  py::gil_scoped_release release;
  if constexpr (std::is_same_v<In, cpu::bf16>)
    cpu::gemm_bf16_batched<Out>(batch, a_off, b_off, c_off, m, n, k, static_cast<float>(alpha), a_mat, b_mat,
                                static_cast<float>(beta), c_mat, epilogue);
  else
    cpu::gemm_batched<Out>(batch, a_off, b_off, c_off, m, n, k, static_cast<Out>(alpha), a_mat, b_mat,
                           static_cast<Out>(beta), c_mat, epilogue);
}

// Contract: for each i < len(a_offsets), C_i = epilogue(alpha * A_i @ B_i + beta * C_i), where A_i
// (m x k), B_i (k x n) and C_i (m x n) are the last two axes of a, b and c (m and n read off c; any
// strides, negative and zero ones included) starting a_offsets[i], b_offsets[i], c_offsets[i]
// elements from each array's first element, and every matrix lies inside its array. a, b, c and
// bias share one float dtype (float32, float64 or bfloat16; with bfloat16 a and b, c and bias may
// also be float32: the bfloat16 products are accumulated in float32 either way); the offsets are
// 1-D int64 arrays of one length; bias is None or a contiguous (m,) (bias_axis 1: bias[r] added to
// row r) or (n,) (bias_axis 2: bias[j] to column j); relu clamps after it. c is written (read only
// when beta != 0) and overlaps no other argument.
void gemm(const py::object& a, const py::object& b, const py::object& c, const py::object& a_offsets,
          const py::object& b_offsets, const py::object& c_offsets, int64_t k, double alpha, double beta,
          const py::object& bias, int bias_axis, bool relu) {
  if (is_bfloat16(a)) {
    if (py::isinstance<py::array_t<float>>(c))
      return run_gemm<cpu::bf16, float>(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis,
                                        relu);
    return run_gemm<cpu::bf16, cpu::bf16>(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis,
                                          relu);
  }
  if (is_float32(a, kGemm, "a"))
    return run_gemm<float, float>(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis, relu);
  run_gemm<double, double>(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis, relu);
}

}  // namespace

void bind_gemm(py::module_& m) {
  // The micro-kernel gemm runs now ("avx512 12x32", ...), for show_config().
  m.def("gemm_kernel_name", &cpu::gemm_kernel_name, py::arg("double_precision") = false);
  m.def("last_gemm_path", &cpu::last_gemm_path,
        "The path the last CPU float32/float64 GEMM problem took: gemv, dot (the dot-product kernel), blocked or "
        "transposed blocked (as C^T = B^T A^T).");
  // The bfloat16 GEMM's kernel now ("amx 32x32", "avx512_bf16 12x32", "emulated avx2 4x32", ...).
  m.def("gemm_bf16_kernel_name", &cpu::gemm_bf16_kernel_name);
  m.def("last_gemm_bf16_path", &cpu::last_gemm_bf16_path,
        "The path the last CPU bfloat16 GEMM problem took: gemv or blocked, prefixed 'transposed ' where it ran as "
        "C^T = B^T A^T.");
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("a_offsets"), py::arg("b_offsets"),
        py::arg("c_offsets"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("bias"), py::arg("bias_axis"),
        py::arg("relu"));
}

}  // namespace deepkern::python
