// Device-side pieces shared by the GEMM kernels (include from .cu files only): element conversion,
// the operands seen as MN x K matrices, the per-matrix pointers of a batch entry and the epilogue.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemm/gemm.h"

namespace deepkern::cuda::gemm_device {

// Batch entries per launch: the kernels take the entry from blockIdx.y (gridDim.y <= 65535) and
// the launchers loop over larger batches.
constexpr std::int64_t kMaxGridY = 65535;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);  // round to nearest even
}

// An operand of one batch entry as an MN x K matrix: element (i, kk) at data[i * mn_stride +
// kk * k_stride]. A is M x K as it is (mn = row); B is seen transposed, N x K (mn = its column).
// Both kernels tile A and B identically through this view.
template <class T>
struct OperandView {
  const T* data;
  std::int64_t mn_stride, k_stride;
};

// A's (operand_is_b false) or B's view for batch entry `entry`.
template <class T>
__device__ __forceinline__ OperandView<T> operand_view(const GemmOperand& op, bool operand_is_b, std::int64_t entry) {
  const std::int64_t offset = op.offsets != nullptr ? op.offsets[entry] : 0;
  const T* data = static_cast<const T*>(op.data) + offset;
  return operand_is_b ? OperandView<T>{data, op.col_stride, op.row_stride}
                      : OperandView<T>{data, op.row_stride, op.col_stride};
}

// C's matrix of batch entry `entry`.
template <class T>
__device__ __forceinline__ T* output_matrix(const GemmProblem& p, std::int64_t entry) {
  return static_cast<T*>(p.c) + (p.c_offsets != nullptr ? p.c_offsets[entry] : 0);
}

// Writes C(row, col) = relu?(alpha * acc + beta * C(row, col) + bias) for an element inside the
// matrix (others are skipped). C is read only when beta != 0; with k == 0 the product is exactly 0
// (alpha may be infinite). ReLU keeps NaN, as the CPU kernels do.
template <class T>
__device__ __forceinline__ void store_result(const GemmProblem& p, T* c, std::int64_t row, std::int64_t col,
                                             float acc) {
  if (row >= p.m || col >= p.n) return;
  T* out = c + row * p.c_row_stride + col * p.c_col_stride;
  float v = p.k == 0 ? 0.0f : p.alpha * acc;
  if (p.beta != 0.0f) v = fmaf(p.beta, to_float(*out), v);
  if (p.bias_axis != BiasAxis::none)
    v += to_float(static_cast<const T*>(p.bias)[p.bias_axis == BiasAxis::rows ? row : col]);
  if (p.relu && v < 0.0f) v = 0.0f;
  *out = from_float<T>(v);
}

}  // namespace deepkern::cuda::gemm_device
