// Matrix multiply on the GPU: the problem every GEMM kernel takes, and the entry points. Plain C++
// (no CUDA headers beyond the stream type), so bindings include it.
//
//   C[i] = relu?(alpha * A[i] @ B[i] + beta * C[i] + bias)   for each matrix i of the batch
//
// A is m x k, B k x n, C m x n, each with any element strides (rows and columns, in elements, may be
// negative or zero for broadcast operands except C's); matrix i of X starts at x + x_offsets[i]
// (elements). beta == 0 means C is not read (NaN in C stays out of the result), as in BLAS.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/array.h"

namespace deepkern::cuda {

// Which units compute: FP32 on the CUDA cores, or the tensor cores with FP32 accumulation on inputs
// rounded to TF32, or BF16 inputs (A, B and C bfloat16).
enum class GemmPrecision : std::uint8_t { fp32, tf32, bf16 };

enum class BiasAxis : std::uint8_t { none, rows, cols };  // bias[r] per row (length m), or bias[c] per column (n)

struct GemmOperand {
  const void* data = nullptr;             // element (0, 0) of matrix 0
  std::int64_t row_stride = 0;            // elements between (r, c) and (r + 1, c)
  std::int64_t col_stride = 0;            // elements between (r, c) and (r, c + 1)
  const std::int64_t* offsets = nullptr;  // device array of `batch` element offsets; nullptr: all 0
  // Every offset is a multiple of this (0: all are 0), so the host can tell whether all matrices
  // keep the alignment of `data` without reading the device array. 1 when nothing is known.
  std::int64_t offset_divisor = 1;
  // True when the caller knows that offsets[i] == i * batch_stride for every i (a strided batch),
  // so kernels that take one stride for the whole batch need not read `offsets` back.
  bool strided_batch = false;
  std::int64_t batch_stride = 0;
};

struct GemmProblem {
  std::int64_t m = 0, n = 0, k = 0, batch = 1;
  GemmPrecision precision = GemmPrecision::fp32;
  DType dtype = DType::float32;  // of A, B, C and bias: float32 (fp32, tf32) or bfloat16 (bf16)
  GemmOperand a, b;
  void* c = nullptr;  // element (0, 0) of C's matrix 0; C is written through c_row_stride, c_col_stride
  std::int64_t c_row_stride = 0, c_col_stride = 0;
  const std::int64_t* c_offsets = nullptr;  // as GemmOperand::offsets
  std::int64_t c_offset_divisor = 1;        // as GemmOperand::offset_divisor
  float alpha = 1.0f, beta = 0.0f;
  const void* bias = nullptr;  // contiguous, dtype as C; used when bias_axis != none
  BiasAxis bias_axis = BiasAxis::none;
  bool relu = false;
};

// Whether every matrix of the operand starting at `data` with offsets that are multiples of
// `offset_divisor` (see GemmOperand) is `bytes`-aligned, for elements of `itemsize` bytes.
inline bool matrices_aligned(const void* data, std::int64_t offset_divisor, std::int64_t itemsize, std::int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(data) % bytes == 0 && (offset_divisor * itemsize) % bytes == 0;
}

// Runs `problem` on `stream` with the fastest kernel that takes it on the current device (or the
// one set_gemm_kernel forces). The caller has checked shapes, dtypes and that C overlaps nothing it
// reads. A forced kernel that cannot take the problem throws std::invalid_argument saying why.
void gemm(const GemmProblem& problem, cudaStream_t stream);

// The kernels gemm() chooses from. automatic: the sm90 kernel where it takes the problem, else
// mma for tf32/bf16 and simt for fp32.
enum class GemmKernel : std::uint8_t { automatic, simt, mma, sm90 };
// Process-wide choice for tests and benchmarks (automatic by default).
void set_gemm_kernel(GemmKernel kernel);
GemmKernel gemm_kernel();
// The kernel the last gemm() call ran (automatic before any call, and after a call with nothing to
// compute: an empty C).
GemmKernel last_gemm_kernel();
const char* gemm_kernel_name(GemmKernel kernel);  // "automatic", "simt", "mma", "sm90"

// FP32 on the CUDA cores: takes float32 data (fp32 and tf32 problems; it computes in full FP32).
void gemm_simt(const GemmProblem& problem, cudaStream_t stream);
// mma.sync on the tensor cores (sm_80+): takes tf32 (float32 data) and bf16 problems.
void gemm_mma(const GemmProblem& problem, cudaStream_t stream);

// The Hopper kernel (wgmma fed by TMA, sm_90a): runs `problem` and returns true when it takes it
// (an sm_90 device, the precision and layouts it supports, TMA's alignment), false otherwise
// without doing anything. Built only when the architectures include 90a (DEEPKERN_HAVE_SM90_GEMM).
bool gemm_sm90(const GemmProblem& problem, cudaStream_t stream);

}  // namespace deepkern::cuda
