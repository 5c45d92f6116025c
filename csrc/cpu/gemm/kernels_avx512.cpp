// AVX-512 kernels (compiled with -mavx512f/vl/dq/bw; used only when CPUID reports them).
#include <immintrin.h>

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
  static void store(double* p, reg x) { _mm512_storeu_pd(p, x); }
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static reg relu(reg x) { return _mm512_max_pd(_mm512_setzero_pd(), x); }
};

}  // namespace

namespace avx512 {
// 12 x 32 floats: 24 accumulators + 2 B vectors of the 32 zmm registers. The mc x kc A block
// (960 KB) stays in the 2 MB L2 and both micro-panels stream from it; a deep kc = 1024 means C
// is read and written only K / 1024 times (measured: kc 256 -> 1024 took n = 4096 from 0.87x to
// 0.97x of OpenBLAS on one core). Short 4- and 8-row kernels finish M = 32, 64, 128 without
// computing padding rows.
const GemmKernels<float> kernels_f32 = {
    "avx512 12x32", 12, 32, 240, 1024, 3072,
    &tile_simd<F32x16, 12, 2>,
    {{4, &tile_simd<F32x16, 4, 2, 12>}, {8, &tile_simd<F32x16, 8, 2, 12>}},
    &gemv_rows_portable<float>, &gemv_cols_portable<float>, &gemv_packed_simd<F32x16, 2>};
const GemmKernels<double> kernels_f64 = {
    "avx512 12x16", 12, 16, 240, 512, 2048,
    &tile_simd<F64x8, 12, 2>,
    {{4, &tile_simd<F64x8, 4, 2, 12>}, {8, &tile_simd<F64x8, 8, 2, 12>}},
    &gemv_rows_portable<double>, &gemv_cols_portable<double>, &gemv_packed_simd<F64x8, 2>};
}  // namespace avx512

}  // namespace deepkern::cpu
