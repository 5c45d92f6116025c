// Pooling kernels. A forward output row is built tap by tap: for each in-bounds kernel row and
// kernel column, one pass over the output positions that tap keeps inside the input, so the
// inner loop reads the input row at a fixed stride and updates the output row elementwise
// (compiled as vector code; the rows stay in L1). The backward passes scatter the same way.
// Average pooling sums rows of very few outputs window by window instead; the adaptive windows
// have no fixed stride and are summed window by window.
#include "cpu/pool/pool.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "core/threading.h"

namespace deepkern::cpu {
namespace {

// Below this many elements touched a call runs on the calling thread alone.
constexpr int64_t kMinParallelElements = int64_t(1) << 15;
// Average-pool output rows shorter than this are summed window by window (avg_pool_row_narrow).
constexpr int64_t kNarrowRow = 5;
// Output positions scaled at a time in the average-pool backward pass (a stack buffer).
constexpr int64_t kChunk = 256;

int threads_for(int64_t elements, int64_t units) {
  if (elements < kMinParallelElements) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), units)));
}

// Runs body(begin, end) on contiguous shares of [0, units) on `threads` threads.
template <class Body>
void split(int64_t units, int threads, Body&& body) {
  run_on_threads(threads, [&](int t) {
    body(units * t / threads, units * (t + 1) / threads);
  });
}

// Calls f with the stride as a compile-time constant for 1 and 2 (so the loop that uses it
// vectorizes with contiguous or de-interleaving loads), as a plain integer otherwise.
template <class F>
void with_stride(int64_t stride, F&& f) {
  if (stride == 1) f(std::integral_constant<int64_t, 1>{});
  else if (stride == 2) f(std::integral_constant<int64_t, 2>{});
  else f(stride);
}

// The output positions [lo, hi) of [0, n_out) whose tap o * stride + offset lies in [0, n_in).
struct Range {
  int64_t lo, hi;
};
template <class S>
Range valid_range(int64_t n_out, int64_t n_in, S stride, int64_t offset) {
  const int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const int64_t last = n_in - 1 - offset;  // o * stride <= last
  const int64_t hi = last < 0 ? 0 : std::min(n_out, last / stride + 1);
  return {lo, std::max(lo, hi)};
}

// The first in-bounds tap start + j * dilation (j < kernel) of a window, or -1 if none is.
int64_t first_tap(int64_t start, int64_t n_in, int64_t kernel, int64_t dilation) {
  const int64_t j = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  const int64_t pos = start + j * dilation;
  return j < kernel && pos < n_in ? pos : -1;
}

// ---- max ---------------------------------------------------------------------------------

// take ? a : b as a bit mask, so that the compiler's scalar loop tails have no data-dependent
// branch (random data would mispredict half of them); vector loops compile it to a blend.
template <class T>
T select(bool take, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;  // T: float, double, int64_t
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const U mask = U(0) - U(take);
  const U r = (ua & mask) | (ub & ~mask);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// One tap's pass over the output positions [lo, hi) it keeps in bounds: input in[ow * sw + off].
template <class T, bool kIndices, class S>
void max_tap(const T* __restrict in, T* __restrict out, int64_t* __restrict ind, int64_t lo, int64_t hi, S sw,
             int64_t off, int64_t row_base) {
  for (int64_t ow = lo; ow < hi; ++ow) {
    const int64_t iw = ow * sw + off;
    const T v = in[iw];
    const bool take = (v > out[ow]) | (v != v);  // a NaN always takes over
    out[ow] = select(take, v, out[ow]);
    if constexpr (kIndices) ind[ow] = select(take, row_base + iw, ind[ow]);
  }
}

// out[0, out_w) = output row oh of one plane, and ind its indices when kIndices.
template <class T, bool kIndices, class S>
void max_pool_row(const Pool2dShape& s, S sw, const T* plane, int64_t oh, T* out, int64_t* ind) {
  const int64_t ow_n = s.out_w, w = s.in_w;
  std::fill(out, out + ow_n, -std::numeric_limits<T>::infinity());
  const int64_t h_start = oh * s.stride_h - s.pad_h;
  if constexpr (kIndices) {  // PyTorch's starting index: the window's first in-bounds tap
    const int64_t ih0 = first_tap(h_start, s.in_h, s.kernel_h, s.dilation_h);
    // Windows from left_end on start inside the input (and every window starts before in_w).
    const int64_t left_end = std::min(ow_n, (s.pad_w + sw - 1) / sw);
    for (int64_t ow = 0; ow < left_end; ++ow) {
      const int64_t iw0 = first_tap(ow * sw - s.pad_w, w, s.kernel_w, s.dilation_w);
      ind[ow] = ih0 < 0 || iw0 < 0 ? -1 : ih0 * w + iw0;
    }
    for (int64_t ow = left_end; ow < ow_n; ++ow) ind[ow] = ih0 < 0 ? -1 : ih0 * w + ow * sw - s.pad_w;
  }
  for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
    const int64_t ih = h_start + kh * s.dilation_h;
    if (ih < 0 || ih >= s.in_h) continue;
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
      const int64_t off = kw * s.dilation_w - s.pad_w;
      const Range r = valid_range(ow_n, w, sw, off);
      max_tap<T, kIndices>(plane + ih * w, out, ind, r.lo, r.hi, sw, off, ih * w);
    }
  }
}

