// im2col and its adjoint col2im for the convolutions (conv.cpp's GEMM paths in float32/float64,
// conv_bf16.cpp's in bfloat16), templated on the element type: im2col only copies (bfloat16 runs it
// on the bits, uint16_t), col2im adds. Each translation unit keeps its own copies (and per-thread
// buffers).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/scratch.h"
#include "cpu/conv/column_panels.h"
#include "cpu/conv/conv.h"
#include "cpu/conv/taps.h"

namespace deepkern::cpu {
namespace {

// Whether col(X) of one image is its input planes themselves: a 1x1 convolution with stride 1 and no
// padding.
inline bool columns_are_input(const Conv2dShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 &&
         s.out_h == s.in_h && s.out_w == s.in_w;
}

// Output rows of one image per im2col block whose columns (column_bytes each) fit in max_bytes: at
// least 1, at most P.
inline int64_t rows_within(const Conv2dShape& s, int64_t column_bytes, int64_t max_bytes) {
  return std::clamp<int64_t>(max_bytes / (column_bytes * std::max<int64_t>(s.out_w, 1)), 1,
                             std::max<int64_t>(s.out_h, 1));
}

// True when each row of col(X) is its input plane shifted: stride 1 in both directions, dilation_w
// 1 and Q == W ("same" width); im2col_shifted_planes (and the bfloat16 column panels) rely on it.
inline bool rows_are_shifted_planes(const Conv2dShape& s) {
  return s.stride_h == 1 && s.stride_w == 1 && s.dilation_w == 1 && s.out_w == s.in_w;
}

// True when im2col splits input rows into even and odd columns (im2col_stride2).
inline bool splits_rows(const Conv2dShape& s) { return s.stride_w == 2 && s.dilation_w == 1 && s.kernel_w >= 3; }

// Per-thread scratch: the im2col block (0), the block of Y or dY when it has several images (1),
// im2col_stride2's split input rows or a transposed block's bordered input rows (2), and the rows of
// col(X)^T of a transposed block (3); as int64_t, int32_t and uint64_t (each type its own buffers),
// slot 0 holds shifted_columns' tables.
struct ConvScratch;
template <class T>
T* thread_buffer(int which, int64_t count) {
  return thread_scratch<ConvScratch, 4, T>(which, count);
}

// Visits, for every row (c, r, s) of col and every output row p in [p0, p1), the offset of that
// stretch of Q columns in col (row stride ld), the offset of its input row plus the kernel's
// column offset in x (the group's channels of one image), and the valid columns [q_lo, q_hi)
// (empty when the input row is padding). Shared by im2col and its adjoint col2im.
template <class Visit>
void for_each_tap_row(const Conv2dShape& s, int64_t group_in, int64_t p0, int64_t p1, int64_t ld, Visit visit) {
  for (int64_t c = 0; c < group_in; ++c)
    for (int64_t r = 0; r < s.kernel_h; ++r)
      for (int64_t t = 0; t < s.kernel_w; ++t) {
        const int64_t row = (c * s.kernel_h + r) * s.kernel_w + t;
        const int64_t w_offset = t * s.dilation_w - s.pad_w;
        int64_t q_lo, q_hi;
        valid_columns(s, w_offset, q_lo, q_hi);
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t ih = p * s.stride_h - s.pad_h + r * s.dilation_h;
          const bool inside = ih >= 0 && ih < s.in_h;
          visit(row * ld + (p - p0) * s.out_w, c * s.in_h * s.in_w + ih * s.in_w + w_offset, inside ? q_lo : 0,
                inside ? q_hi : 0);
        }
      }
}

// im2col when stride is 1 in both directions, dilation_w is 1 and Q == W ("same" width): then one
// tap's row of col is its input plane shifted, so the valid output rows are ONE contiguous copy
// (the positions between rows that wrapped around are set to zero after it). Small images (8 x 8)
// would otherwise cost a loop per output row for 8 elements.
template <class T>
void im2col_shifted_planes(const Conv2dShape& s, const T* x, int64_t group_in, int64_t p0, int64_t p1, T* col,
                           int64_t ld) {
  const int64_t q_count = s.out_w, plane = s.in_h * s.in_w, n = (p1 - p0) * q_count;
  for (int64_t c = 0; c < group_in; ++c)
    for (int64_t r = 0; r < s.kernel_h; ++r) {
      const int64_t h_offset = r * s.dilation_h - s.pad_h;  // ih = p + h_offset
      const int64_t p_lo = std::clamp<int64_t>(-h_offset, p0, p1);
      const int64_t p_hi = std::clamp<int64_t>(s.in_h - h_offset, p_lo, p1);
      for (int64_t t = 0; t < s.kernel_w; ++t) {
        T* out = col + ((c * s.kernel_h + r) * s.kernel_w + t) * ld;
        const int64_t w_offset = t - s.pad_w;
        int64_t q_lo, q_hi;
        valid_columns(s, w_offset, q_lo, q_hi);
        if (p_lo == p_hi || q_lo == q_hi) {
          std::fill(out, out + n, T(0));
          continue;
        }
        const int64_t first = (p_lo - p0) * q_count + q_lo, last = (p_hi - 1 - p0) * q_count + q_hi;
        const T* in = x + c * plane + (p_lo + h_offset) * s.in_w + w_offset + q_lo;
        std::fill(out, out + first, T(0));
        std::memcpy(out + first, in, sizeof(T) * (last - first));
        std::fill(out + last, out + n, T(0));
        if (q_lo > 0 || q_hi < q_count)
          for (int64_t p = p_lo; p < p_hi; ++p) {
            T* row = out + (p - p0) * q_count;
            for (int64_t q = 0; q < q_lo; ++q) row[q] = T(0);
            for (int64_t q = q_hi; q < q_count; ++q) row[q] = T(0);
          }
      }
    }
}

// Words per tap of shifted_columns' validity bitmaps for output rows [p0, p1): the bits, then at
// least 64 spare ones.
inline int64_t shifted_columns_words(const Conv2dShape& s, int64_t p0, int64_t p1) {
  return (p1 - p0) * s.out_w / 64 + 2;
}

// Sets bits [lo, hi) of the bitmap `map` (bit i: bit i % 64 of word i / 64), a word at a time.
inline void set_bits(uint64_t* map, int64_t lo, int64_t hi) {
  auto ones_from = [](int64_t bit) { return ~uint64_t(0) << (bit % 64); };  // bits bit % 64 .. 63 of a word
  if (lo >= hi) return;
  const int64_t first = lo / 64, last = (hi - 1) / 64;
  const uint64_t last_mask = ~uint64_t(0) >> (63 - (hi - 1) % 64);  // bits 0 .. (hi - 1) % 64
  if (first == last) {
    map[first] |= ones_from(lo) & last_mask;
    return;
  }
  map[first] |= ones_from(lo);
  for (int64_t w = first + 1; w < last; ++w) map[w] = ~uint64_t(0);
  map[last] |= last_mask;
}

// column_panels.h's ShiftedColumns of col(X) (rows_are_shifted_planes) for output rows [p0, p1) of
// `images` images, a group of group_in channels (in_plane elements each) whose first plane is `x`:
// its tables written into the caller's `offsets` and `row_taps` (group_in * R * S each) and
// `tap_maps` (R * S * shifted_columns_words).
inline ShiftedColumns shifted_columns(const Conv2dShape& s, int64_t group_in, int64_t in_plane, const void* x,
                                      int64_t images, int64_t p0, int64_t p1, int64_t* offsets, int32_t* row_taps,
                                      uint64_t* tap_maps) {
  const int64_t taps = s.kernel_h * s.kernel_w, words = shifted_columns_words(s, p0, p1);
  std::fill(tap_maps, tap_maps + taps * words, uint64_t(0));
  for (int64_t r = 0; r < s.kernel_h; ++r)
    for (int64_t t = 0; t < s.kernel_w; ++t) {
      const int64_t h_offset = r * s.dilation_h - s.pad_h, w_offset = t - s.pad_w;
      uint64_t* map = tap_maps + (r * s.kernel_w + t) * words;
      int64_t q_lo, q_hi;
      valid_columns(s, w_offset, q_lo, q_hi);
      for (int64_t p = p0; p < p1; ++p)
        if (p + h_offset >= 0 && p + h_offset < s.in_h)
          set_bits(map, (p - p0) * s.out_w + q_lo, (p - p0) * s.out_w + q_hi);
      for (int64_t c = 0; c < group_in; ++c) {
        const int64_t row = (c * s.kernel_h + r) * s.kernel_w + t;
        offsets[row] = c * in_plane + (p0 + h_offset) * s.in_w + w_offset;
        row_taps[row] = static_cast<int32_t>(r * s.kernel_w + t);
      }
    }
  return {.x = x,
          .image_stride = s.in_channels * in_plane,
          .per_image = (p1 - p0) * s.out_w,
          .images = images,
          .k = group_in * taps,
          .row_offset = offsets,
          .row_tap = row_taps,
          .taps = static_cast<int>(taps),
          .tap_valid = tap_maps,
          .tap_words = words};
}

// even[j] = row[2j - pad], odd[j] = row[2j + 1 - pad] for j < half, zero outside the row's `width`.
template <class T>
void split_even_odd(const T* row, int64_t width, int64_t pad, int64_t half, T* even, T* odd) {
  const int64_t j_lo = std::min(half, (pad + 1) / 2);                       // from here 2j - pad >= 0
  const int64_t j_hi = std::clamp<int64_t>((width + pad) / 2, j_lo, half);  // and 2j + 1 - pad < width
  auto edge = [&](int64_t j) {
    const int64_t iw = 2 * j - pad;
    even[j] = iw >= 0 && iw < width ? row[iw] : T(0);
    odd[j] = iw + 1 >= 0 && iw + 1 < width ? row[iw + 1] : T(0);
  };
  for (int64_t j = 0; j < j_lo; ++j) edge(j);
  const T* in = row + 2 * j_lo - pad;
  for (int64_t j = j_lo; j < j_hi; ++j) {
    even[j] = in[2 * (j - j_lo)];
    odd[j] = in[2 * (j - j_lo) + 1];
  }
  for (int64_t j = j_hi; j < half; ++j) edge(j);
}

// Where an im2col block's element (row, column j) goes: a row-major matrix (row stride ld), or, with
// nr set, the GEMM's packed B panels (packed_b_layout: panels nr columns wide and `depth` rows deep).
template <class T>
struct ColumnLayout {
  T* data;
  int64_t ld;
  int64_t nr = 0, depth = 0;

