// bfloat16 matrix multiply on the CPU: C = epilogue(alpha * A @ B + beta * C), A and B bfloat16,
// products accumulated in float32, C float32 or bfloat16.
//
// Three tiers, chosen by the ISA dispatch (family gemm_bf16): AMX tiles (TDPBF16PS) under the amx
// ISA, VDPBF16PS under avx512 on CPUs with AVX512-BF16, and everywhere else the emulated kernels
// (bfloat16 widened to float32, float32 multiply-adds). Matrices are pointers plus element strides
// (any strides, as gemm<T>); the packing absorbs them.
#pragma once
#include <cstdint>

#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {

// A bfloat16 number: the upper 16 bits of a float32.
struct bf16 {
  uint16_t bits;
};

// The type a computation on T's values runs in (an LSTM layer, a depthwise convolution's kernels):
// float for bf16, T itself otherwise.
template <class T>
struct AccumulatorOf {
  using type = T;
};
template <>
struct AccumulatorOf<bf16> {
  using type = float;
};
template <class T>
using Acc = typename AccumulatorOf<T>::type;

// C (m x n) = epilogue(alpha * A (m x k) @ B (k x n) + beta * C), OutT = float or bf16; the bias
// (GemmEpilogue's, of OutT) and the products are added in float32 and C is rounded to OutT once
// (to nearest even). C is not read when beta == 0 and must not overlap A, B or the bias.
template <class OutT>
void gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, StridedMatrix<const bf16> a, StridedMatrix<const bf16> b,
               float beta, StridedMatrix<OutT> c, const GemmEpilogue<OutT>& epilogue, int threads = 0);

// The width of B's packed panels on every tier (kernels.h): 32 columns.
constexpr int kBf16PanelWidth = 32;

// A B that is never stored as a matrix (the columns of a convolution, computed from its input):
// pack(j0, cols, k_padded, dst) writes B's columns j0 .. j0 + cols as packed panels of
// kBf16PanelWidth columns (kernels.h's layout: panel q at dst + q * k_padded * kBf16PanelWidth, VNNI
// pair rows), zero past B's k rows up to k_padded and past cols up to the last panel's end. Called
// from any of the GEMM's threads at once.
struct Bf16PanelWriter {
  virtual void pack(int64_t j0, int64_t cols, int64_t k_padded, bf16* dst) const = 0;

 protected:
  ~Bf16PanelWriter() = default;
};

// gemm_bf16 with B given by its panel writer (always the blocked algorithm, never C^T = B^T A^T).
template <class OutT>
void gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, StridedMatrix<const bf16> a, const Bf16PanelWriter& b,
               float beta, StridedMatrix<OutT> c, const GemmEpilogue<OutT>& epilogue, int threads = 0);

// gemm_bf16 over `batch` problems of one shape at element offsets, as gemm_batched.
template <class OutT>
void gemm_bf16_batched(int64_t batch, const int64_t* a_offsets, const int64_t* b_offsets, const int64_t* c_offsets,
                       int64_t m, int64_t n, int64_t k, float alpha, StridedMatrix<const bf16> a,
                       StridedMatrix<const bf16> b, float beta, StridedMatrix<OutT> c,
                       const GemmEpilogue<OutT>& epilogue);

// B (k x n) packed once for many products (an RNN's weights multiply every step), as PackedB
// (gemm.h) for the float GEMM: valid for the tier that was active when it was packed.
struct PackedBf16B {
  int64_t k = 0, n = 0, k_padded = 0;
  const char* kernel = nullptr;
  const bf16* panels = nullptr;
};

// Elements of the buffer that pack_bf16_b_groups fills for a k x n B on the active tier.
int64_t packed_bf16_b_size(int64_t k, int64_t n);

// Packs a B whose columns come in `groups` groups of n, group g's first column at b.data + g *
// group_offset, as one B of groups * n columns into packed_bf16_b_size(k, groups * n) elements.
PackedBf16B pack_bf16_b_groups(int64_t k, int64_t n, int groups, int64_t group_offset, StridedMatrix<const bf16> b,
                               bf16* panels);

// gemm_bf16 with a float32 C and B from pack_bf16_b_groups, on the calling thread. Throws
// std::runtime_error if the tier changed since B was packed.
void gemm_bf16_prepacked(int64_t m, float alpha, StridedMatrix<const bf16> a, const PackedBf16B& b, float beta,
                         StridedMatrix<float> c, const GemmEpilogue<float>& epilogue);

// The bfloat16 GEMM's peak GFLOP/s on `threads` threads for about `seconds`: chains of the active
// tier's instruction (TDPBF16PS, VDPBF16PS); the float32 FMA peak for the emulated kernels.
double measure_bf16_gflops(int threads, double seconds);

// The path the last gemm_bf16() or gemm_bf16_batched() problem of the process took: "gemv" (one
// row of C), "blocked" (packed panels), each prefixed "transposed " where it ran as C^T = B^T A^T;
// "" before the first. For tests and benchmarks.
const char* last_gemm_bf16_path();

// The kernel gemm_bf16 uses now ("amx 32x32", "avx512_bf16 12x32", "emulated avx2 4x32", ...).
const char* gemm_bf16_kernel_name();

}  // namespace deepkern::cpu