// ---- average -----------------------------------------------------------------------------

// The divisor's factor along one axis for the window starting at `start` (PyTorch's rule).
int64_t window_extent(int64_t start, int64_t n_in, int64_t kernel, int64_t pad, bool count_include_pad) {
  const int64_t end = std::min(start + kernel, n_in + pad);
  if (count_include_pad) return end - start;
  return std::min(end, n_in) - std::max<int64_t>(start, 0);
}

// dst[ow - begin] = src[ow] / divisor(oh, ow) for ow in [begin, end). Windows wholly inside the
// input along W share one divisor, so the middle of the row is a plain vector loop.
template <class T, class S>
void divide_row(const Pool2dShape& s, S sw, int64_t oh, bool count_include_pad, int64_t divisor_override,
                const T* src, T* dst, int64_t begin, int64_t end) {
  if (divisor_override) {
    const T d = static_cast<T>(divisor_override);
    for (int64_t ow = begin; ow < end; ++ow) dst[ow - begin] = src[ow] / d;
    return;
  }
  const int64_t fh = window_extent(oh * s.stride_h - s.pad_h, s.in_h, s.kernel_h, s.pad_h, count_include_pad);
  // Inner windows: ow * sw - pad_w >= 0 and ow * sw - pad_w + kernel_w <= in_w.
  const int64_t inner_lo = std::min(end, std::max(begin, (s.pad_w + sw - 1) / sw));
  const int64_t last = s.in_w - s.kernel_w + s.pad_w;
  const int64_t inner_hi = std::max(inner_lo, std::min(end, last < 0 ? 0 : last / sw + 1));
  auto edge = [&](int64_t ow) {
    const int64_t fw = window_extent(ow * sw - s.pad_w, s.in_w, s.kernel_w, s.pad_w, count_include_pad);
    dst[ow - begin] = src[ow] / static_cast<T>(fh * fw);
  };
  for (int64_t ow = begin; ow < inner_lo; ++ow) edge(ow);
  const T d = static_cast<T>(fh * s.kernel_w);
  for (int64_t ow = inner_lo; ow < inner_hi; ++ow) dst[ow - begin] = src[ow] / d;
  for (int64_t ow = inner_hi; ow < end; ++ow) edge(ow);
}

template <class T, class S>
void avg_tap(const T* __restrict in, T* __restrict out, int64_t lo, int64_t hi, S sw, int64_t off) {
  for (int64_t ow = lo; ow < hi; ++ow) out[ow] += in[ow * sw + off];
}

