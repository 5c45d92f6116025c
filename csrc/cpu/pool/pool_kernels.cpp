// The pooling kernels of pool_kernels.h, compiled once per ISA (a per-ISA source).
//
// Max and average pooling run band by band (pool_kernels.h: PoolBands): the band's padded input is
// split into its stride phases (space to depth), then every tap is one unit-stride pass over all the
// band's outputs, vectorized for this ISA, and the outputs are copied (and divided) into their
// rows. The average backward pass runs the same passes transposed: each tap adds the band's scaled
// output gradients into the sub-planes, which are then added back into the input's gradient. The
// max backward pass scatters by index; the adaptive windows have no fixed stride and are summed
// window by window.
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/pool/pool_kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// For the functions whose loops run along one row (copies between the input or output rows and a
// band, divisions): a CNN's pooled rows hold 4 to 56 elements, where 256-bit vectors leave shorter
// scalar tails than 512-bit ones. Out of line, so that the width applies to them alone: the tap
// passes over whole bands keep the full width. Without AVX-512 it changes nothing.
#define DEEPKERN_ROW_LOOPS __attribute__((noinline, target("prefer-vector-width=256")))

// Calls f with the stride as a compile-time constant for 1 and 2 (so the loops that split or merge
// the stride phases vectorize with (de-)interleaving accesses), as a plain integer otherwise.
template <class F>
void with_stride(int64_t stride, F&& f) {
  if (stride == 1)
    f(std::integral_constant<int64_t, 1>{});
  else if (stride == 2)
    f(std::integral_constant<int64_t, 2>{});
  else
    f(stride);
}

// One band (pool_kernels.h: PoolBands): output rows [oh0, oh0 + rows) of planes [p0, p0 + planes).
struct Band {
  int64_t p0, planes, oh0, rows;
};

// Calls f(band) for the bands covering output rows [begin, end) of the planes * out_h rows.
template <class F>
void for_each_band(const Pool2dShape& s, const PoolBands& bands, int64_t begin, int64_t end, F&& f) {
  for (int64_t r = begin; r < end;) {
    const int64_t p = r / s.out_h, oh0 = r % s.out_h;
    const Band band = bands.planes > 1 ? Band{p, std::min(bands.planes, (end - r) / s.out_h), 0, s.out_h}
                                       : Band{p, 1, oh0, std::min({bands.rows, s.out_h - oh0, end - r})};
    f(band);
    r += band.planes * band.rows;
  }
}

// The elements each tap pass covers: up to the last plane's last output row's outputs.
int64_t band_extent(const Pool2dShape& s, const PoolBands& bands, const Band& band) {
  return ((band.planes - 1) * bands.sub_rows + band.rows - 1) * bands.pitch + s.out_w;
}

// Elements of one sub-plane.
int64_t sub_plane_size(const PoolBands& bands) { return bands.planes * bands.sub_rows * bands.pitch; }

// The sub-plane elements tap (kh, kw) reads for a band's first output; the other outputs follow at
// the same offsets as in the band.
template <class T>
T* tap_input(const Pool2dShape& s, const PoolBands& bands, int64_t kh, int64_t kw, T* sub_planes) {
  const int64_t dr = kh * s.dilation_h, dc = kw * s.dilation_w;
  const int64_t sub = (dr % s.stride_h) * s.stride_w + dc % s.stride_w;
  return sub_planes + sub * sub_plane_size(bands) + dr / s.stride_h * bands.pitch + dc / s.stride_w;
}

