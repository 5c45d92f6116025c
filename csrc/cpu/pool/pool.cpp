// Pooling: splits each op's output rows (forward) or planes (backward) over threads and runs the
// active ISA's kernels (pool_kernels.cpp) on each share.
#include "cpu/pool/pool.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/pool/pool_kernels.h"

namespace deepkern::cpu {
namespace {

// Below this many elements touched a call runs on the calling thread alone.
constexpr int64_t kMinParallelElements = int64_t(1) << 15;

template <class T>
const PoolKernels<T>& dispatched_kernels() {
  return dispatch(IsaFamily::pool, IsaTables{generic::pool_kernels, avx2::pool_kernels, avx512::pool_kernels}).of<T>();
}

// Elements of a band's sub-planes (pool_kernels.h: PoolBands): 16 KB of float, so that a band stays
// in L1 while its taps pass over it. Measured (batch 32, C=128 28x28 2x2 max pooling, one thread):
// 8 and 16 KB 1.44-1.46 ms, 32 KB 2.0 ms, 128 KB 2.1 ms (a band's input is read in one burst, then
// computed on with the memory idle).
constexpr int64_t kBandElements = int64_t(1) << 12;

// The bands of the max and average kernels for `s`: as many whole planes as fit kBandElements, or
// else as many output rows of one plane (at least one).
PoolBands plan_bands(const Pool2dShape& s) {
  const int64_t pitch = s.out_w + (s.kernel_w - 1) * s.dilation_w / s.stride_w;
  const int64_t extra_rows = (s.kernel_h - 1) * s.dilation_h / s.stride_h;
  const int64_t per_row = std::max<int64_t>(1, s.stride_h * s.stride_w * pitch);
  const int64_t plane_rows = s.out_h + extra_rows;
  if (plane_rows * per_row <= kBandElements)
    return {kBandElements / (plane_rows * per_row), s.out_h, pitch, plane_rows};
  const int64_t rows = std::clamp<int64_t>(kBandElements / per_row - extra_rows, 1, std::max<int64_t>(s.out_h, 1));
  return {1, rows, pitch, rows + extra_rows};
}

// `s` with the taps that reach no input element of any window dropped from both ends of each axis,
// so the work and the band scratch follow the input, not a window that is mostly padding. Exact for
// the maxima and the sums (the dropped taps read only padding); averages take their divisors from
// the unclipped shape (AvgDivisor). Tap t of an axis reads input positions
// o * stride - pad + t * dilation (o < out): inside [0, in) for some o only if t lies in
// [first, last]; first is kept <= pad / dilation so that the padding stays >= 0. Returns false
// (and leaves `s` as it was) when no tap of an axis reaches the input (or it has no window).
bool clip_taps_to_input(Pool2dShape& s) {
  const auto clip = [](int64_t in, int64_t out, int64_t& kernel, int64_t stride, int64_t& pad, int64_t dilation) {
    const int64_t reach = pad - (out - 1) * stride;  // tap t reaches the input only if t * dilation >= reach
    const int64_t first = std::min(reach > 0 ? (reach + dilation - 1) / dilation : 0, pad / dilation);
    const int64_t last = std::min(kernel - 1, (in - 1 + pad) / dilation);
    if (in <= 0 || out <= 0 || last < first) return false;
    kernel = last - first + 1;
    pad -= first * dilation;
    return true;
  };
  Pool2dShape clipped = s;
  if (!clip(s.in_h, s.out_h, clipped.kernel_h, s.stride_h, clipped.pad_h, s.dilation_h) ||
      !clip(s.in_w, s.out_w, clipped.kernel_w, s.stride_w, clipped.pad_w, s.dilation_w))
    return false;
  s = clipped;
  return true;
}

// The divisors of average pooling over the caller's shape `s`.
AvgDivisor avg_divisor(const Pool2dShape& s, bool count_include_pad, int64_t divisor_override) {
  return {s.kernel_h, s.kernel_w, s.pad_h, s.pad_w, count_include_pad, divisor_override};
}

// True when the windows lie farther apart than the input is long along an axis with several of them
// (stride > input). The taps that reach the input are then stretches far apart in one long range,
// which the band kernels would all visit (as many as stride * outputs); the direct kernels below
// visit each window's in-bounds taps, whose count the input bounds. With stride <= input the
// clipped range holds at most twice the input's taps (padding <= kernel / 2).
bool windows_apart(const Pool2dShape& s) {
  return (s.out_h > 1 && s.stride_h > s.in_h) || (s.out_w > 1 && s.stride_w > s.in_w);
}

// How a max or average pooling call runs: `shape` for the band kernels (its taps clipped to the
// input, and stride 1 along an axis of one window, whose stride no window uses: the band scratch
// grows with the stride), or the direct kernels over the caller's shape when the windows lie apart,
// the output or the input is empty or no tap reaches the input (nothing for the bands to cover).
struct PoolPlan {
  Pool2dShape shape;
  bool direct;
};

PoolPlan plan_pool(const Pool2dShape& caller) {
  Pool2dShape s = caller;
  if (s.out_h <= 1) s.stride_h = 1;
  if (s.out_w <= 1) s.stride_w = 1;
  if (windows_apart(s) || !clip_taps_to_input(s)) return {caller, true};
  return {s, false};
}

using pool_windows::axis_taps;
using pool_windows::AxisTaps;

// Calls tap(plane, output, input) for every in-bounds tap of every window of planes [begin, end),
// taps in row-major order; output and input are flat positions in their planes.
template <class Tap>
void for_each_window_tap(const Pool2dShape& s, int64_t begin, int64_t end, Tap tap) {
  for (int64_t p = begin; p < end; ++p)
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const AxisTaps rows = axis_taps(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const AxisTaps cols = axis_taps(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
        for (int64_t i = 0; i < rows.count; ++i)
          for (int64_t j = 0; j < cols.count; ++j)
            tap(p, oh * s.out_w + ow, (rows.first + i * rows.step) * s.in_w + cols.first + j * cols.step);
      }
    }
}

// max_pool2d (pool.h) window by window: the first in-bounds tap, then any larger one or NaN.
template <class T>
void max_pool_direct(const Pool2dShape& s, const T* x, T* out, int64_t* indices, int64_t begin, int64_t end) {
  const int64_t out_plane = s.out_h * s.out_w, in_plane = s.in_h * s.in_w;
  std::vector<int64_t> at(static_cast<size_t>(out_plane));
  for (int64_t p = begin; p < end; ++p) {
    T* o = out + p * out_plane;
    std::fill(o, o + out_plane, -std::numeric_limits<T>::infinity());
    std::fill(at.begin(), at.end(), int64_t(-1));
    for_each_window_tap(s, p, p + 1, [&](int64_t, int64_t i, int64_t pos) {
      const T v = x[p * in_plane + pos];
      if (at[i] < 0 || v > o[i] || v != v) {
        o[i] = v;
        at[i] = pos;
      }
    });
    if (indices) std::copy(at.begin(), at.end(), indices + p * out_plane);
  }
}

// avg_pool2d (pool.h) window by window, or (backward) its transpose.
template <class T>
void avg_pool_direct(const Pool2dShape& s, const AvgDivisor& d, const T* src, T* dst, bool backward, int64_t begin,
                     int64_t end) {
  const int64_t out_plane = s.out_h * s.out_w, in_plane = s.in_h * s.in_w;
  auto divisor = [&](int64_t i) {
    if (d.divisor_override) return T(d.divisor_override);
    const int64_t oh = i / s.out_w, ow = i % s.out_w;
    const int64_t fh = window_extent(oh * s.stride_h - d.pad_h, s.in_h, d.kernel_h, d.pad_h, d.count_include_pad);
    const int64_t fw = window_extent(ow * s.stride_w - d.pad_w, s.in_w, d.kernel_w, d.pad_w, d.count_include_pad);
    return static_cast<T>(double(fh) * double(fw));
  };
  const int64_t dst_plane = backward ? in_plane : out_plane;
  std::fill(dst + begin * dst_plane, dst + end * dst_plane, T(0));
  for_each_window_tap(s, begin, end, [&](int64_t p, int64_t i, int64_t pos) {
    if (backward)
      dst[p * in_plane + pos] += src[p * out_plane + i] / divisor(i);
    else
      dst[p * out_plane + i] += src[p * in_plane + pos];
  });
  if (!backward)
    for (int64_t p = begin; p < end; ++p)
      for (int64_t i = 0; i < out_plane; ++i) dst[p * out_plane + i] /= divisor(i);
}

// The flat position of the first of `count` indices outside [0, in_plane) other than -1, or -1
// when there is none: a branch-free pass (it vectorizes) finds whether there is one. As unsigned,
// index + 1 maps -1 and [0, in_plane) onto [0, in_plane] and every other index above it.
int64_t first_bad_index(const int64_t* indices, int64_t count, int64_t in_plane) {
  const auto bad = [&](int64_t i) { return uint64_t(indices[i]) + 1 > uint64_t(in_plane); };
  bool any = false;
  for (int64_t i = 0; i < count; ++i) any |= bad(i);
  if (any)
    for (int64_t i = 0; i < count; ++i)
      if (bad(i)) return i;
  return -1;
}

struct PoolScratch;  // this family's thread_scratch tag

// The calling thread's buffers for the band kernels (taps: for max pooling with indices).
template <class T>
PoolBandScratch<T> band_scratch(const Pool2dShape& s, const PoolBands& bands, bool taps) {
  const int64_t outputs = bands.planes * bands.sub_rows * bands.pitch;
  return {thread_scratch<PoolScratch, 3, T>(0, s.stride_h * s.stride_w * outputs),
          thread_scratch<PoolScratch, 3, T>(1, outputs),
          taps ? thread_scratch<PoolScratch, 3, PoolTapId<T>>(2, outputs) : nullptr};
}

// Runs body(begin, end) on contiguous shares of [0, units) on threads (one share when the input
// is small; none when there are no units: the body's scratch may follow a size that no array has).
template <class Body>
void split(const Pool2dShape& s, int64_t units, Body&& body) {
  if (units <= 0) return;
  const int threads = s.planes * s.in_h * s.in_w < kMinParallelElements
                          ? 1
                          : static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), units)));
  run_on_threads(threads, [&](int t) { body(units * t / threads, units * (t + 1) / threads); });
}