// out[0, out_w) = output row oh of one plane.
template <class T, class S>
void avg_pool_row(const Pool2dShape& s, S sw, const T* plane, int64_t oh, T* out, bool count_include_pad,
                  int64_t divisor_override) {
  const int64_t ow_n = s.out_w, w = s.in_w;
  std::fill(out, out + ow_n, T(0));
  const int64_t h_start = oh * s.stride_h - s.pad_h;
  for (int64_t kh = std::max<int64_t>(0, -h_start); kh < s.kernel_h && h_start + kh < s.in_h; ++kh) {
    for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
      const int64_t off = kw - s.pad_w;
      const Range r = valid_range(ow_n, w, sw, off);
      avg_tap(plane + (h_start + kh) * w, out, r.lo, r.hi, sw, off);
    }
  }
  divide_row(s, sw, oh, count_include_pad, divisor_override, out, out, 0, ow_n);
}

// avg_pool_row for rows of fewer than kNarrowRow outputs: one window at a time, since tap-by-tap
// passes over a few outputs would be mostly loop overhead. (Max pooling keeps the tap passes: its
// select chain per window is bound by latency.)
template <class T, class S>
void avg_pool_row_narrow(const Pool2dShape& s, S sw, const T* plane, int64_t oh, T* out, bool count_include_pad,
                         int64_t divisor_override) {
  const int64_t h_start = oh * s.stride_h - s.pad_h, w = s.in_w;
  const int64_t h0 = std::max<int64_t>(h_start, 0), h1 = std::min(h_start + s.kernel_h, s.in_h);
  for (int64_t ow = 0; ow < s.out_w; ++ow) {
    const int64_t w_start = ow * sw - s.pad_w;
    const int64_t w0 = std::max<int64_t>(w_start, 0), w1 = std::min(w_start + s.kernel_w, w);
    T sum = 0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += plane[ih * w + iw];
    out[ow] = sum;
  }
  divide_row(s, sw, oh, count_include_pad, divisor_override, out, out, 0, s.out_w);
}

// The scatter of one tap: gx[ow * sw + off] += scaled[ow - begin] for ow in [lo, hi).
template <class T, class S>
void avg_tap_backward(const T* __restrict scaled, T* __restrict gx, int64_t begin, int64_t lo, int64_t hi, S sw,
                      int64_t off) {
  for (int64_t ow = lo; ow < hi; ++ow) gx[ow * sw + off] += scaled[ow - begin];
}

// gx = the gradient of one input plane from its output plane's gradient g.
template <class T, class S>
void avg_pool_backward_plane(const Pool2dShape& s, S sw, const T* g, T* gx, bool count_include_pad,
                             int64_t divisor_override) {
  const int64_t w = s.in_w;
  std::fill(gx, gx + s.in_h * w, T(0));
  T scaled[kChunk];
  for (int64_t oh = 0; oh < s.out_h; ++oh) {
    const int64_t h_start = oh * s.stride_h - s.pad_h;
    for (int64_t begin = 0; begin < s.out_w; begin += kChunk) {
      const int64_t end = std::min(s.out_w, begin + kChunk);
      divide_row(s, sw, oh, count_include_pad, divisor_override, g + oh * s.out_w, scaled, begin, end);
      for (int64_t kh = std::max<int64_t>(0, -h_start); kh < s.kernel_h && h_start + kh < s.in_h; ++kh) {
        for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
          const int64_t off = kw - s.pad_w;
          const Range r = valid_range(end, w, sw, off);
          avg_tap_backward(scaled, gx + (h_start + kh) * w, begin, std::max(r.lo, begin), r.hi, sw, off);
        }
      }
    }
  }
}

// ---- adaptive average --------------------------------------------------------------------

int64_t adaptive_start(int64_t i, int64_t n_in, int64_t n_out) { return i * n_in / n_out; }
int64_t adaptive_end(int64_t i, int64_t n_in, int64_t n_out) { return ((i + 1) * n_in + n_out - 1) / n_out; }

