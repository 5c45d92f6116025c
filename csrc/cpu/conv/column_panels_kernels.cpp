// column_panels.h's kernels, compiled once per ISA (a per-ISA source). A panel's columns (32, or the
// float GEMM's nr) are cut into segments, one per image they cross (a 7 x 7 image's 49 columns: at
// most two); each row of col is then read per segment from its shifted input plane. With AVX-512
// (BW) a segment is one masked load (the padding and the lanes of other segments masked off, which
// also keeps addresses outside the image from being touched) and a pair of bfloat16 rows becomes a
// pair row of the panel by two word permutes; float32 rows are masked loads of 16 lanes (AVX-512) or
// 8 (AVX2). Elsewhere the same walk runs value by value.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/conv/column_panels.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512BW__)

#include "cpu/gemm_bf16/words_avx512.h"
#endif

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

constexpr int kWidth = 32;  // columns per panel
// How far ahead along a row of col the transposed packing prefetches (bytes): the rows read input planes
// from memory, and without it the masked loads waited on each new line (a quarter of the weight
// gradient's time at 64 channels, 56 x 56, batch 32).
constexpr int kPrefetchAhead = 512;

// Lanes [lane, lane + len) of panel `panel` read one image: its pixels [pixel, pixel + len), from
// element `image` (x-relative) on.
struct Segment {
  int64_t image, pixel;
  int panel, lane, len;
};

// The segments of columns j0 .. j0 + cols, panel after panel (panels of `panel_width` <= 32 columns).
std::vector<Segment> segments_of(const ShiftedColumns& b, int64_t j0, int64_t cols, int panel_width = kWidth) {
  std::vector<Segment> segments;
  for (int64_t c0 = 0; c0 < cols; c0 += panel_width) {
    const int width = static_cast<int>(std::min<int64_t>(panel_width, cols - c0));
    int64_t n = (j0 + c0) / b.per_image, pixel = (j0 + c0) % b.per_image;
    for (int lane = 0; lane < width; ++n, pixel = 0) {
      const int len = static_cast<int>(std::min<int64_t>(width - lane, b.per_image - pixel));
      segments.push_back({n * b.image_stride, pixel, static_cast<int>(c0 / panel_width), lane, len});
      lane += len;
    }
  }
  return segments;
}

// Where each panel's segments start: panel q's are [first[q], first[q + 1]).
std::vector<size_t> panel_starts(const std::vector<Segment>& segments) {
  std::vector<size_t> first(1, 0);
  for (size_t s = 0; s < segments.size(); ++s)
    if (s + 1 == segments.size() || segments[s + 1].panel != segments[s].panel) first.push_back(s + 1);
  return first;
}

// Per tap and segment, the segment's lanes that read inside the image: bits [pixel, pixel + len)
// of the tap's bitmap, shifted to the segment's lanes (tap-major).
std::vector<uint32_t> lane_masks(const ShiftedColumns& b, const std::vector<Segment>& segments) {
  std::vector<uint32_t> masks(static_cast<size_t>(b.taps) * segments.size());
  for (int tap = 0; tap < b.taps; ++tap)
    for (size_t s = 0; s < segments.size(); ++s) {
      const Segment& seg = segments[s];
      uint64_t word;  // 64 bits from the byte holding bit `pixel`: at least 57 past it (the spare bits)
      std::memcpy(&word, reinterpret_cast<const unsigned char*>(b.tap_valid + tap * b.tap_words) + seg.pixel / 8,
                  sizeof word);
      const uint64_t bits = word >> (seg.pixel % 8) & ((uint64_t(1) << seg.len) - 1);
      masks[tap * segments.size() + s] = static_cast<uint32_t>(bits << seg.lane);
    }
  return masks;
}

#if defined(__AVX512BW__)