// Calls edge(c, b, iw) or inside(c, b, iw) for every column c < pitch of a sub-plane row and column
// phase b < sw, iw = c * sw + b - pad_w its input column: inside() where the columns of every phase
// lie inside the input (a plain loop, vectorized with (de-)interleaving accesses), edge() elsewhere.
template <class S, class Edge, class Inside>
[[gnu::always_inline]] inline void for_each_row_column(const Pool2dShape& s, const PoolBands& bands, S sw, Edge&& edge,
                                                       Inside&& inside) {
  const int64_t lo = std::min(bands.pitch, (s.pad_w + sw - 1) / sw);
  const int64_t hi = std::clamp<int64_t>((s.in_w + s.pad_w) / sw, lo, bands.pitch);
  auto at_edge = [&](int64_t c) {
    for (int64_t b = 0; b < sw; ++b) edge(c, b, c * sw + b - s.pad_w);
  };
  for (int64_t c = 0; c < lo; ++c) at_edge(c);
  for (int64_t c = lo; c < hi; ++c)
    for (int64_t b = 0; b < sw; ++b) inside(c, b, c * sw + b - s.pad_w);
  for (int64_t c = hi; c < bands.pitch; ++c) at_edge(c);
}

// Calls row(a, r, ih) for every sub-plane row r and row phase a of a band's plane whose padded row
// lies inside the input (ih: its input row), and outside(a, r) for the others.
template <class Row, class Outside>
void for_each_plane_row(const Pool2dShape& s, const PoolBands& bands, const Band& band, Row&& row, Outside&& outside) {
  for (int64_t r = 0; r < bands.sub_rows; ++r)
    for (int64_t a = 0; a < s.stride_h; ++a) {
      const int64_t ih = (band.oh0 + r) * s.stride_h + a - s.pad_h;
      if (ih >= 0 && ih < s.in_h)
        row(a, r, ih);
      else
        outside(a, r);
    }
}

// The sub-planes of a band of x (the layout of PoolBands), `fill` outside the input.
template <class T, class S>
DEEPKERN_ROW_LOOPS void split_band(const Pool2dShape& s, const PoolBands& bands, S sw, const T* x, const Band& band,
                                   T fill, T* __restrict sub_planes) {
  const int64_t sub_size = sub_plane_size(bands);
  for (int64_t q = 0; q < band.planes; ++q) {
    const T* plane = x + (band.p0 + q) * s.in_h * s.in_w;
    for_each_plane_row(
        s, bands, band,
        [&](int64_t a, int64_t r, int64_t ih) {
          const T* __restrict in = plane + ih * s.in_w;
          T* dst = sub_planes + a * sw * sub_size + (q * bands.sub_rows + r) * bands.pitch;  // sub-plane (a, 0)
          for_each_row_column(
              s, bands, sw,
              [&](int64_t c, int64_t b, int64_t iw) { dst[b * sub_size + c] = iw >= 0 && iw < s.in_w ? in[iw] : fill; },
              [&](int64_t c, int64_t b, int64_t iw) { dst[b * sub_size + c] = in[iw]; });
        },
        [&](int64_t a, int64_t r) {
          for (int64_t b = 0; b < sw; ++b) {
            T* dst = sub_planes + (a * sw + b) * sub_size + (q * bands.sub_rows + r) * bands.pitch;
            std::fill(dst, dst + bands.pitch, fill);
          }
        });
  }
}

// Calls row(q, i, at, from) for output row i of plane q of a band: `at` its first element in the
// output, `from` in the band's outputs.
template <class Row>
void for_each_band_output(const Pool2dShape& s, const PoolBands& bands, const Band& band, Row&& row) {
  for (int64_t q = 0; q < band.planes; ++q)
    for (int64_t i = 0; i < band.rows; ++i)
      row(q, i, ((band.p0 + q) * s.out_h + band.oh0 + i) * s.out_w, (q * bands.sub_rows + i) * bands.pitch);
}

// The first in-bounds tap start + j * dilation (j < kernel) of a window, or -1 if none is.
int64_t first_tap(int64_t start, int64_t n_in, int64_t kernel, int64_t dilation) {
  const int64_t j = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  const int64_t pos = start + j * dilation;
  return j < kernel && pos < n_in ? pos : -1;
}

// ---- max ---------------------------------------------------------------------------------

