// Portable kernels: the edge merge, the portable micro-kernel, the GEMV kernels and the
// transposing copy.
//
// Each kernels_<isa>.cpp includes this file and so compiles it for its own ISA (the compiler
// vectorizes these loops). Everything here sits in an unnamed namespace: each translation unit
// keeps its own copy, so the linker can never hand an AVX-512 build of a function to a caller
// that runs on a CPU without AVX-512.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/cpu_features.h"
#include "cpu/gemm/microkernel.h"

#if DEEPKERN_X86
#include <xmmintrin.h>
#endif

namespace deepkern::cpu {
namespace {

// C(i, j) = epilogue(alpha * acc(i, j) + beta * C(i, j)) for i < m, j < n, with acc(i, j) =
// acc[i * ld_acc + j] and C(i, j) = c[i * rs_c + j * cs_c]; C is not read when beta == 0.
// Used for the edges of C, for strided C, and by the GEMV path.
template <class T>
inline void merge_tile(int64_t m, int64_t n, const T* acc, int64_t ld_acc, T* c, int64_t rs_c, int64_t cs_c, T alpha,
                       T beta, const TileEpilogue<T>& ep) {
  const bool read_c = beta != T(0);
  const T* col_bias = ep.bias && ep.axis == BiasAxis::cols ? ep.bias : nullptr;
  for (int64_t i = 0; i < m; ++i) {
    const T* a = acc + i * ld_acc;
    T* row = c + i * rs_c;
    const T row_bias = ep.bias && ep.axis == BiasAxis::rows ? ep.bias[i] : T(0);
    // The options are the same for every element: written so the loop vectorizes (GEMV rows).
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      T* dst = row + j * cs_c;
      T v = alpha * a[j];
      if (read_c) v += beta * *dst;
      v += row_bias;
      if (col_bias) v += col_bias[j];
      if (ep.relu && v < T(0)) v = T(0);
      *dst = v;
    }
  }
}

// The portable micro-kernel, written so the compiler vectorizes it for whatever ISA the
// including translation unit is compiled for (the accumulators stay in registers for small
// MR x NR).
template <class T, int MR, int NR>
void tile_portable(int64_t kc, const T* a_panel, const T* b_rows, int64_t ldb, T* c, int64_t ldc, T alpha, T beta,
                   TileEpilogue<T> ep) {
  T acc[MR * NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const T* a = a_panel + p * MR;
    const T* b = b_rows + p * ldb;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
#pragma omp simd
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += ai * b[j];
    }
  }
  merge_tile<T>(MR, NR, acc, NR, c, ldc, 1, alpha, beta, ep);
}

template <class T>
void gemv_rows_portable(int64_t k, int64_t n, const T* x, const T* b, int64_t ldb, T* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = T(0);
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {  // eight rows of B per pass over y (y stays in L1)
    const T* r = b + p * ldb;
    const T x0 = x[p], x1 = x[p + 1], x2 = x[p + 2], x3 = x[p + 3];
    const T x4 = x[p + 4], x5 = x[p + 5], x6 = x[p + 6], x7 = x[p + 7];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j)
      y[j] += (x0 * r[j] + x1 * r[ldb + j] + x2 * r[2 * ldb + j] + x3 * r[3 * ldb + j]) +
              (x4 * r[4 * ldb + j] + x5 * r[5 * ldb + j] + x6 * r[6 * ldb + j] + x7 * r[7 * ldb + j]);
  }
  for (; p < k; ++p) {
    const T xp = x[p];
    const T* bp = b + p * ldb;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] += xp * bp[j];
  }
}

// TransposeKernel's contract (microkernel.h): 4 x 4 SSE transposes for float on x86-64 (SSE2 is its
// baseline), element by element elsewhere.
template <class T>
void transpose_portable(int64_t width, int64_t depth, const T* x, int64_t ws, int64_t ld, T* dst) {
  int64_t w = 0;
#if DEEPKERN_X86
  if constexpr (std::is_same_v<T, float>) {
    for (; w + 4 <= width; w += 4) {
      const float* r0 = x + w * ws;
      const float* r1 = r0 + ws;
      const float* r2 = r1 + ws;
      const float* r3 = r2 + ws;
      int64_t d = 0;
      for (; d + 4 <= depth; d += 4) {
        __m128 x0 = _mm_loadu_ps(r0 + d), x1 = _mm_loadu_ps(r1 + d);
        __m128 x2 = _mm_loadu_ps(r2 + d), x3 = _mm_loadu_ps(r3 + d);
        _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
        _mm_storeu_ps(dst + d * ld + w, x0);
        _mm_storeu_ps(dst + (d + 1) * ld + w, x1);
        _mm_storeu_ps(dst + (d + 2) * ld + w, x2);
        _mm_storeu_ps(dst + (d + 3) * ld + w, x3);
      }
      for (; d < depth; ++d) {
        dst[d * ld + w] = r0[d];
        dst[d * ld + w + 1] = r1[d];
        dst[d * ld + w + 2] = r2[d];
        dst[d * ld + w + 3] = r3[d];
      }
    }
  }
#endif
  for (; w < width; ++w)
    for (int64_t d = 0; d < depth; ++d) dst[d * ld + w] = x[w * ws + d];
}

// DotTileKernel's contract (microkernel.h), one pair of rows at a time (each sum vectorized along K).
template <class T>
void dot_tile_portable(int64_t k, int rows, int cols, const T* a, int64_t lda, const T* bt, int64_t ldb, T* out,
                       int64_t ldo) {
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const T* x = a + i * lda;
      const T* y = bt + j * ldb;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t p = 0; p < k; ++p) sum += x[p] * y[p];
      out[i * ldo + j] = sum;
    }
}

template <class T, int NR>
void gemv_packed_portable(int64_t k, int64_t panels, const T* x, const T* b, T* y) {
  for (int64_t q = 0; q < panels; ++q) {
    const T* panel = b + q * k * NR;
    T acc[NR] = {};
    for (int64_t p = 0; p < k; ++p) {
#pragma omp simd
      for (int j = 0; j < NR; ++j) acc[j] += x[p] * panel[p * NR + j];
    }
    for (int j = 0; j < NR; ++j) y[q * NR + j] = acc[j];
  }
}

template <class T>
void gemv_cols_portable(int64_t k, int64_t n, const T* x, const T* bt, int64_t ldbt, T* y) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {  // four dot products share each load of x
    const T* c0 = bt + j * ldbt;
    const T* c1 = c0 + ldbt;
    const T* c2 = c1 + ldbt;
    const T* c3 = c2 + ldbt;
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t p = 0; p < k; ++p) {
      const T xp = x[p];
      s0 += xp * c0[p];
      s1 += xp * c1[p];
      s2 += xp * c2[p];
      s3 += xp * c3[p];
    }
    y[j] = s0;
    y[j + 1] = s1;
    y[j + 2] = s2;
    y[j + 3] = s3;
  }
  for (; j < n; ++j) {
    const T* col = bt + j * ldbt;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t p = 0; p < k; ++p) s += x[p] * col[p];
    y[j] = s;
  }
}

}  // namespace
}  // namespace deepkern::cpu