// Pair rows are the outer loop, each pair of rows read in order across the panels (the input planes
// stream through once); a segment is one masked load per row, a pair of rows two word permutes into
// the pair row. Rows past k read with the all-zero masks of a tap past the last.
void pack_shifted(const ShiftedColumns& b, int64_t j0, int64_t cols, int64_t k_padded, uint16_t* dst) {
  const std::vector<Segment> segments = segments_of(b, j0, cols);
  std::vector<uint32_t> masks = lane_masks(b, segments);
  masks.resize(masks.size() + segments.size(), 0);
  const size_t count = segments.size();
  const std::vector<size_t> first = panel_starts(segments);
  std::vector<int64_t> base(count);  // lane L of segment s reads base[s] + row offset + L
  for (size_t s = 0; s < count; ++s) base[s] = segments[s].image + segments[s].pixel - segments[s].lane;
  // Word 2j of a pair row is row 2m's column j, word 2j + 1 row 2m + 1's (lanes 32 on: the second source).
  alignas(64) uint16_t low_index[kWidth], high_index[kWidth];
  for (int j = 0; j < kWidth / 2; ++j) {
    low_index[2 * j] = static_cast<uint16_t>(j), low_index[2 * j + 1] = static_cast<uint16_t>(kWidth + j);
    high_index[2 * j] = static_cast<uint16_t>(kWidth / 2 + j);
    high_index[2 * j + 1] = static_cast<uint16_t>(kWidth + kWidth / 2 + j);
  }
  const __m512i low = _mm512_load_si512(low_index), high = _mm512_load_si512(high_index);
  // Integer arithmetic for the addresses: a segment's base may lie outside x (only valid lanes are read).
  const auto x = reinterpret_cast<intptr_t>(b.x);
  const int64_t panels = static_cast<int64_t>(first.size()) - 1;
  for (int64_t row = 0; row < k_padded; row += 2) {
    const bool even_in = row < b.k, odd_in = row + 1 < b.k;
    const uint32_t* even_mask = masks.data() + (even_in ? b.row_tap[row] : b.taps) * count;
    const uint32_t* odd_mask = masks.data() + (odd_in ? b.row_tap[row + 1] : b.taps) * count;
    const intptr_t even_at = x + 2 * (even_in ? b.row_offset[row] : 0);
    const intptr_t odd_at = x + 2 * (odd_in ? b.row_offset[row + 1] : 0);
    uint16_t* pair_row = dst + row * kWidth;
    for (int64_t q = 0; q < panels; ++q, pair_row += k_padded * kWidth) {
      __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
      for (size_t s = first[q]; s < first[q + 1]; ++s) {
        even = _mm512_mask_loadu_epi16(even, even_mask[s], reinterpret_cast<const void*>(even_at + 2 * base[s]));
        odd = _mm512_mask_loadu_epi16(odd, odd_mask[s], reinterpret_cast<const void*>(odd_at + 2 * base[s]));
      }
      // The same rows' columns of the next call (the next block, cols further): the input planes come
      // from memory, and the loads above waited on each new line (a third of the forward's time at 64
      // channels, 56 x 56).
      _mm_prefetch(reinterpret_cast<const char*>(even_at + 2 * (base[first[q]] + cols)), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(odd_at + 2 * (base[first[q]] + cols)), _MM_HINT_T0);
      _mm512_storeu_si512(pair_row, _mm512_permutex2var_epi16(even, low, odd));
      _mm512_storeu_si512(pair_row + kWidth, _mm512_permutex2var_epi16(even, high, odd));
    }
  }
}

