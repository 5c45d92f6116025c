// The register-blocked micro-kernel, written once over a SIMD vector type V and instantiated
// per ISA by kernels_avx512.cpp (V = 16 floats / 8 doubles) and kernels_avx2.cpp (8 / 4).
//
// Blocking: MR rows x NV vectors of C live in MR * NV registers for the whole kc loop. Each
// step loads NV vectors of one B row and broadcasts MR elements of the packed A column, then
// issues MR * NV independent FMAs (AVX-512 12 x 2: 24 FMAs per 2 loads + 12 broadcasts). The
// contract is the one in microkernel.h; this file is in an unnamed namespace for the same
// reason as portable_kernels.h.
#pragma once
#include <cstdint>

#include "cpu/gemm/microkernel.h"

namespace deepkern::cpu {
namespace {

// MR rows of C from an A panel packed A_STRIDE rows tall (A_STRIDE > MR: a short kernel for the
// last row panel of C, reading the first MR rows of a full-height panel).
template <class V, int MR, int NV, int A_STRIDE = MR>
void tile_simd(int64_t kc, const typename V::scalar* a_panel, const typename V::scalar* b_rows, int64_t ldb,
               typename V::scalar* c, int64_t ldc, typename V::scalar alpha, typename V::scalar beta,
               TileEpilogue<typename V::scalar> ep) {
  using R = typename V::reg;
  constexpr int W = V::width;
  R acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();

  // C is touched only after the kc loop: start bringing its rows in now.
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NV * W - 1, 1);
  }

  const auto* a = a_panel;
  const auto* b = b_rows;
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    __builtin_prefetch(a + 8 * A_STRIDE);  // the A panel streams from L2: fetch 8 steps ahead
    R bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + v * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const R ai = V::set1(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(ai, bv[v], acc[i][v]);
    }
    a += A_STRIDE;
    b += ldb;
  }

  const R valpha = V::set1(alpha);
  const R vbeta = V::set1(beta);
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) {
    auto* row = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      R out = V::mul(acc[i][v], valpha);
      if (beta != 0) out = V::fmadd(vbeta, V::load(row + v * W), out);
      if (ep.bias) out = V::add(out, ep.axis == BiasAxis::rows ? V::set1(ep.bias[i]) : V::load(ep.bias + v * W));
      if (ep.relu) out = V::relu(out);
      V::store(row + v * W, out);
    }
  }
}

// DotTileKernel's contract (microkernel.h): an MR x NR block of dot products, each summed along K
// in its own register (MR * NR accumulators, MR vectors of A and one of B live: a step of W
// elements of K loads MR + NR vectors for MR * NR FMAs), the tail of K with masked loads, and each
// sum reduced once. Rows and columns past the block's edge read its last row or column again and are
// not stored.
template <class V, int MR, int NR>
void dot_tile_simd(int64_t k, int rows, int cols, const typename V::scalar* a, int64_t lda,
                   const typename V::scalar* bt, int64_t ldb, typename V::scalar* out, int64_t ldo) {
  using R = typename V::reg;
  using S = typename V::scalar;
  constexpr int W = V::width;
  const S* a_row[MR];
  const S* b_row[NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) a_row[i] = a + (i < rows ? i : rows - 1) * lda;
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) b_row[j] = bt + (j < cols ? j : cols - 1) * ldb;
  R acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = V::zero();
  auto step = [&](int64_t p, auto load) {
    R av[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) av[i] = load(a_row[i] + p);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const R bv = load(b_row[j] + p);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = V::fmadd(av[i], bv, acc[i][j]);
    }
  };
  int64_t p = 0;
  for (; p + W <= k; p += W) step(p, [](const S* x) { return V::load(x); });
  if (p < k) {
    const int tail = static_cast<int>(k - p);
    step(p, [tail](const S* x) { return V::load_first(x, tail); });
  }
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) out[i * ldo + j] = V::sum(acc[i][j]);
}

// GEMV against packed panels NV vectors wide (gemv_packed's contract, microkernel.h): two panels
// at a time, so each broadcast of x[p] feeds 2 * NV FMAs, and even and odd rows into separate
// accumulators (4 * NV independent chains hide the FMA latency). Every panel is read front to
// back: two sequential streams. (A software prefetch of every line 8 rows ahead sped the kernel
// alone up, 2.3 -> 1.5 us at N=256 K=128, but slowed the batch-1 LSTM steps that it serves by 5%.)
template <class V, int NV>
void gemv_packed_simd(int64_t k, int64_t panels, const typename V::scalar* x, const typename V::scalar* b,
                      typename V::scalar* y) {
  using R = typename V::reg;
  constexpr int W = V::width, NR = NV * W, PAIR = 2;
  int64_t q = 0;
  for (; q < panels; q += PAIR) {
    const int count = panels - q >= PAIR ? PAIR : 1;
    const auto* bq = b + q * k * NR;
    R acc[2][PAIR][NV];
#pragma GCC unroll 2
    for (int u = 0; u < 2; ++u)
#pragma GCC unroll 2
      for (int s = 0; s < PAIR; ++s)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[u][s][v] = V::zero();
    if (count == PAIR) {
      int64_t p = 0;
      for (; p + 2 <= k; p += 2)
#pragma GCC unroll 2
        for (int u = 0; u < 2; ++u) {
          const R xv = V::set1(x[p + u]);
#pragma GCC unroll 2
          for (int s = 0; s < PAIR; ++s)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v)
              acc[u][s][v] = V::fmadd(xv, V::load(bq + s * k * NR + (p + u) * NR + v * W), acc[u][s][v]);
        }
      for (; p < k; ++p) {
        const R xv = V::set1(x[p]);
#pragma GCC unroll 2
        for (int s = 0; s < PAIR; ++s)
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v)
            acc[0][s][v] = V::fmadd(xv, V::load(bq + s * k * NR + p * NR + v * W), acc[0][s][v]);
      }
    } else {  // the last, odd panel
      for (int64_t p = 0; p < k; ++p) {
        const R xv = V::set1(x[p]);
        const int u = static_cast<int>(p & 1);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[u][0][v] = V::fmadd(xv, V::load(bq + p * NR + v * W), acc[u][0][v]);
      }
    }
    for (int s = 0; s < count; ++s)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) V::store(y + (q + s) * NR + v * W, V::add(acc[0][s][v], acc[1][s][v]));
  }
}

}  // namespace
}  // namespace deepkern::cpu