  T* at(int64_t row, int64_t j) const { return nr ? data + (j / nr * depth + row) * nr + j % nr : data + row * ld + j; }
  // Copies n elements of src, or zeros when src is null, to (row, j .. j + n).
  void put(int64_t row, int64_t j, const T* src, int64_t n) const {
    while (n > 0) {
      const int64_t len = nr ? std::min(n, nr - j % nr) : n;
      T* dst = at(row, j);
      if (src) {
        std::memcpy(dst, src, sizeof(T) * len);
        src += len;
      } else {
        std::fill(dst, dst + len, T(0));
      }
      j += len;
      n -= len;
    }
  }
};

// im2col when splits_rows (ResNet's 7x7/2 stem): each input row the block reads is split once into the
// even and odd columns of its zero-padded self (about R / stride_h kernel rows read each input row),
// after which each of the S taps is one contiguous copy instead of a strided gather.
template <class T>
void im2col_stride2(const Conv2dShape& s, const T* x, int64_t group_in, int64_t p0, int64_t p1,
                    const ColumnLayout<T>& out) {
  const int64_t half = s.out_w + s.kernel_w / 2;  // tap t reads half-row t % 2 at [t / 2, t / 2 + Q)
  // The input rows [ih0, ih1) that output rows [p0, p1) read.
  const int64_t ih0 = std::max<int64_t>(0, p0 * s.stride_h - s.pad_h);
  const int64_t ih1 = std::min(s.in_h, (p1 - 1) * s.stride_h - s.pad_h + (s.kernel_h - 1) * s.dilation_h + 1);
  T* split = thread_buffer<T>(2, 2 * half * std::max<int64_t>(ih1 - ih0, 1));
  for (int64_t c = 0; c < group_in; ++c) {
    const T* plane = x + c * s.in_h * s.in_w;
    for (int64_t ih = ih0; ih < ih1; ++ih)
      split_even_odd(plane + ih * s.in_w, s.in_w, s.pad_w, half, split + 2 * half * (ih - ih0),
                     split + 2 * half * (ih - ih0) + half);
    for (int64_t r = 0; r < s.kernel_h; ++r)
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t row = (c * s.kernel_h + r) * s.kernel_w, j = (p - p0) * s.out_w;
        const int64_t ih = p * s.stride_h - s.pad_h + r * s.dilation_h;
        const T* even = ih < 0 || ih >= s.in_h ? nullptr : split + 2 * half * (ih - ih0);
        for (int64_t t = 0; t < s.kernel_w; ++t)
          out.put(row + t, j, even ? even + (t % 2) * half + t / 2 : nullptr, s.out_w);
      }
  }
}