// Blocks of 16 of col's rows by 32 of its columns (16 pair rows), the columns inner (each of the 16
// rows read in order): each row one vector of masked loads (16 pair words), the 16 vectors
// transposed into 16 pair rows of 16 panel columns.
void pack_shifted_transposed(const ShiftedColumns& b, int64_t j0, int64_t cols, int64_t k_padded, uint16_t* dst) {
  const int64_t pixels = std::min(b.images * b.per_image, k_padded), width = (cols + kWidth - 1) / kWidth * kWidth;
  const std::vector<Segment> segments = segments_of(b, 0, pixels);  // "panel" q: pixels 32q .. 32q + 31
  std::vector<uint32_t> masks = lane_masks(b, segments);
  const size_t count = segments.size();
  const std::vector<size_t> first = panel_starts(segments);  // chunk q's segments
  const auto x = reinterpret_cast<intptr_t>(b.x);            // a segment's base may lie outside x, as above
  masks.resize(masks.size() + count, 0);                     // a tap past the last: rows past k or cols load nothing
  const uint32_t* none = masks.data() + masks.size() - count;
  for (int64_t c0 = 0; c0 < width; c0 += kWidth / 2) {
    uint16_t* half = dst + c0 / kWidth * k_padded * kWidth + c0 % kWidth * 2;
    intptr_t at[16];  // the 16 rows' element 0 and masks
    const uint32_t* row_masks[16];
    for (int l = 0; l < 16; ++l) {
      const int64_t row = j0 + c0 + l;
      const bool inside = c0 + l < cols && row < b.k;
      at[l] = x + 2 * (inside ? b.row_offset[row] : 0);
      row_masks[l] = inside ? masks.data() + b.row_tap[row] * count : none;
    }
    for (int64_t p0 = 0; p0 < k_padded; p0 += kWidth) {
      const size_t chunk = static_cast<size_t>(p0 / kWidth);
      const size_t from = chunk + 1 < first.size() ? first[chunk] : count;
      const size_t to = chunk + 1 < first.size() ? first[chunk + 1] : count;
      __m512i w[16];
      if (to - from == 1) {  // one image: one load per row
        const int64_t base = 2 * (segments[from].image + segments[from].pixel - segments[from].lane);
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l) {
          w[l] = _mm512_maskz_loadu_epi16(row_masks[l][from], reinterpret_cast<const void*>(at[l] + base));
          _mm_prefetch(reinterpret_cast<const char*>(at[l] + base + kPrefetchAhead), _MM_HINT_T0);
        }
      } else {
        for (int l = 0; l < 16; ++l) {
          w[l] = _mm512_setzero_si512();
          for (size_t s = from; s < to; ++s) {
            const int64_t base = 2 * (segments[s].image + segments[s].pixel - segments[s].lane);
            w[l] = _mm512_mask_loadu_epi16(w[l], row_masks[l][s], reinterpret_cast<const void*>(at[l] + base));
          }
        }
      }
      transpose_16x16(w);
      const int64_t pairs = std::min<int64_t>(kWidth / 2, (k_padded - p0) / 2);
      for (int64_t m = 0; m < pairs; ++m) _mm512_storeu_si512(half + (p0 / 2 + m) * 2 * kWidth, w[m]);
    }
  }
}

#else

void pack_shifted(const ShiftedColumns& b, int64_t j0, int64_t cols, int64_t k_padded, uint16_t* dst) {
  const std::vector<Segment> segments = segments_of(b, j0, cols);
  const std::vector<uint32_t> masks = lane_masks(b, segments);
  const size_t count = segments.size();
  std::fill(dst, dst + (cols + kWidth - 1) / kWidth * k_padded * kWidth, uint16_t(0));
  for (int64_t row = 0; row < b.k; ++row)
    for (size_t s = 0; s < count; ++s) {
      const Segment& seg = segments[s];
      const uint32_t valid = masks[b.row_tap[row] * count + s];
      const int64_t base = seg.image + b.row_offset[row] + seg.pixel - seg.lane;  // lane L's element, if valid
      uint16_t* pair_row = dst + seg.panel * k_padded * kWidth + row / 2 * 2 * kWidth + row % 2;
      for (int lane = seg.lane; lane < seg.lane + seg.len; ++lane)
        if (valid >> lane & 1) pair_row[2 * lane] = static_cast<const uint16_t*>(b.x)[base + lane];
    }
}

void pack_shifted_transposed(const ShiftedColumns& b, int64_t j0, int64_t cols, int64_t k_padded, uint16_t* dst) {
  const int64_t pixels = b.images * b.per_image, panels = (cols + kWidth - 1) / kWidth;
  std::fill(dst, dst + panels * k_padded * kWidth, uint16_t(0));
  for (int64_t p0 = 0; p0 < pixels; p0 += kWidth) {
    const std::vector<Segment> segments = segments_of(b, p0, std::min<int64_t>(pixels - p0, kWidth));
    const std::vector<uint32_t> masks = lane_masks(b, segments);
    for (int64_t j = 0; j < std::min(cols, b.k - j0); ++j) {
      const int64_t row = j0 + j;
      uint16_t* column = dst + j / kWidth * k_padded * kWidth + j % kWidth * 2;
      for (size_t s = 0; s < segments.size(); ++s) {
        const Segment& seg = segments[s];
        const uint32_t valid = masks[b.row_tap[row] * segments.size() + s];
        const int64_t base = seg.image + b.row_offset[row] + seg.pixel - seg.lane;  // lane L's element, if valid
        for (int lane = seg.lane; lane < seg.lane + seg.len; ++lane) {
          const int64_t p = p0 + lane;  // B's row: pair p / 2, half p % 2
          if (valid >> lane & 1) column[p / 2 * 2 * kWidth + p % 2] = static_cast<const uint16_t*>(b.x)[base + lane];
        }
      }
    }
  }
}

