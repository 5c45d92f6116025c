// AVX-512 kernels (compiled with -mavx512f/vl/dq/bw; used only when CPUID reports them).
#include <immintrin.h>

#include <algorithm>

#include "cpu/gemm/portable_kernels.h"
#include "cpu/gemm/simd_tile.h"

namespace deepkern::cpu {
namespace {

struct F32x16 {
  using scalar = float;
  using reg = __m512;
  static constexpr int width = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg load_first(const float* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static float sum(reg x) { return _mm512_reduce_add_ps(x); }
  static void store(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  // max(0, x) with 0 first: a NaN in x is passed through, like NumPy and PyTorch.
  static reg relu(reg x) { return _mm512_max_ps(_mm512_setzero_ps(), x); }
};

struct F64x8 {
  using scalar = double;
  using reg = __m512d;
  static constexpr int width = 8;
  static reg zero() { return _mm512_setzero_pd(); }
  static reg set1(double x) { return _mm512_set1_pd(x); }
  static reg load(const double* p) { return _mm512_loadu_pd(p); }
  static reg load_first(const double* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
  static double sum(reg x) { return _mm512_reduce_add_pd(x); }
  static void store(double* p, reg x) { _mm512_storeu_pd(p, x); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static reg relu(reg x) { return _mm512_max_pd(_mm512_setzero_pd(), x); }
};

// Transposes the 16 x 16 block in r (r[i] = row i) in place: unpacks interleave row pairs, the
// in-lane shuffles complete 4 x 4 blocks, two rounds of 128-bit lane shuffles move the blocks.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(u[i + j], u[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(u[i + j], u[i + j + 4], 0xDD);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}

// TransposeKernel for float in 16 x 16 blocks (masked loads and stores at the edges). Each block
// of depth is finished across the whole width before the next, so every line of dst is written
// whole while it is in L1 (the SSE 4 x 4 version wrote each line of a 32-wide B panel in eight
// pieces far apart: a W_hh of 2048 x 512 packed at 1.4 elements/ns). Each of the block's rows is
// prefetched kTransposeAhead elements ahead: up to 16 rows far apart, read a line at a time, are
// more streams than the hardware prefetcher follows (Zen 5: a 512-channel 3x3 layer at 7 x 7, whose
// 9.4 MB of weights are packed per call, 11-12% faster at batch 1, 5% at batch 4; the strided 1x1
// downsample 8-12%; GEMMs 4096 x 64 x 576 6-18% and 196 x 512 x 4608 5%, the others tried within 1.5%).
constexpr int64_t kTransposeAhead = 64;

void transpose_f32(int64_t width, int64_t depth, const float* x, int64_t ws, int64_t ld, float* dst) {
  for (int64_t d0 = 0; d0 < depth; d0 += 16) {
    const int cols = static_cast<int>(std::min<int64_t>(16, depth - d0));
    const __mmask16 col_mask = static_cast<__mmask16>((1u << cols) - 1);
    for (int64_t w0 = 0; w0 < width; w0 += 16) {
      const int rows = static_cast<int>(std::min<int64_t>(16, width - w0));
      __m512 r[16];
      if (d0 + kTransposeAhead < depth)
        for (int i = 0; i < rows; ++i) __builtin_prefetch(x + (w0 + i) * ws + d0 + kTransposeAhead);
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(col_mask, x + (w0 + i) * ws + d0) : _mm512_setzero_ps();
      transpose16(r);
      const __mmask16 row_mask = static_cast<__mmask16>((1u << rows) - 1);
      for (int j = 0; j < cols; ++j) _mm512_mask_storeu_ps(dst + (d0 + j) * ld + w0, row_mask, r[j]);
    }
  }
}

}  // namespace

namespace avx512 {
// 12 x 32 floats: 24 accumulators + 2 B vectors of the 32 zmm registers. The mc x kc A block
// (960 KB) stays in the 2 MB L2 and both micro-panels stream from it; a deep kc = 1024 means C
// is read and written only K / 1024 times (measured: kc 256 -> 1024 took n = 4096 from 0.87x to
// 0.97x of OpenBLAS on one core). Short 4- and 8-row kernels finish M = 32, 64, 128 without
// computing padding rows.
const KernelsByType<GemmKernels> gemm_kernels = {
    .f32 = {.name = "avx512 12x32",
            .mr = 12,
            .nr = 32,
            .mc = 240,
            .kc = 1024,
            .nc = 3072,
            .tile = &tile_simd<F32x16, 12, 2>,
            .short_tiles = {{.rows = 4, .kernel = &tile_simd<F32x16, 4, 2, 12>},
                            {.rows = 8, .kernel = &tile_simd<F32x16, 8, 2, 12>}},
            .gemv_rows = &gemv_rows_portable<float>,
            .gemv_cols = &gemv_cols_portable<float>,
            .gemv_packed = &gemv_packed_simd<F32x16, 2>,
            .dot_mr = 4,
            .dot_nr = 6,
            .dot_tile = &dot_tile_simd<F32x16, 4, 6>,
            .transpose = &transpose_f32,
            .merge = &merge_tile<float>},
    .f64 = {.name = "avx512 12x16",
            .mr = 12,
            .nr = 16,
            .mc = 240,
            .kc = 512,
            .nc = 2048,
            .tile = &tile_simd<F64x8, 12, 2>,
            .short_tiles = {{.rows = 4, .kernel = &tile_simd<F64x8, 4, 2, 12>},
                            {.rows = 8, .kernel = &tile_simd<F64x8, 8, 2, 12>}},
            .gemv_rows = &gemv_rows_portable<double>,
            .gemv_cols = &gemv_cols_portable<double>,
            .gemv_packed = &gemv_packed_simd<F64x8, 2>,
            .dot_mr = 4,
            .dot_nr = 6,
            .dot_tile = &dot_tile_simd<F64x8, 4, 6>,
            .transpose = &transpose_portable<double>,
            .merge = &merge_tile<double>},
};
}  // namespace avx512

}  // namespace deepkern::cpu
