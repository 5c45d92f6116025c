// The bfloat16 GEMM's micro-kernel contract and per-ISA kernel tables.
//
// Packed layouts (built by the driver, gemm_bf16.cpp), with kp = the K block rounded up to k_align:
//   A panel: mr rows of kp bfloat16, row-major: A(i, p) = a[i * lda + p], lda = kp; rows past M
//            and columns past K are zero.
//   B panel: kp / 2 rows of nr column pairs: B(p, j) = b[(p / 2 * nr + j) * 2 + p % 2] (VNNI pairs:
//            two consecutive K values of one column side by side); columns past N and rows past K
//            are zero.
// tile(kp, a, lda, b, acc, ldacc): acc (mr x nr float32, acc[i * ldacc + j]) += A panel @ B panel.
// A tier with strip kernels also gets A in place (the caller's rows, lda apart) and the depth
// itself, which may be odd: its last A column then pairs with B's zero.
// begin()/end() (may be null) run around a thread's tile calls: the AMX kernels load and release
// their tile configuration there. peak_chains(iters) (null for the emulated kernels) runs `iters`
// steps of independent chains of the tier's instruction in registers, peak_flops_per_iteration
// floating-point operations each (a multiply-add counts 2), for the roofline's bfloat16 peak.
// strip(rows, s) (null where a tier has none) multiplies a few rows without packing A, for the small
// row counts of a recurrent step (Bf16Strip below); 1 <= rows <= strip_rows.
// pair_rows(r0, r1, cols, panel_stride, dst) (null where the driver's own loop serves) writes one
// pair row of B into every panel: B(2q, j) = r0[j] and B(2q + 1, j) = r1[j] for j < cols, zero
// from cols to the end of the last panel, the pair row of panel 0 at dst and panel q's at
// dst + q * panel_stride.
// transpose_a(src, cs, rows, depth, kp, dst) (null where the driver's loop serves) packs A's rows
// from a transposed A, column p's rows next to each other at src + p * cs: dst[i * kp + p] =
// src[p * cs + i] for i < rows, p < depth (the padding is the driver's).
// transpose_b(src, cs, width, pairs, dst) (null where the driver's loop serves) packs one B panel's
// pair rows 0 .. pairs - 1 from a transposed B, column j's K values next to each other at
// src + j * cs: B(p, j) = src[j * cs + p] for j < width, p < 2 * pairs; columns from width to nr
// zero.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::cpu {

using Bf16TileKernel = void (*)(int64_t kp, const bf16* a, int64_t lda, const bf16* b, float* acc, int64_t ldacc);

// One strip product: C (rows x cols float32, c[i * ldc + j]) = (accumulate ? C : 0) + bias (a row of
// cols values or null) + A (rows x k bfloat16, a[i * lda + p]) @ B, B's column panels as above with
// panel q at b + q * panel_stride and its pair row 0 at b. An odd k pairs A's last column with zero.
// Nothing past column `cols` of C, B or the bias, or past column k of A, is read or written.
struct Bf16Strip {
  int64_t k;
  const bf16* a;
  int64_t lda;
  const bf16* b;
  int64_t panel_stride;
  float* c;
  int64_t ldc, cols;
  const float* bias;
  bool accumulate;
};
using Bf16StripKernel = void (*)(int rows, const Bf16Strip& s);

struct Bf16GemmKernels {
  const char* name;
  int mr, nr;          // register (or tile) block of C
  int k_align;         // kp is a multiple of it
  int64_t mc, kc, nc;  // cache blocks: A block mc x kc (L2), B block kc x nc
  Bf16TileKernel tile;
  void (*begin)();
  void (*end)();
  float (*peak_chains)(int64_t iters);
  double peak_flops_per_iteration;
  Bf16StripKernel strip = nullptr;
  int strip_rows = 0;
  void (*pair_rows)(const bf16* r0, const bf16* r1, int64_t cols, int64_t panel_stride, bf16* dst) = nullptr;
  void (*transpose_a)(const bf16* src, int64_t cs, int64_t rows, int64_t depth, int64_t kp, bf16* dst) = nullptr;
  void (*transpose_b)(const bf16* src, int64_t cs, int64_t width, int64_t pairs, bf16* dst) = nullptr;
};

// The emulated kernels, one per ISA (kernels_emulated.cpp, compiled per ISA).
DEEPKERN_DECLARE_ISA_TABLES(Bf16GemmKernels, gemm_bf16_emulated)

// One row of the driver's merge: dst[j * stride] = epilogue(alpha * acc[j] + beta * dst[j * stride]
// (dst not read where beta is 0) + row_bias + col_bias[j] (col_bias may be null)), then ReLU if
// asked (a NaN stays a NaN), rounded to OutT once (bfloat16: to nearest even, a NaN made quiet).
template <class OutT>
struct Bf16MergeRow {
  const float* acc;
  int64_t n;
  float alpha, beta, row_bias;
  const OutT* col_bias;
  bool relu;
  OutT* dst;
  int64_t stride;
};
struct Bf16MergeKernels {
  void (*to_float)(const Bf16MergeRow<float>& row);
  void (*to_bf16)(const Bf16MergeRow<bf16>& row);
};

// The merge rows, one table per ISA (kernels_emulated.cpp, vectorized by the compiler for each).
DEEPKERN_DECLARE_ISA_TABLES(Bf16MergeKernels, gemm_bf16_merge)

#if DEEPKERN_X86
namespace avx512 {
extern const Bf16GemmKernels gemm_bf16_dpbf16;  // kernels_avx512_bf16.cpp (AVX512-BF16)
extern const Bf16GemmKernels gemm_bf16_amx;     // kernels_amx.cpp (AMX-TILE, AMX-BF16)
}  // namespace avx512
#endif

}  // namespace deepkern::cpu