// take ? a : b as a bit mask, so that the compiler's scalar loops have no data-dependent branch
// (random data would mispredict half of them); vector loops compile it to a blend.
template <class T>
T select(bool take, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;  // T: float, double, int32_t, int64_t
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U mask = U(0) - U(take);
  const U r = (ua & mask) | (ub & ~mask);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// One tap's pass over a band's n elements: acc = max(acc, in), taps[i] = tap where in won.
template <class T, bool kIndices>
void max_tap(const T* __restrict in, T* __restrict acc, PoolTapId<T>* __restrict taps, int64_t n, PoolTapId<T> tap) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = in[i];
    const bool take = (v > acc[i]) | (v != v);  // a NaN always takes over
    acc[i] = select(take, v, acc[i]);
    if constexpr (kIndices) taps[i] = select(take, tap, taps[i]);
  }
}

// PyTorch's index of output (oh, ow): the position of the tap its maximum came from, or (no tap
// took over from -inf) the window's first in-bounds tap, or -1 for a window over padding only.
template <class T, class S>
int64_t max_index(const Pool2dShape& s, S sw, int64_t oh, int64_t ow, PoolTapId<T> tap) {
  const int64_t h_start = oh * s.stride_h - s.pad_h, w_start = ow * sw - s.pad_w;
  if (tap >= 0) {
    const int64_t kh = tap / s.kernel_w, kw = tap % s.kernel_w;
    return (h_start + kh * s.dilation_h) * s.in_w + w_start + kw * s.dilation_w;
  }
  const int64_t ih0 = first_tap(h_start, s.in_h, s.kernel_h, s.dilation_h);
  const int64_t iw0 = first_tap(w_start, s.in_w, s.kernel_w, s.dilation_w);
  return ih0 < 0 || iw0 < 0 ? -1 : ih0 * s.in_w + iw0;
}

// The band's maxima acc (and their taps, when kIndices) into out (and their indices into ind).
template <class T, bool kIndices, class S>
DEEPKERN_ROW_LOOPS void store_max_band(const Pool2dShape& s, const PoolBands& bands, S sw, const Band& band,
                                       const T* acc, const PoolTapId<T>* taps, T* out, int64_t* ind) {
  for_each_band_output(s, bands, band, [&](int64_t, int64_t i, int64_t at, int64_t from) {
    for (int64_t ow = 0; ow < s.out_w; ++ow) out[at + ow] = acc[from + ow];
    if constexpr (kIndices)
      for (int64_t ow = 0; ow < s.out_w; ++ow) ind[at + ow] = max_index<T>(s, sw, band.oh0 + i, ow, taps[from + ow]);
  });
}

// A band of the output (and its indices into ind, when kIndices).
template <class T, bool kIndices, class S>
void max_pool_band(const Pool2dShape& s, const PoolBands& bands, S sw, const T* x, const Band& band, T* out,
                   int64_t* ind, const PoolBandScratch<T>& scratch) {
  const T lowest = -std::numeric_limits<T>::infinity();
  const int64_t n = band_extent(s, bands, band);
  T* acc = scratch.outputs;
  split_band(s, bands, sw, x, band, lowest, scratch.sub_planes);
  std::fill(acc, acc + n, lowest);
  if constexpr (kIndices) std::fill(scratch.taps, scratch.taps + n, PoolTapId<T>(-1));
  for (int64_t kh = 0; kh < s.kernel_h; ++kh)
    for (int64_t kw = 0; kw < s.kernel_w; ++kw)
      max_tap<T, kIndices>(tap_input(s, bands, kh, kw, scratch.sub_planes), acc, scratch.taps, n,
                           PoolTapId<T>(kh * s.kernel_w + kw));
  store_max_band<T, kIndices>(s, bands, sw, band, acc, scratch.taps, out, ind);
}

// ---- average -----------------------------------------------------------------------------