#endif

// Float vectors of kFloatLanes lanes: load_lanes(v, bits, at) gives v with lane l replaced by at[l]
// where bit l of `bits` is set (addresses of clear lanes are not touched); 1 lane without SIMD.
#if defined(__AVX512F__)
constexpr int kFloatLanes = 16;
using FloatVector = __m512;
FloatVector zero_vector() { return _mm512_setzero_ps(); }
FloatVector load_lanes(FloatVector v, uint32_t bits, intptr_t at) {
  return _mm512_mask_loadu_ps(v, static_cast<__mmask16>(bits), reinterpret_cast<const float*>(at));
}
void store_vector(float* dst, FloatVector v) { _mm512_storeu_ps(dst, v); }
#elif defined(__AVX2__)
constexpr int kFloatLanes = 8;
using FloatVector = __m256;
FloatVector zero_vector() { return _mm256_setzero_ps(); }
FloatVector load_lanes(FloatVector v, uint32_t bits, intptr_t at) {
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i mask =
      _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits & 0xff)), lane_bit), lane_bit);
  return _mm256_blendv_ps(v, _mm256_maskload_ps(reinterpret_cast<const float*>(at), mask), _mm256_castsi256_ps(mask));
}
void store_vector(float* dst, FloatVector v) { _mm256_storeu_ps(dst, v); }
#else
constexpr int kFloatLanes = 1;
using FloatVector = float;
FloatVector zero_vector() { return 0.0f; }
FloatVector load_lanes(FloatVector v, uint32_t bits, intptr_t at) {
  return bits & 1 ? *reinterpret_cast<const float*>(at) : v;
}
void store_vector(float* dst, FloatVector v) { *dst = v; }
#endif

// Rows outer, panels inner (the input planes stream through once); each panel row is nr / kFloatLanes
// vectors, each gathered from its segments' masked loads. Lanes past cols stay zero.
void pack_shifted_float(const ShiftedColumns& b, int64_t j0, int64_t cols, int nr, float* dst) {
  if (nr % kFloatLanes != 0 || nr > 32)
    throw std::invalid_argument("pack_shifted_float: a panel width of " + std::to_string(nr) +
                                " columns is not a multiple of " + std::to_string(kFloatLanes) + " up to 32");
  const std::vector<Segment> segments = segments_of(b, j0, cols, nr);
  const std::vector<uint32_t> masks = lane_masks(b, segments);
  const size_t count = segments.size();
  const std::vector<size_t> first = panel_starts(segments);
  std::vector<int64_t> base(count);  // lane L of segment s reads base[s] + row offset + L
  for (size_t s = 0; s < count; ++s) base[s] = segments[s].image + segments[s].pixel - segments[s].lane;
  const auto x = reinterpret_cast<intptr_t>(b.x);  // a segment's base may lie outside x, as above
  const int64_t panels = static_cast<int64_t>(first.size()) - 1;
  for (int64_t row = 0; row < b.k; ++row) {
    const uint32_t* row_masks = masks.data() + b.row_tap[row] * count;
    const intptr_t at = x + int64_t(sizeof(float)) * b.row_offset[row];
    float* panel_row = dst + row * nr;
    for (int64_t q = 0; q < panels; ++q, panel_row += b.k * nr)
      for (int v = 0; v < nr; v += kFloatLanes) {
        FloatVector lanes = zero_vector();
        for (size_t s = first[q]; s < first[q + 1]; ++s) {
          const uint32_t bits = row_masks[s] >> v & ((uint64_t(1) << kFloatLanes) - 1);
          if (bits) lanes = load_lanes(lanes, bits, at + int64_t(sizeof(float)) * (base[s] + v));
        }
        store_vector(panel_row + v, lanes);
      }
  }
}

}  // namespace

const ColumnPanelKernels column_panel_kernels = {.pack_shifted = &pack_shifted,
                                                 .pack_shifted_transposed = &pack_shifted_transposed,
                                                 .pack_shifted_float = &pack_shifted_float};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
