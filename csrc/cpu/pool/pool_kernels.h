// The loops of 2-D pooling (pool.cpp splits the work over threads, plans the bands and checks the
// indices), as one table per ISA: pool_kernels.cpp is compiled once per ISA and vectorizes them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/isa_dispatch.h"
#include "cpu/pool/pool.h"
#include "cpu/pool/pool_windows.h"

namespace deepkern::cpu {

// How the max and average kernels cut their work into bands, planned by pool.cpp. A band is
// `rows` output rows of one plane from row oh0, or (planes > 1, rows == out_h) whole planes, up to
// `planes` of them. Its padded input (padding as -inf for max, 0 for sums) is split by row and
// column phase modulo the strides into stride_h * stride_w sub-planes (space to depth): sub-plane
// (a, b), row q * sub_rows + r, column c holds plane q's padded row (oh0 + r) * stride_h + a,
// column c * stride_w + b. Output row i of plane q is kept at (q * sub_rows + i) * pitch. Then
// tap (kh, kw) of every output of the band reads one sub-plane at one offset from the output's
// own position, and each tap is one unit-stride pass over the whole band (the lanes past a row's
// out_w, and a plane's last sub_rows - rows rows, are computed and dropped) instead of a short
// pass per output row.
struct PoolBands {
  int64_t planes;    // planes per band; > 1 only when a whole plane fits a band
  int64_t rows;      // output rows of a plane per band
  int64_t pitch;     // of the sub-planes and the band's outputs: out_w + (kernel_w - 1) * dilation_w / stride_w
  int64_t sub_rows;  // sub-plane rows per plane: rows + (kernel_h - 1) * dilation_h / stride_h
};

// The tap a band's maximum came from (kh * kernel_w + kw, -1 for none): as wide as T, so the
// selects of values and taps vectorize together.
template <class T>
using PoolTapId = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

// One thread's buffers for the band kernels.
template <class T>
struct PoolBandScratch {
  T* sub_planes;       // stride_h * stride_w * planes * sub_rows * pitch elements
  T* outputs;          // planes * sub_rows * pitch: the band's outputs (or output gradients)
  PoolTapId<T>* taps;  // as outputs, for max_pool_rows with indices only
};

// What an average divides by (pool.h: avg_pool2d): divisor_override when nonzero, else the size of
// the window of kernel_h x kernel_w taps from (oh * stride_h - pad_h, ow * stride_w - pad_w),
// clipped to the padded input (count_include_pad) or to the input. The kernel and padding are the
// caller's, from before pool.cpp dropped the taps that reach no input.
struct AvgDivisor {
  int64_t kernel_h, kernel_w, pad_h, pad_w;
  bool count_include_pad;
  int64_t divisor_override;
};

using pool_windows::window_extent;

// Each kernel computes a contiguous share of the work, with the contract of the pool.h function it
// is named after: the forwards the output rows [begin, end) of the planes * out_h rows (row r is
// row r % out_h of plane r / out_h; whole planes when bands.planes > 1), the backward passes the
// planes [begin, end). They only compute; the caller validated the shape and options.
template <class T>
struct PoolKernels {
  void (*max_pool_rows)(const Pool2dShape& s, const PoolBands& bands, const T* x, T* out, int64_t* indices,
                        int64_t begin, int64_t end, const PoolBandScratch<T>& scratch);
  // The caller checked that every index is -1 or inside [0, in_h * in_w).
  void (*max_pool_backward_planes)(const Pool2dShape& s, const T* grad_out, const int64_t* indices, T* grad_x,
                                   int64_t begin, int64_t end);
  void (*avg_pool_rows)(const Pool2dShape& s, const PoolBands& bands, const T* x, T* out, const AvgDivisor& divisor,
                        int64_t begin, int64_t end, const PoolBandScratch<T>& scratch);
  void (*avg_pool_backward_planes)(const Pool2dShape& s, const PoolBands& bands, const T* grad_out, T* grad_x,
                                   const AvgDivisor& divisor, int64_t begin, int64_t end,
                                   const PoolBandScratch<T>& scratch);
  void (*adaptive_avg_pool_planes)(const Pool2dShape& s, const T* x, T* out, int64_t begin, int64_t end);
  void (*adaptive_avg_pool_backward_planes)(const Pool2dShape& s, const T* grad_out, T* grad_x, int64_t begin,
                                            int64_t end);
};

DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<PoolKernels>, pool_kernels)

}  // namespace deepkern::cpu
