// The AVX512-BF16 kernels (compiled with the avx512 flags plus -mavx512bf16; used only when CPUID
// reports AVX512-BF16): VDPBF16PS multiplies one K pair of an A row, broadcast, by 16 column pairs
// of B and adds both products to 16 float32 accumulators. The 12 x 32 tile serves the blocked
// GEMM; the strips (1 to 12 rows of unpacked A, as wide as the registers allow) serve the products
// with a packed B, whose row counts are a recurrent layer's batch.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "cpu/gemm_bf16/kernels.h"
#include "cpu/gemm_bf16/words_avx512.h"

namespace deepkern::cpu {
namespace {

constexpr int kRows = 12, kCols = 32;  // 24 accumulators + 2 B vectors + 1 broadcast of 32 zmm

// acc[i][v] += row i's K pair pair_of(i) (broadcast) times B's vector v of the same pair row.
template <int R, int V, class PairOf>
[[gnu::always_inline]] inline void add_pair(__m512 (&acc)[R][V], const __m512bh (&bv)[V], const PairOf& pair_of) {
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair_of(i));
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
  }
}

// bv[v] = vector v of B's pair row q (vector v of pair row 0 at bq[v]), masked when kMasked.
template <bool kMasked, int V>
[[gnu::always_inline]] inline void load_pair_row(__m512bh (&bv)[V], const bf16* const (&bq)[V],
                                                 const __mmask16 (&mask)[V], int64_t q) {
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    const bf16* at = bq[v] + q * kCols * 2;
    bv[v] = (__m512bh)(kMasked ? _mm512_maskz_loadu_epi32(mask[v], at) : _mm512_loadu_si512(at));
  }
}

// acc += A (R rows lda apart, k columns) @ B's pair rows (vector v of pair row 0 at bq[v]): every
// K pair, then an odd k's last A column paired with zero (as B's last pair row pairs it).
template <bool kMasked, int R, int V>
[[gnu::always_inline]] inline void add_products(__m512 (&acc)[R][V], const bf16* a, int64_t lda, int64_t k,
                                                const bf16* const (&bq)[V], const __mmask16 (&mask)[V]) {
  __m512bh bv[V];
  for (int64_t q = 0; q < k / 2; ++q) {
    load_pair_row<kMasked>(bv, bq, mask, q);
    add_pair(acc, bv, [&](int i) {
      int32_t pair;
      std::memcpy(&pair, a + i * lda + 2 * q, sizeof pair);
      return pair;
    });
  }
  if (k % 2) {
    load_pair_row<kMasked>(bv, bq, mask, k / 2);
    add_pair(acc, bv, [&](int i) { return int32_t(a[i * lda + k - 1].bits); });
  }
}

// The Bf16TileKernel contract (kernels.h) for a 12 x 32 block; an odd kp (A read in place, see
// kernels.h) pairs A's last column with zero, as B's last pair row is.
void tile_dpbf16(int64_t kp, const bf16* a, int64_t lda, const bf16* b, float* acc, int64_t ldacc) {
  __m512 c[kRows][2];
  for (int i = 0; i < kRows; ++i) {
    c[i][0] = _mm512_loadu_ps(acc + i * ldacc);
    c[i][1] = _mm512_loadu_ps(acc + i * ldacc + 16);
  }
  const bf16* const bq[2] = {b, b + 32};
  const __mmask16 all[2] = {0xffff, 0xffff};
  add_products<false>(c, a, lda, kp, bq, all);
  for (int i = 0; i < kRows; ++i) {
    _mm512_storeu_ps(acc + i * ldacc, c[i][0]);
    _mm512_storeu_ps(acc + i * ldacc + 16, c[i][1]);
  }
}