// dst[ow] = src[ow] / the divisor of (oh, ow) for ow < out_w. Windows wholly inside the input along
// W share one divisor, so the middle of the row is a plain vector loop.
template <class T, class S>
void divide_row(const Pool2dShape& s, S sw, int64_t oh, const AvgDivisor& div, const T* src, T* dst) {
  const int64_t end = s.out_w;
  if (div.divisor_override) {
    const T d = static_cast<T>(div.divisor_override);
    for (int64_t ow = 0; ow < end; ++ow) dst[ow] = src[ow] / d;
    return;
  }
  const bool with_pad = div.count_include_pad;
  const int64_t fh = window_extent(oh * s.stride_h - div.pad_h, s.in_h, div.kernel_h, div.pad_h, with_pad);
  // Inner windows: ow * sw - pad_w >= 0 and ow * sw - pad_w + kernel_w <= in_w.
  const int64_t inner_lo = std::min(end, (div.pad_w + sw - 1) / sw);
  const int64_t last = s.in_w - div.kernel_w + div.pad_w;
  const int64_t inner_hi = std::max(inner_lo, std::min(end, last < 0 ? 0 : last / sw + 1));
  auto edge = [&](int64_t ow) {
    const int64_t fw = window_extent(ow * sw - div.pad_w, s.in_w, div.kernel_w, div.pad_w, with_pad);
    dst[ow] = src[ow] / static_cast<T>(double(fh) * double(fw));
  };
  for (int64_t ow = 0; ow < inner_lo; ++ow) edge(ow);
  const T d = static_cast<T>(double(fh) * double(div.kernel_w));
  for (int64_t ow = inner_lo; ow < inner_hi; ++ow) dst[ow] = src[ow] / d;
  for (int64_t ow = inner_hi; ow < end; ++ow) edge(ow);
}

// Each output row of a band divided by its windows' divisors: from the band's layout into the
// output's rows, or (into_band) from the output's rows (a gradient) into the band's layout.
template <class T, class S>
DEEPKERN_ROW_LOOPS void divide_band(const Pool2dShape& s, const PoolBands& bands, S sw, const Band& band,
                                    const AvgDivisor& divisor, const T* src, T* dst, bool into_band) {
  for_each_band_output(s, bands, band, [&](int64_t, int64_t i, int64_t at, int64_t from) {
    if (into_band)
      divide_row(s, sw, band.oh0 + i, divisor, src + at, dst + from);
    else
      divide_row(s, sw, band.oh0 + i, divisor, src + from, dst + at);
  });
}

// A band of the output. (Average pooling has no dilation.)
template <class T, class S>
void avg_pool_band(const Pool2dShape& s, const PoolBands& bands, S sw, const T* x, const Band& band, T* out,
                   const AvgDivisor& divisor, const PoolBandScratch<T>& scratch) {
  const int64_t n = band_extent(s, bands, band);
  T* __restrict acc = scratch.outputs;
  split_band(s, bands, sw, x, band, T(0), scratch.sub_planes);
  std::fill(acc, acc + n, T(0));
  for (int64_t kh = 0; kh < s.kernel_h; ++kh)
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
      const T* __restrict in = tap_input(s, bands, kh, kw, scratch.sub_planes);
      for (int64_t i = 0; i < n; ++i) acc[i] += in[i];
    }
  divide_band(s, bands, sw, band, divisor, acc, out, false);
}

// grad_x += the band's gradient: sub-plane (a, b) at grad_planes + (a * sw + b) * sub_size (the
// layout of split_band), sub_size a SubSize (0 when every sub-plane is the same one). A plane's
// first band zeroes it first (so it is still in cache for the sums).
template <class T, class S, class SubSize>
DEEPKERN_ROW_LOOPS void merge_band(const Pool2dShape& s, const PoolBands& bands, S sw, const Band& band,
                                   const T* grad_planes, SubSize sub_size, T* grad_x) {
  const int64_t in_plane = s.in_h * s.in_w;
  for (int64_t q = 0; q < band.planes; ++q) {
    T* plane = grad_x + (band.p0 + q) * in_plane;
    if (band.oh0 == 0) std::fill(plane, plane + in_plane, T(0));
    for_each_plane_row(
        s, bands, band,
        [&](int64_t a, int64_t r, int64_t ih) {
          T* __restrict row = plane + ih * s.in_w;
          const T* src = grad_planes + a * sw * sub_size + (q * bands.sub_rows + r) * bands.pitch;  // sub-plane (a, 0)
          for_each_row_column(
              s, bands, sw,
              [&](int64_t c, int64_t b, int64_t iw) {
                if (iw >= 0 && iw < s.in_w) row[iw] += src[b * sub_size + c];
              },
              [&](int64_t c, int64_t b, int64_t iw) { row[iw] += src[b * sub_size + c]; });
        },
        [](int64_t, int64_t) {});
  }
}