// Runs row(sw, p, oh, r) for the output rows r = p * out_h + oh in [0, planes * out_h) on the
// threads, with the W stride sw as a compile-time constant where it is 1 or 2.
template <class Row>
void for_each_output_row(const Pool2dShape& s, Row&& row) {
  const int64_t rows = s.planes * s.out_h;
  with_stride(s.stride_w, [&](auto sw) {
    split(rows, threads_for(s.planes * s.in_h * s.in_w, rows), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin, p = begin / s.out_h, oh = begin % s.out_h; r < end; ++r) {
        row(sw, p, oh, r);
        if (++oh == s.out_h) oh = 0, ++p;
      }
    });
  });
}

}  // namespace

template <class T>
void max_pool2d(const Pool2dShape& s, const T* x, T* out, int64_t* indices) {
  const int64_t in_plane = s.in_h * s.in_w;
  for_each_output_row(s, [&](auto sw, int64_t p, int64_t oh, int64_t r) {
    if (indices)
      max_pool_row<T, true>(s, sw, x + p * in_plane, oh, out + r * s.out_w, indices + r * s.out_w);
    else
      max_pool_row<T, false>(s, sw, x + p * in_plane, oh, out + r * s.out_w, nullptr);
  });
}

template <class T>
void max_pool2d_backward(const Pool2dShape& s, const T* grad_out, const int64_t* indices, T* grad_x) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  split(s.planes, threads_for(s.planes * in_plane, s.planes), [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      T* gx = grad_x + p * in_plane;
      const T* g = grad_out + p * out_plane;
      const int64_t* ind = indices + p * out_plane;
      std::fill(gx, gx + in_plane, T(0));
      for (int64_t i = 0; i < out_plane; ++i) {
        const int64_t at = ind[i];
        if (at >= 0 && at < in_plane) {
          gx[at] += g[i];
        } else if (at != -1) {
          throw std::invalid_argument("index " + std::to_string(at) + " at flat position " +
                                      std::to_string(p * out_plane + i) + " is outside [0, " +
                                      std::to_string(in_plane) + ") (H*W of the input)");
        }
      }
    }
  });
}

template <class T>
void avg_pool2d(const Pool2dShape& s, const T* x, T* out, bool count_include_pad, int64_t divisor_override) {
  const int64_t in_plane = s.in_h * s.in_w;
  const bool narrow = s.out_w < kNarrowRow;
  for_each_output_row(s, [&](auto sw, int64_t p, int64_t oh, int64_t r) {
    if (narrow)
      avg_pool_row_narrow(s, sw, x + p * in_plane, oh, out + r * s.out_w, count_include_pad, divisor_override);
    else
      avg_pool_row(s, sw, x + p * in_plane, oh, out + r * s.out_w, count_include_pad, divisor_override);
  });
}

template <class T>
void avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x, bool count_include_pad,
                         int64_t divisor_override) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  with_stride(s.stride_w, [&](auto sw) {
    split(s.planes, threads_for(s.planes * in_plane, s.planes), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p)
        avg_pool_backward_plane(s, sw, grad_out + p * out_plane, grad_x + p * in_plane, count_include_pad,
                                divisor_override);
    });
  });
}

template <class T>
void adaptive_avg_pool2d(const Pool2dShape& s, const T* x, T* out) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  split(s.planes, threads_for(s.planes * in_plane, s.planes), [&](int64_t begin, int64_t end) {
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
  });
}

template <class T>
void adaptive_avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x) {
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  split(s.planes, threads_for(s.planes * in_plane, s.planes), [&](int64_t begin, int64_t end) {
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
  });
}

#define DEEPKERN_POOL_INSTANTIATE(T)                                                                \
  template void max_pool2d<T>(const Pool2dShape&, const T*, T*, int64_t*);                          \
  template void max_pool2d_backward<T>(const Pool2dShape&, const T*, const int64_t*, T*);           \
  template void avg_pool2d<T>(const Pool2dShape&, const T*, T*, bool, int64_t);                     \
  template void avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*, bool, int64_t);            \
  template void adaptive_avg_pool2d<T>(const Pool2dShape&, const T*, T*);                           \
  template void adaptive_avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*);
DEEPKERN_POOL_INSTANTIATE(float)
DEEPKERN_POOL_INSTANTIATE(double)
#undef DEEPKERN_POOL_INSTANTIATE

}  // namespace deepkern::cpu