// The strip kernel (kernels.h) for R rows and P column panels at a time (2P vectors of 16 columns
// per row, R * 2P accumulators): each K pair loads 2P vectors of B once for all R rows. Columns
// past s.cols are masked out of every load and store of C and the bias, and of B's when kMasked
// (without it, all P panels must be there: the masks would take more than the 7 mask registers in
// the loop).
template <int R, int P, bool kMasked>
void strip_panels(const Bf16Strip& s) {
  constexpr int V = 2 * P;
  const int64_t k = s.k, lda = s.lda, ldc = s.ldc;
  const bf16* const a = s.a;
  __mmask16 mask[V];
  const bf16* bq[V];  // vector v of pair row 0
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    const int64_t n = std::clamp<int64_t>(s.cols - 16 * v, 0, 16);
    mask[v] = static_cast<__mmask16>((1u << n) - 1u);
    bq[v] = s.b + (v / 2) * s.panel_stride + (v % 2) * 32;
  }
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    const __m512 bias = s.bias ? _mm512_maskz_loadu_ps(mask[v], s.bias + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i)
      acc[i][v] = s.accumulate ? _mm512_add_ps(bias, _mm512_maskz_loadu_ps(mask[v], s.c + i * ldc + 16 * v)) : bias;
  }
  add_products<kMasked>(acc, a, lda, k, bq, mask);
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(s.c + i * ldc + 16 * v, mask[v], acc[i][v]);
}

// The Bf16StripKernel contract for R rows: groups of P panels, P as wide as the 32 vector
// registers allow (R * 2P accumulators, 2P vectors of B and a broadcast: rows 1-2 four panels, 3
// three, 4-6 two, 7-12 one), so that every step has enough independent sums; the last group masked.
template <int R>
void strip_rows(const Bf16Strip& s) {
  constexpr int P = R <= 2 ? 4 : R == 3 ? 3 : R <= 6 ? 2 : 1;
  constexpr int64_t kWidth = P * kCols;
  for (int64_t j = 0; j < s.cols; j += kWidth) {
    Bf16Strip group = s;
    group.b += j / kCols * s.panel_stride;
    group.c += j;
    group.cols = std::min(kWidth, s.cols - j);
    if (s.bias) group.bias += j;
    if (group.cols == kWidth)
      strip_panels<R, P, false>(group);
    else
      strip_panels<R, P, true>(group);
  }
}

template <int... R>
constexpr std::array<void (*)(const Bf16Strip&), sizeof...(R)> strip_table(std::integer_sequence<int, R...>) {
  return {&strip_rows<R + 1>...};
}

constexpr auto kStrips = strip_table(std::make_integer_sequence<int, kRows>{});

void strip_dpbf16(int rows, const Bf16Strip& s) { kStrips[rows - 1](s); }