// grad_x += the gradient from a band of the output, g the output gradient: the transpose of
// avg_pool_band. Windows that tile the input (kernel == stride, no dilation: VGG's 2x2/2) give
// every sub-plane exactly one tap at offset 0, so the scaled gradients themselves are each
// sub-plane's gradient and the tap passes are skipped.
template <class T, class S>
void avg_pool_backward_band(const Pool2dShape& s, const PoolBands& bands, S sw, const T* g, T* grad_x, const Band& band,
                            const AvgDivisor& divisor, const PoolBandScratch<T>& scratch) {
  const int64_t n = band_extent(s, bands, band);
  const bool tiling = s.kernel_h == s.stride_h && s.kernel_w == sw && s.dilation_h == 1 && s.dilation_w == 1;
  T* __restrict scaled = scratch.outputs;
  std::fill(scaled, scaled + n, T(0));  // the dropped lanes add zeros
  divide_band(s, bands, sw, band, divisor, g, scaled, true);
  if (tiling) {
    constexpr std::integral_constant<int64_t, 0> one_plane{};
    return merge_band(s, bands, sw, band, static_cast<const T*>(scaled), one_plane, grad_x);
  }
  const int64_t sub_size = sub_plane_size(bands);
  std::fill(scratch.sub_planes, scratch.sub_planes + s.stride_h * sw * sub_size, T(0));
  for (int64_t kh = 0; kh < s.kernel_h; ++kh)
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
      T* __restrict grad = tap_input(s, bands, kh, kw, scratch.sub_planes);
      for (int64_t i = 0; i < n; ++i) grad[i] += scaled[i];
    }
  merge_band(s, bands, sw, band, static_cast<const T*>(scratch.sub_planes), sub_size, grad_x);
}

// ---- adaptive average --------------------------------------------------------------------

using pool_windows::adaptive_end;
using pool_windows::adaptive_start;

// ---- the table's kernels -----------------------------------------------------------------

// True for 2x2 windows of stride 2 without padding or dilation, all inside the input: the common
// CNN pooling, which max_pool_2x2_rows computes straight from the input rows.
bool plain_2x2(const Pool2dShape& s) {
  return s.kernel_h == 2 && s.kernel_w == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 && s.pad_w == 0 &&
         s.dilation_h == 1 && s.dilation_w == 1 && 2 * s.out_h <= s.in_h && 2 * s.out_w <= s.in_w;
}

// Output rows [begin, end) of a plain_2x2 max pooling without indices: each output the fold of its
// four taps in max_pool_band's order (a NaN takes over), read where they lie. The banded path's
// splitting and copying cost ~5 ns an output on 8x8 planes (4.9 us for 64 of them).
template <class T>
DEEPKERN_ROW_LOOPS void max_pool_2x2_rows(const Pool2dShape& s, const T* x, T* out, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict top = x + ((r / s.out_h) * s.in_h + 2 * (r % s.out_h)) * s.in_w;
    const T* __restrict bottom = top + s.in_w;
    T* __restrict o = out + r * s.out_w;
    for (int64_t ow = 0; ow < s.out_w; ++ow) {
      T acc = -std::numeric_limits<T>::infinity();
      for (const T v : {top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]})
        acc = select((v > acc) | (v != v), v, acc);
      o[ow] = acc;
    }
  }
}