// split() over the output rows for the forward band kernels: in whole planes when a band holds
// several.
template <class Body>
void split_output_rows(const Pool2dShape& s, const PoolBands& bands, Body&& body) {
  if (bands.planes > 1)
    split(s, s.planes, [&](int64_t begin, int64_t end) { body(begin * s.out_h, end * s.out_h); });
  else
    split(s, s.planes * s.out_h, body);
}

}  // namespace

template <class T>
void max_pool2d(const Pool2dShape& shape, const T* x, T* out, int64_t* indices) {
  const PoolPlan plan = plan_pool(shape);
  const Pool2dShape& s = plan.shape;
  if (plan.direct)
    return split(s, s.planes, [&](int64_t begin, int64_t end) { max_pool_direct(s, x, out, indices, begin, end); });
  const PoolKernels<T>& kern = dispatched_kernels<T>();
  const PoolBands bands = plan_bands(s);
  split_output_rows(s, bands, [&](int64_t begin, int64_t end) {
    kern.max_pool_rows(s, bands, x, out, indices, begin, end, band_scratch<T>(s, bands, indices != nullptr));
  });
}

template <class T>
void max_pool2d_backward(const Pool2dShape& s, const T* grad_out, const int64_t* indices, T* grad_x) {
  // Every index is checked (on the threads of the scatter) before anything is written: a refused
  // call leaves grad_x as it was.
  const int64_t in_plane = s.in_h * s.in_w, out_plane = s.out_h * s.out_w;
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  split(s, s.planes, [&](int64_t begin, int64_t end) {
    const int64_t at = first_bad_index(indices + begin * out_plane, (end - begin) * out_plane, in_plane);
    if (at < 0) return;
    const int64_t pos = begin * out_plane + at;
    for (int64_t seen = first_bad.load(); pos < seen && !first_bad.compare_exchange_weak(seen, pos);) {}
  });
  if (const int64_t bad = first_bad.load(); bad != std::numeric_limits<int64_t>::max())
    throw std::invalid_argument("index " + std::to_string(indices[bad]) + " at flat position " + std::to_string(bad) +
                                " is outside [0, " + std::to_string(in_plane) + ") (H*W of the input)");
  const PoolKernels<T>& kern = dispatched_kernels<T>();
  split(s, s.planes,
        [&](int64_t begin, int64_t end) { kern.max_pool_backward_planes(s, grad_out, indices, grad_x, begin, end); });
}

