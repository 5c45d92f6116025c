// AVX2 + FMA kernels (compiled with -mavx2 -mfma; used when CPUID reports them).
#include <immintrin.h>

#include "cpu/gemm/portable_kernels.h"
#include "cpu/gemm/simd_tile.h"

namespace deepkern::cpu {
namespace {

struct F32x8 {
  using scalar = float;
  using reg = __m256;
  static constexpr int width = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load_first(const float* p, int n) {
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static float sum(reg x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static void store(float* p, reg x) { _mm256_storeu_ps(p, x); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  // max(0, x) with 0 first: a NaN in x is passed through, like NumPy and PyTorch.
  static reg relu(reg x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }
};

struct F64x4 {
  using scalar = double;
  using reg = __m256d;
  static constexpr int width = 4;
  static reg zero() { return _mm256_setzero_pd(); }
  static reg set1(double x) { return _mm256_set1_pd(x); }
  static reg load(const double* p) { return _mm256_loadu_pd(p); }
  static reg load_first(const double* p, int n) {
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  }
  static double sum(reg x) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(x), _mm256_extractf128_pd(x, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static void store(double* p, reg x) { _mm256_storeu_pd(p, x); }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static reg relu(reg x) { return _mm256_max_pd(_mm256_setzero_pd(), x); }
};

}  // namespace

namespace avx2 {
// 6 x 16 floats: 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers. The
// 96 x 512 A block (192 KB) fits even a 256 KB L2; kc = 512 halves C's memory traffic against
// kc = 256 (here, forced to AVX2: 80 -> 84-86 GFLOP/s on one core at n = 2048-4096).
const KernelsByType<GemmKernels> gemm_kernels = {
    .f32 = {.name = "avx2 6x16",
            .mr = 6,
            .nr = 16,
            .mc = 96,
            .kc = 512,
            .nc = 3072,
            .tile = &tile_simd<F32x8, 6, 2>,
            .short_tiles = {{.rows = 2, .kernel = &tile_simd<F32x8, 2, 2, 6>},
                            {.rows = 4, .kernel = &tile_simd<F32x8, 4, 2, 6>}},
            .gemv_rows = &gemv_rows_portable<float>,
            .gemv_cols = &gemv_cols_portable<float>,
            .gemv_packed = &gemv_packed_simd<F32x8, 2>,
            .dot_mr = 2,
            .dot_nr = 6,
            .dot_tile = &dot_tile_simd<F32x8, 2, 6>,
            .transpose = &transpose_portable<float>,
            .merge = &merge_tile<float>},
    .f64 = {.name = "avx2 6x8",
            .mr = 6,
            .nr = 8,
            .mc = 192,
            .kc = 256,
            .nc = 2048,
            .tile = &tile_simd<F64x4, 6, 2>,
            .short_tiles = {{.rows = 2, .kernel = &tile_simd<F64x4, 2, 2, 6>},
                            {.rows = 4, .kernel = &tile_simd<F64x4, 4, 2, 6>}},
            .gemv_rows = &gemv_rows_portable<double>,
            .gemv_cols = &gemv_cols_portable<double>,
            .gemv_packed = &gemv_packed_simd<F64x4, 2>,
            .dot_mr = 2,
            .dot_nr = 6,
            .dot_tile = &dot_tile_simd<F64x4, 2, 6>,
            .transpose = &transpose_portable<double>,
            .merge = &merge_tile<double>},
};
}  // namespace avx2

}  // namespace deepkern::cpu
