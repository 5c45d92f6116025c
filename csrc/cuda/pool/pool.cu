// The pooling kernels (pool.h). The forwards give each output element one thread (a grid-stride
// loop over the flat outputs), which reads its window's in-bounds taps in row-major order. The
// average and adaptive backward passes give each input element one thread, which sums the
// gradients of the windows that contain it in output order (a gather: no atomics, each sum in the
// CPU's order). The max backward pass scatters by arbitrary indices (its arguments carry no window
// geometry), so each plane belongs to one block: it zeroes the plane's gradient, then takes the
// outputs in chunks of one per thread; in a chunk, the first thread holding a target adds the
// chunk's values for that target in output order. Every sum is thus the CPU's left-to-right sum
// over the outputs, and the results do not depend on the schedule.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/pool/pool_windows.h"
#include "cuda/launch.h"
#include "cuda/pool/pool.h"

namespace deepkern::cuda {
namespace {

namespace win = pool_windows;
using cpu::Pool2dShape;

constexpr int kThreads = 256;
// The max backward pass: a chunk's ownership test reads up to this many shared entries per thread.
constexpr int kScatterThreads = 128;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;

// Blocks for a grid-stride loop over `n` items of one thread each.
unsigned blocks_for(std::int64_t n, int threads) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + threads - 1) / threads, kMaxBlocks));
}

// Element i of the C-contiguous planes of h x w: plane p, row r, column c.
struct PlanePos {
  std::int64_t p, r, c;
};

__device__ __forceinline__ PlanePos plane_pos(std::int64_t i, std::int64_t h, std::int64_t w) {
  const std::int64_t rows = i / w;
  return {rows / h, rows % h, i % w};
}

__device__ __forceinline__ std::int64_t grid_first() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_step() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

// The range [lo, hi] of the windows along an axis (of `out`, `kernel` taps from o * stride - pad,
// dilation 1) that contain input position `i`; lo > hi when none does.
struct WindowRange {
  std::int64_t lo, hi;
};

__device__ __forceinline__ WindowRange windows_containing(std::int64_t i, std::int64_t out, std::int64_t kernel,
                                                          std::int64_t stride, std::int64_t pad) {
  const std::int64_t first = i + pad - kernel + 1;  // o * stride >= first
  const std::int64_t lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const std::int64_t last = (i + pad) / stride;  // o * stride <= i + pad
  return {lo, last < out - 1 ? last : out - 1};
}

// ---- max -------------------------------------------------------------------------------------