template <class T>
void max_pool_rows(const Pool2dShape& s, const PoolBands& bands, const T* x, T* out, int64_t* indices, int64_t begin,
                   int64_t end, const PoolBandScratch<T>& scratch) {
  if (!indices && plain_2x2(s)) return max_pool_2x2_rows(s, x, out, begin, end);
  with_stride(s.stride_w, [&](auto sw) {
    for_each_band(s, bands, begin, end, [&](const Band& band) {
      if (indices)
        max_pool_band<T, true>(s, bands, sw, x, band, out, indices, scratch);
      else
        max_pool_band<T, false>(s, bands, sw, x, band, out, nullptr, scratch);
    });
  });
}

template <class T>
void max_pool_backward_planes(const Pool2dShape& s, const T* grad_out, const int64_t* indices, T* grad_x, int64_t begin,
                              int64_t end) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  for (int64_t p = begin; p < end; ++p) {
    T* gx = grad_x + p * in_plane;
    const T* g = grad_out + p * out_plane;
    const int64_t* ind = indices + p * out_plane;
    std::fill(gx, gx + in_plane, T(0));
    for (int64_t i = 0; i < out_plane; ++i)
      if (ind[i] >= 0) gx[ind[i]] += g[i];
  }
}

template <class T>
void avg_pool_rows(const Pool2dShape& s, const PoolBands& bands, const T* x, T* out, const AvgDivisor& divisor,
                   int64_t begin, int64_t end, const PoolBandScratch<T>& scratch) {
  with_stride(s.stride_w, [&](auto sw) {
    for_each_band(s, bands, begin, end,
                  [&](const Band& band) { avg_pool_band(s, bands, sw, x, band, out, divisor, scratch); });
  });
}

template <class T>
void avg_pool_backward_planes(const Pool2dShape& s, const PoolBands& bands, const T* grad_out, T* grad_x,
                              const AvgDivisor& divisor, int64_t begin, int64_t end,
                              const PoolBandScratch<T>& scratch) {
  with_stride(s.stride_w, [&](auto sw) {
    for_each_band(s, bands, begin * s.out_h, end * s.out_h, [&](const Band& band) {
      avg_pool_backward_band(s, bands, sw, grad_out, grad_x, band, divisor, scratch);
    });
  });
}

template <class T>
void adaptive_avg_pool_planes(const Pool2dShape& s, const T* x, T* out, int64_t begin, int64_t end) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  for (int64_t p = begin; p < end; ++p) {
    const T* plane = x + p * in_plane;
    T* o = out + p * out_plane;
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const int64_t h0 = adaptive_start(oh, s.in_h, s.out_h), h1 = adaptive_end(oh, s.in_h, s.out_h);
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const int64_t w0 = adaptive_start(ow, s.in_w, s.out_w), w1 = adaptive_end(ow, s.in_w, s.out_w);
        T sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) sum += plane[ih * s.in_w + iw];
        o[oh * s.out_w + ow] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
  }
}

template <class T>
void adaptive_avg_pool_backward_planes(const Pool2dShape& s, const T* grad_out, T* grad_x, int64_t begin, int64_t end) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  for (int64_t p = begin; p < end; ++p) {
    const T* g = grad_out + p * out_plane;
    T* gx = grad_x + p * in_plane;
    std::fill(gx, gx + in_plane, T(0));
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const int64_t h0 = adaptive_start(oh, s.in_h, s.out_h), h1 = adaptive_end(oh, s.in_h, s.out_h);
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const int64_t w0 = adaptive_start(ow, s.in_w, s.out_w), w1 = adaptive_end(ow, s.in_w, s.out_w);
        const T share = g[oh * s.out_w + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) gx[ih * s.in_w + iw] += share;
      }
    }
  }
}

template <class T>
constexpr PoolKernels<T> kernels_of = {
    .max_pool_rows = &max_pool_rows<T>,
    .max_pool_backward_planes = &max_pool_backward_planes<T>,
    .avg_pool_rows = &avg_pool_rows<T>,
    .avg_pool_backward_planes = &avg_pool_backward_planes<T>,
    .adaptive_avg_pool_planes = &adaptive_avg_pool_planes<T>,
    .adaptive_avg_pool_backward_planes = &adaptive_avg_pool_backward_planes<T>,
};

}  // namespace

const KernelsByType<PoolKernels> pool_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