// Up to 32 values of two rows, interleaved: words[0] holds the pairs (r0[j], r1[j]) of j < 16 and
// words[1] those of 16 <= j < 32; values past n are zero.
inline void interleave_32(const bf16* r0, const bf16* r1, int64_t n, __m512i (&words)[2]) {
  alignas(64) static constexpr uint16_t kLow[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                    8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i low = _mm512_load_si512(kLow), high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
  const __mmask32 mask = n >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((1u << n) - 1u);
  const __m512i x = _mm512_maskz_loadu_epi16(mask, r0), y = _mm512_maskz_loadu_epi16(mask, r1);
  words[0] = _mm512_permutex2var_epi16(x, low, y);
  words[1] = _mm512_permutex2var_epi16(x, high, y);
}

// The pair_rows contract (kernels.h) for 32-column panels: per panel, one masked load of each row's
// 32 values and two VPERMT2W that interleave them into the panel's 64 (16 columns each).
void pair_rows_dpbf16(const bf16* r0, const bf16* r1, int64_t cols, int64_t panel_stride, bf16* dst) {
  for (int64_t j0 = 0; j0 < cols; j0 += kCols, dst += panel_stride) {
    __m512i words[2];
    interleave_32(r0 + j0, r1 + j0, cols - j0, words);
    _mm512_storeu_si512(dst, words[0]);
    _mm512_storeu_si512(dst + 32, words[1]);
  }
}

// The transpose_a contract (kernels.h), in blocks of 16 rows by 16 K pairs: word q of column i
// pairs src rows 2q and 2q + 1 (each row's 16 values widened to 32 bits, the second shifted up),
// a 16 x 16 word transpose turns the pairs of a column into one packed row, stored whole (masked
// past the last pair); an odd depth's last column one value at a time. Everything stays in
// registers: no gathers or scatters.
void transpose_a_dpbf16(const bf16* src, int64_t cs, int64_t rows, int64_t depth, int64_t kp, bf16* dst) {
  const int64_t pairs = depth / 2;
  for (int64_t q0 = 0; q0 < pairs; q0 += 16) {  // 32 source rows at a time, read across
    const int64_t m = std::min<int64_t>(16, pairs - q0);
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
      const int64_t n = std::min<int64_t>(16, rows - i0);
      const __mmask16 row_mask = static_cast<__mmask16>((1u << n) - 1u);
      __m512i w[16];
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q) {
        if (q >= m) {
          w[q] = _mm512_setzero_si512();
          continue;
        }
        const bf16* r0 = src + (2 * (q0 + q)) * cs + i0;
        const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(row_mask, r0));
        const __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(row_mask, r0 + cs));
        w[q] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
      }
      transpose_16x16(w);
      const __mmask16 pair_mask = static_cast<__mmask16>((1u << m) - 1u);
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        if (i < n) _mm512_mask_storeu_epi32(dst + (i0 + i) * kp + 2 * q0, pair_mask, w[i]);
    }
  }
  if (depth % 2)
    for (int64_t i = 0; i < rows; ++i) dst[i * kp + depth - 1] = src[(depth - 1) * cs + i];
}

// The transpose_b contract (kernels.h) for 32-column panels, in blocks of 16 columns by 16 pairs:
// word j of pair row q is word q of column j (its pair 2q, 2q + 1), a 16 x 16 word transpose of
// 16 columns' loads; the columns past width load as zeros.
void transpose_b_dpbf16(const bf16* src, int64_t cs, int64_t width, int64_t pairs, bf16* dst) {
  for (int64_t j0 = 0; j0 < width; j0 += 16) {
    const int64_t n = std::min<int64_t>(16, width - j0);
    for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
      const int64_t m = std::min<int64_t>(16, pairs - q0);
      const __mmask16 pair_mask = static_cast<__mmask16>((1u << m) - 1u);
      __m512i w[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j)
        w[j] = j < n ? _mm512_maskz_loadu_epi32(pair_mask, src + (j0 + j) * cs + 2 * q0) : _mm512_setzero_si512();
      transpose_16x16(w);
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q)
        if (q < m) _mm512_storeu_si512(dst + ((q0 + q) * kCols + j0) * 2, w[q]);
    }
  }
}

// 16 independent VDPBF16PS chains (each step: 16 lanes x 2 products and 2 additions).
constexpr int kPeakChains = 16;
float peak_dpbf16(int64_t iters) {
  __m512 acc[kPeakChains];
  for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_set1_ps(0.5f + i * 1e-3f);
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x33d633d6);  // 1, 1e-7
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  __m512 sum = acc[0];
  for (int i = 1; i < kPeakChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_cvtss_f32(sum);
}

}  // namespace

namespace avx512 {
const Bf16GemmKernels gemm_bf16_dpbf16 = {.name = "avx512_bf16 12x32",
                                          .mr = kRows,
                                          .nr = kCols,
                                          .k_align = 2,
                                          .mc = 192,
                                          .kc = 512,
                                          .nc = 256,
                                          .tile = &tile_dpbf16,
                                          .begin = nullptr,
                                          .end = nullptr,
                                          .peak_chains = &peak_dpbf16,
                                          .peak_flops_per_iteration = kPeakChains * 16 * 4,
                                          .strip = &strip_dpbf16,
                                          .strip_rows = kRows,
                                          .pair_rows = &pair_rows_dpbf16,
                                          .transpose_a = &transpose_a_dpbf16,
                                          .transpose_b = &transpose_b_dpbf16};
}  // namespace avx512

}  // namespace deepkern::cpu