// out[i] = the max of window i's in-bounds taps: the first tap, then any larger one or NaN (so a
// NaN wins, the last one in row-major order, and ties keep the first); -inf and index -1 for a
// window over padding only.
template <class T>
__global__ void __launch_bounds__(kThreads) max_pool_kernel(Pool2dShape s, const T* __restrict__ x, T* __restrict__ out,
                                                            std::int64_t* __restrict__ indices, std::int64_t n) {
  for (std::int64_t i = grid_first(); i < n; i += grid_step()) {
    const PlanePos o = plane_pos(i, s.out_h, s.out_w);
    const win::AxisTaps rows = win::axis_taps(o.r, s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
    const win::AxisTaps cols = win::axis_taps(o.c, s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
    const T* plane = x + o.p * s.in_h * s.in_w;
    T best = -static_cast<T>(__builtin_huge_val());
    std::int64_t at = -1;
    for (std::int64_t a = 0; a < rows.count; ++a) {
      const std::int64_t row = (rows.first + a * rows.step) * s.in_w;
      for (std::int64_t b = 0; b < cols.count; ++b) {
        const std::int64_t q = row + cols.first + b * cols.step;
        const T v = plane[q];
        if (at < 0 || v > best || v != v) {
          best = v;
          at = q;
        }
      }
    }
    out[i] = best;
    if (indices != nullptr) indices[i] = at;
  }
}

// Records one of the n indices outside [0, in_plane) other than -1 in *bad (the first thread to
// find one writes it; the others only count). As unsigned, index + 1 maps -1 and [0, in_plane)
// onto [0, in_plane] and every other index above it.
__global__ void __launch_bounds__(kThreads)
    check_indices_kernel(const std::int64_t* __restrict__ indices, std::int64_t n, std::int64_t in_plane,
                         PoolBadIndex* bad) {
  for (std::int64_t i = grid_first(); i < n; i += grid_step()) {
    const std::int64_t v = indices[i];
    if (static_cast<std::uint64_t>(v) + 1 > static_cast<std::uint64_t>(in_plane) &&
        *static_cast<volatile int*>(&bad->found) == 0 && atomicAdd(&bad->found, 1) == 0) {
      bad->position = i;
      bad->index = v;
    }
  }
}

// grad_x = 0, then grad_x[p, indices[p, i]] += grad_out[p, i] in the order of i; one block per
// plane (a block-stride loop over the planes). Nothing when bad->found is set.
template <class T>
__global__ void __launch_bounds__(kScatterThreads)
    max_pool_backward_kernel(const T* __restrict__ grad_out, const std::int64_t* __restrict__ indices,
                             T* __restrict__ grad_x, std::int64_t planes, std::int64_t in_plane, std::int64_t out_plane,
                             const PoolBadIndex* bad) {
  if (bad != nullptr && *static_cast<const volatile int*>(&bad->found) != 0) return;
  __shared__ std::int64_t target[kScatterThreads];
  __shared__ T value[kScatterThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (std::int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    T* gx = grad_x + p * in_plane;
    for (std::int64_t q = t; q < in_plane; q += kScatterThreads) gx[q] = T(0);
    for (std::int64_t base = 0; base < out_plane; base += kScatterThreads) {
      __syncthreads();  // the zeros and the previous chunk's sums are written; the chunk arrays are free
      const std::int64_t i = base + t;
      const std::int64_t mine = i < out_plane ? indices[p * out_plane + i] : -1;
      target[t] = mine;
      value[t] = i < out_plane ? grad_out[p * out_plane + i] : T(0);
      __syncthreads();
      if (mine < 0) continue;
      bool owner = true;
      for (int j = 0; j < t && owner; ++j) owner = target[j] != mine;
      if (!owner) continue;
      T sum = gx[mine];
      for (int j = t; j < kScatterThreads; ++j)
        if (target[j] == mine) sum += value[j];
      gx[mine] = sum;
    }
    __syncthreads();  // this plane's chunk arrays are read before the next plane's are written
  }
}

// ---- average ---------------------------------------------------------------------------------

// The divisor's factor along one axis for window o of average pooling (cpu/pool/pool.h:
// avg_pool2d); the divisor is divisor_override when nonzero, else the product of the two factors.
__device__ __forceinline__ double avg_factor(std::int64_t o, std::int64_t in, std::int64_t kernel, std::int64_t stride,
                                             std::int64_t pad, bool count_include_pad) {
  return double(win::window_extent(o * stride - pad, in, kernel, pad, count_include_pad));
}

template <class T>
__device__ __forceinline__ T avg_divisor(const Pool2dShape& s, std::int64_t oh, std::int64_t ow, bool count_include_pad,
                                         std::int64_t divisor_override) {
  if (divisor_override != 0) return static_cast<T>(divisor_override);
  return static_cast<T>(avg_factor(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h, count_include_pad) *
                        avg_factor(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w, count_include_pad));
}

// out[i] = the sum of window i's in-bounds taps (row-major) / its divisor.
template <class T>
__global__ void __launch_bounds__(kThreads)
    avg_pool_kernel(Pool2dShape s, const T* __restrict__ x, T* __restrict__ out, std::int64_t n, bool count_include_pad,
                    std::int64_t divisor_override) {
  for (std::int64_t i = grid_first(); i < n; i += grid_step()) {
    const PlanePos o = plane_pos(i, s.out_h, s.out_w);
    const win::AxisTaps rows = win::axis_taps(o.r, s.in_h, s.kernel_h, s.stride_h, s.pad_h, 1);
    const win::AxisTaps cols = win::axis_taps(o.c, s.in_w, s.kernel_w, s.stride_w, s.pad_w, 1);
    const T* plane = x + o.p * s.in_h * s.in_w;
    T sum = 0;
    for (std::int64_t a = 0; a < rows.count; ++a)
      for (std::int64_t b = 0; b < cols.count; ++b) sum += plane[(rows.first + a) * s.in_w + cols.first + b];
    out[i] = sum / avg_divisor<T>(s, o.r, o.c, count_include_pad, divisor_override);
  }
}

// grad_x[i] = the sum over the windows containing input element i, in output order, of
// grad_out / divisor.
template <class T>
__global__ void __launch_bounds__(kThreads)
    avg_pool_backward_kernel(Pool2dShape s, const T* __restrict__ grad_out, T* __restrict__ grad_x, std::int64_t n,
                             bool count_include_pad, std::int64_t divisor_override) {
  for (std::int64_t i = grid_first(); i < n; i += grid_step()) {
    const PlanePos in = plane_pos(i, s.in_h, s.in_w);
    const WindowRange rows = windows_containing(in.r, s.out_h, s.kernel_h, s.stride_h, s.pad_h);
    const WindowRange cols = windows_containing(in.c, s.out_w, s.kernel_w, s.stride_w, s.pad_w);
    const T* g = grad_out + in.p * s.out_h * s.out_w;
    T sum = 0;
    for (std::int64_t oh = rows.lo; oh <= rows.hi; ++oh) {
      const double fh = avg_factor(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h, count_include_pad);
      for (std::int64_t ow = cols.lo; ow <= cols.hi; ++ow) {
        const T divisor =
            divisor_override != 0
                ? static_cast<T>(divisor_override)
                : static_cast<T>(fh * avg_factor(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w, count_include_pad));
        sum += g[oh * s.out_w + ow] / divisor;
      }
    }
    grad_x[i] = sum;
  }
}

// ---- adaptive average ------------------------------------------------------------------------

// out[i] = the mean of PyTorch's adaptive window i (row-major sum / element count).
template <class T>
__global__ void __launch_bounds__(kThreads)
    adaptive_avg_pool_kernel(Pool2dShape s, const T* __restrict__ x, T* __restrict__ out, std::int64_t n) {
  for (std::int64_t i = grid_first(); i < n; i += grid_step()) {
    const PlanePos o = plane_pos(i, s.out_h, s.out_w);
    const std::int64_t h0 = win::adaptive_start(o.r, s.in_h, s.out_h), h1 = win::adaptive_end(o.r, s.in_h, s.out_h);
    const std::int64_t w0 = win::adaptive_start(o.c, s.in_w, s.out_w), w1 = win::adaptive_end(o.c, s.in_w, s.out_w);
    const T* plane = x + o.p * s.in_h * s.in_w;
    T sum = 0;
    for (std::int64_t ih = h0; ih < h1; ++ih)
      for (std::int64_t iw = w0; iw < w1; ++iw) sum += plane[ih * s.in_w + iw];
    out[i] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
  }
}

// The adaptive windows along an axis that contain input position i: from the first one ending
// past i while they start at or before i.
__device__ __forceinline__ WindowRange adaptive_windows_containing(std::int64_t i, std::int64_t in, std::int64_t out) {
  const std::int64_t lo = i * out / in;  // end(o) > i exactly for o >= lo
  std::int64_t hi = lo - 1;
  while (hi + 1 < out && win::adaptive_start(hi + 1, in, out) <= i) ++hi;
  return {lo, hi};
}

// grad_x[i] = the sum over the adaptive windows containing input element i, in output order, of
// grad_out / window size.
template <class T>
__global__ void __launch_bounds__(kThreads)
    adaptive_avg_pool_backward_kernel(Pool2dShape s, const T* __restrict__ grad_out, T* __restrict__ grad_x,
                                      std::int64_t n) {
  for (std::int64_t i = grid_first(); i < n; i += grid_step()) {
    const PlanePos in = plane_pos(i, s.in_h, s.in_w);
    const WindowRange rows = adaptive_windows_containing(in.r, s.in_h, s.out_h);
    const WindowRange cols = adaptive_windows_containing(in.c, s.in_w, s.out_w);
    const T* g = grad_out + in.p * s.out_h * s.out_w;
    T sum = 0;
    for (std::int64_t oh = rows.lo; oh <= rows.hi; ++oh) {
      const std::int64_t fh = win::adaptive_end(oh, s.in_h, s.out_h) - win::adaptive_start(oh, s.in_h, s.out_h);
      for (std::int64_t ow = cols.lo; ow <= cols.hi; ++ow) {
        const std::int64_t fw = win::adaptive_end(ow, s.in_w, s.out_w) - win::adaptive_start(ow, s.in_w, s.out_w);
        sum += g[oh * s.out_w + ow] / static_cast<T>(fh * fw);
      }
    }
    grad_x[i] = sum;
  }
}

std::int64_t inputs(const Pool2dShape& s) { return s.planes * s.in_h * s.in_w; }
std::int64_t outputs(const Pool2dShape& s) { return s.planes * s.out_h * s.out_w; }

}  // namespace

template <class T>
void launch_max_pool2d(const Pool2dShape& s, const T* x, T* out, std::int64_t* indices, cudaStream_t stream) {
  const std::int64_t n = outputs(s);
  if (n == 0) return;
  launch("max_pool_kernel", max_pool_kernel<T>, dim3(blocks_for(n, kThreads)), dim3(kThreads), 0, stream, s, x, out,
         indices, n);
}

void launch_check_pool_indices(const Pool2dShape& s, const std::int64_t* indices, PoolBadIndex* bad,
                               cudaStream_t stream) {
  const std::int64_t n = outputs(s);
  if (n == 0) return;
  launch("check_indices_kernel", check_indices_kernel, dim3(blocks_for(n, kThreads)), dim3(kThreads), 0, stream,
         indices, n, s.in_h * s.in_w, bad);
}

template <class T>
void launch_max_pool2d_backward(const Pool2dShape& s, const T* grad_out, const std::int64_t* indices, T* grad_x,
                                const PoolBadIndex* bad, cudaStream_t stream) {
  if (inputs(s) == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(s.planes, kMaxBlocks));
  launch("max_pool_backward_kernel", max_pool_backward_kernel<T>, dim3(blocks), dim3(kScatterThreads), 0, stream,
         grad_out, indices, grad_x, s.planes, s.in_h * s.in_w, s.out_h * s.out_w, bad);
}

template <class T>
void launch_avg_pool2d(const Pool2dShape& s, const T* x, T* out, bool count_include_pad, std::int64_t divisor_override,
                       cudaStream_t stream) {
  const std::int64_t n = outputs(s);
  if (n == 0) return;
  launch("avg_pool_kernel", avg_pool_kernel<T>, dim3(blocks_for(n, kThreads)), dim3(kThreads), 0, stream, s, x, out, n,
         count_include_pad, divisor_override);
}

template <class T>
void launch_avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x, bool count_include_pad,
                                std::int64_t divisor_override, cudaStream_t stream) {
  const std::int64_t n = inputs(s);
  if (n == 0) return;
  launch("avg_pool_backward_kernel", avg_pool_backward_kernel<T>, dim3(blocks_for(n, kThreads)), dim3(kThreads), 0,
         stream, s, grad_out, grad_x, n, count_include_pad, divisor_override);
}

template <class T>
void launch_adaptive_avg_pool2d(const Pool2dShape& s, const T* x, T* out, cudaStream_t stream) {
  const std::int64_t n = outputs(s);
  if (n == 0) return;
  launch("adaptive_avg_pool_kernel", adaptive_avg_pool_kernel<T>, dim3(blocks_for(n, kThreads)), dim3(kThreads), 0,
         stream, s, x, out, n);
}

template <class T>
void launch_adaptive_avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x, cudaStream_t stream) {
  const std::int64_t n = inputs(s);
  if (n == 0) return;
  launch("adaptive_avg_pool_backward_kernel", adaptive_avg_pool_backward_kernel<T>, dim3(blocks_for(n, kThreads)),
         dim3(kThreads), 0, stream, s, grad_out, grad_x, n);
}

#define DEEPKERN_CUDA_POOL_INSTANTIATE(T)                                                                          \
  template void launch_max_pool2d<T>(const Pool2dShape&, const T*, T*, std::int64_t*, cudaStream_t);               \
  template void launch_max_pool2d_backward<T>(const Pool2dShape&, const T*, const std::int64_t*, T*,               \
                                              const PoolBadIndex*, cudaStream_t);                                  \
  template void launch_avg_pool2d<T>(const Pool2dShape&, const T*, T*, bool, std::int64_t, cudaStream_t);          \
  template void launch_avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*, bool, std::int64_t, cudaStream_t); \
  template void launch_adaptive_avg_pool2d<T>(const Pool2dShape&, const T*, T*, cudaStream_t);                     \
  template void launch_adaptive_avg_pool2d_backward<T>(const Pool2dShape&, const T*, T*, cudaStream_t);
DEEPKERN_CUDA_POOL_INSTANTIATE(float)
DEEPKERN_CUDA_POOL_INSTANTIATE(double)
#undef DEEPKERN_CUDA_POOL_INSTANTIATE

}  // namespace deepkern::cuda