// col[(c, r, s)][(p - p0) * Q + q] (row stride ld) for output rows [p0, p1) of one image's group.
template <class T>
void im2col(const Conv2dShape& s, const T* x, int64_t group_in, int64_t p0, int64_t p1, T* col, int64_t ld) {
  if (rows_are_shifted_planes(s)) return im2col_shifted_planes(s, x, group_in, p0, p1, col, ld);
  if (splits_rows(s)) return im2col_stride2(s, x, group_in, p0, p1, ColumnLayout<T>{col, ld});
  const int64_t sw = s.stride_w;
  // A strided 1x1 block reads a few rows of each channel: streams too short for the hardware
  // prefetcher, so the downsample's loop prefetches the same row two channels ahead (from memory,
  // 256 -> 512 channels at 56 x 56, batch 1: 7-8% faster on 1 thread, 13-19% on 2).
  const int64_t plane = s.in_h * s.in_w, ahead = 2 * plane, end = group_in * plane;
  for_each_tap_row(s, group_in, p0, p1, ld, [&](int64_t dst, int64_t src, int64_t q_lo, int64_t q_hi) {
    // Plain loops, not memcpy/fill: rows are often a few elements long (7 x 7 layers).
    T* out = col + dst;
    const T* in = x + src;
    for (int64_t q = 0; q < q_lo; ++q) out[q] = T(0);
    if (sw == 1) {
#pragma omp simd
      for (int64_t q = q_lo; q < q_hi; ++q) out[q] = in[q];
    } else if (sw == 2) {  // the strided 1x1 downsample: a constant stride the compiler vectorizes
      if (src + ahead < end)
        for (int64_t q = 2 * q_lo; q < 2 * q_hi; q += kCacheLineElements<T>) __builtin_prefetch(in + ahead + q);
      for (int64_t q = q_lo; q < q_hi; ++q) out[q] = in[2 * q];
    } else {
      for (int64_t q = q_lo; q < q_hi; ++q) out[q] = in[q * sw];
    }
    for (int64_t q = q_hi; q < s.out_w; ++q) out[q] = T(0);
  });
}

