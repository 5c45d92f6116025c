// The AVX512-BF16 kernel (compiled with the avx512 flags plus -mavx512bf16; used only when CPUID
// reports AVX512-BF16): VDPBF16PS multiplies one K pair of an A row, broadcast, by 16 column pairs
// of B and adds both products to 16 float32 accumulators.
#include <immintrin.h>

#include <cstring>

#include "cpu/gemm_bf16/kernels.h"

namespace deepkern::cpu {
namespace {

constexpr int kRows = 12, kCols = 32;  // 24 accumulators + 2 B vectors + 1 broadcast of 32 zmm

// The Bf16TileKernel contract (kernels.h) for a 12 x 32 block.
void tile_dpbf16(int64_t kp, const bf16* a, int64_t lda, const bf16* b, float* acc, int64_t ldacc) {
  __m512 c[kRows][2];
  for (int i = 0; i < kRows; ++i) {
    c[i][0] = _mm512_loadu_ps(acc + i * ldacc);
    c[i][1] = _mm512_loadu_ps(acc + i * ldacc + 16);
  }
  for (int64_t q = 0; q < kp / 2; ++q) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + q * kCols * 2);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + q * kCols * 2 + 32);
#pragma GCC unroll 12
    for (int i = 0; i < kRows; ++i) {
      int32_t pair;
      std::memcpy(&pair, a + i * lda + 2 * q, sizeof pair);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
    }
  }
  for (int i = 0; i < kRows; ++i) {
    _mm512_storeu_ps(acc + i * ldacc, c[i][0]);
    _mm512_storeu_ps(acc + i * ldacc + 16, c[i][1]);
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
                                          .peak_flops_per_iteration = kPeakChains * 16 * 4};
}  // namespace avx512

}  // namespace deepkern::cpu