template <class T>
void avg_pool2d(const Pool2dShape& shape, const T* x, T* out, bool count_include_pad, int64_t divisor_override) {
  const AvgDivisor divisor = avg_divisor(shape, count_include_pad, divisor_override);
  const PoolPlan plan = plan_pool(shape);
  const Pool2dShape& s = plan.shape;
  if (plan.direct)
    return split(s, s.planes,
                 [&](int64_t begin, int64_t end) { avg_pool_direct(s, divisor, x, out, false, begin, end); });
  const PoolKernels<T>& kern = dispatched_kernels<T>();
  const PoolBands bands = plan_bands(s);
  split_output_rows(s, bands, [&](int64_t begin, int64_t end) {
    kern.avg_pool_rows(s, bands, x, out, divisor, begin, end, band_scratch<T>(s, bands, false));
  });
}

template <class T>
void avg_pool2d_backward(const Pool2dShape& shape, const T* grad_out, T* grad_x, bool count_include_pad,
                         int64_t divisor_override) {
  const AvgDivisor divisor = avg_divisor(shape, count_include_pad, divisor_override);
  const PoolPlan plan = plan_pool(shape);
  const Pool2dShape& s = plan.shape;
  if (plan.direct)
    return split(s, s.planes,
                 [&](int64_t begin, int64_t end) { avg_pool_direct(s, divisor, grad_out, grad_x, true, begin, end); });
  const PoolKernels<T>& kern = dispatched_kernels<T>();
  const PoolBands bands = plan_bands(s);
  split(s, s.planes, [&](int64_t begin, int64_t end) {
    kern.avg_pool_backward_planes(s, bands, grad_out, grad_x, divisor, begin, end, band_scratch<T>(s, bands, false));
  });
}