// The input rows a block of output rows [p0, p1) reads, zero-bordered so that every tap of every
// output pixel lies inside: `rows` x `width` per channel, row 0 being input row `first_row` and column 0
// input column -pad_w.
struct BorderedRows {
  int64_t first_row, rows, width;
  BorderedRows(const Conv2dShape& s, int64_t p0, int64_t p1)
      : first_row(p0 * s.stride_h - s.pad_h),
        rows(std::max<int64_t>(p1 - p0 - 1, 0) * s.stride_h + (s.kernel_h - 1) * s.dilation_h + 1),
        width(std::max<int64_t>(s.out_w - 1, 0) * s.stride_w + (s.kernel_w - 1) * s.dilation_w + 1) {}
  int64_t plane() const { return rows * width; }
};

// Channels [c0, c1) of one image's x (its group's planes) into `bordered` (the BorderedRows layout).
template <class T>
void border_rows(const Conv2dShape& s, const BorderedRows& g, const T* x, int64_t c0, int64_t c1, T* bordered) {
  const int64_t left = std::min(s.pad_w, g.width), copied = std::clamp<int64_t>(s.in_w, 0, g.width - left);
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t row = 0; row < g.rows; ++row) {
      T* out = bordered + c * g.plane() + row * g.width;
      const int64_t ih = g.first_row + row;
      if (ih < 0 || ih >= s.in_h) {
        std::fill(out, out + g.width, T(0));
        continue;
      }
      std::fill(out, out + left, T(0));
      std::copy(x + (c * s.in_h + ih) * s.in_w, x + (c * s.in_h + ih) * s.in_w + copied, out + left);
      std::fill(out + left + copied, out + g.width, T(0));
    }
}

// Rows [j0, j1) of col(X)^T for output rows [p0, p1) of one image (row j: pixel (p0 + j / Q, j % Q)),
// each CgRS long at dst + (j - j0) * ld: element (c, r, s) is the bordered input at that tap. One
// load per element, no test: the output of transposed blocks (Y^T = col^T W^T), whose GEMM reads rows
// along CgRS, without a column matrix to transpose.
template <class T>
void im2col_rows(const Conv2dShape& s, const BorderedRows& g, const T* bordered, int64_t group_in, int64_t j0,
                 int64_t j1, T* dst, int64_t ld) {
  const int64_t tap_row = s.dilation_h * g.width, tap_col = s.dilation_w;
  for (int64_t j = j0; j < j1; ++j) {
    const T* pixel = bordered + j / s.out_w * s.stride_h * g.width + j % s.out_w * s.stride_w;
    T* out = dst + (j - j0) * ld;
    for (int64_t c = 0; c < group_in; ++c) {
      const T* plane = pixel + c * g.plane();
      for (int64_t r = 0; r < s.kernel_h; ++r)
        for (int64_t t = 0; t < s.kernel_w; ++t) *out++ = plane[r * tap_row + t * tap_col];
    }
  }
}

// The adjoint of im2col: x[...] += col[...] over the same positions.
template <class T>
void col2im_add(const Conv2dShape& s, const T* col, int64_t group_in, int64_t p0, int64_t p1, int64_t ld, T* x) {
  const int64_t sw = s.stride_w;
  for_each_tap_row(s, group_in, p0, p1, ld, [&](int64_t src, int64_t dst, int64_t q_lo, int64_t q_hi) {
    const T* in = col + src;
    T* out = x + dst;
    if (sw == 1) {
#pragma omp simd
      for (int64_t q = q_lo; q < q_hi; ++q) out[q] += in[q];
    } else {
      for (int64_t q = q_lo; q < q_hi; ++q) out[q * sw] += in[q];
    }
  });
}
}  // namespace
}  // namespace deepkern::cpu
