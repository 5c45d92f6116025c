// A 16 x 16 transpose of 32-bit words in AVX-512 registers, for the sources compiled with AVX-512
// (the bfloat16 GEMM's VNNI-pair packing, the convolution's column panels); in an unnamed namespace,
// so each of them keeps its own copy.
#pragma once
#include <immintrin.h>

namespace deepkern::cpu {
namespace {

// w[c] lane r = w[r] lane c for a 16 x 16 block of 32-bit words: pairs of words, then of 64-bit
// words, within 128-bit lanes, then the 4 x 4 lanes of each group of four.
inline void transpose_16x16(__m512i (&w)[16]) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int r = 0; r < 16; r += 2) {
    t[r] = _mm512_unpacklo_epi32(w[r], w[r + 1]);
    t[r + 1] = _mm512_unpackhi_epi32(w[r], w[r + 1]);
  }
  // s[4g + j] lane l holds rows 4g .. 4g + 3 of column 4l + j.
  __m512i s[16];
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4) {
    s[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
    s[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
    s[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
    s[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {  // column 4l + j gathers lane l of s[j], s[4 + j], s[8 + j], s[12 + j]
    const __m512i lo01 = _mm512_shuffle_i32x4(s[j], s[4 + j], 0x44), hi01 = _mm512_shuffle_i32x4(s[j], s[4 + j], 0xee);
    const __m512i lo23 = _mm512_shuffle_i32x4(s[8 + j], s[12 + j], 0x44);
    const __m512i hi23 = _mm512_shuffle_i32x4(s[8 + j], s[12 + j], 0xee);
    w[j] = _mm512_shuffle_i32x4(lo01, lo23, 0x88);
    w[4 + j] = _mm512_shuffle_i32x4(lo01, lo23, 0xdd);
    w[8 + j] = _mm512_shuffle_i32x4(hi01, hi23, 0x88);
    w[12 + j] = _mm512_shuffle_i32x4(hi01, hi23, 0xdd);
  }
}

}  // namespace
}  // namespace deepkern::cpu