template <class T>
void adaptive_avg_pool2d(const Pool2dShape& s, const T* x, T* out) {
  const PoolKernels<T>& kern = dispatched_kernels<T>();
  split(s, s.planes, [&](int64_t begin, int64_t end) { kern.adaptive_avg_pool_planes(s, x, out, begin, end); });
}

template <class T>
void adaptive_avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x) {
  const PoolKernels<T>& kern = dispatched_kernels<T>();
  split(s, s.planes,
        [&](int64_t begin, int64_t end) { kern.adaptive_avg_pool_backward_planes(s, grad_out, grad_x, begin, end); });
}

#define DEEPKERN_POOL_INSTANTIATE(T)                                                      \
  template void max_pool2d<T>(const Pool2dShape&, const T*, T*, int64_t*);                \
  template void max_pool2d_backward<T>(const Pool2dShape&, const T*, const int64_t*, T*); \
  template void avg_pool2d<T>(const Pool2dShape&, const T*, T*, bool, int64_t);           \
  template void avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*, bool, int64_t);  \
  template void adaptive_avg_pool2d<T>(const Pool2dShape&, const T*, T*);                 \
  template void adaptive_avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*);
DEEPKERN_POOL_INSTANTIATE(float)
DEEPKERN_POOL_INSTANTIATE(double)
#undef DEEPKERN_POOL_INSTANTIATE

}  // namespace deepkern::cpu
