// The per-plane loops of the depthwise convolution (depthwise.cpp drives them), as one table per
// ISA: depthwise_kernels.cpp is compiled once per ISA and vectorizes them for it.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// Each kernel handles one (image, channel) plane; the kernels only compute (the caller passes
// every buffer). `bordered`, where taken, is null or a scratch for a zero-bordered copy of the
// plane read tap by tap: non-null only for stride 1 without dilation, where every tap of every row
// becomes one unconditional vectorized multiply-add over the whole row.
template <class T>
struct DepthwiseKernels {
  // y_plane = bias + the taps of w_k over x_plane. bordered: (out_h + R - 1) x (out_w + S - 1).
  // next_x_plane and next_y_plane (either may be null) are the planes the thread computes next: a
  // hint, prefetched while this one computes.
  void (*forward_plane)(const Conv2dShape& s, const T* x_plane, const T* w_k, T bias, T* y_plane, T* bordered,
                        const T* next_x_plane, const T* next_y_plane);
  // dx_plane += the taps of w_k over dy_plane (one output plane's share of an input plane's
  // gradient). bordered: (in_h + R - 1) x (in_w + S - 1).
  void (*backward_data_plane)(const Conv2dShape& s, const T* dy_plane, const T* w_k, T* dx_plane, T* bordered);
  // dw_k += the taps' sums of dy_plane * x_plane (one image's share of a channel's weight gradient).
  // bordered (null, or given only for an x_plane of finite values): (out_h + R - 1) * (out_w + S - 1)
  // + S - 1 + out_h * (out_w + S - 1) elements, for the zero-bordered x plane and dy with zero columns.
  void (*backward_weight_plane)(const Conv2dShape& s, const T* dy_plane, const T* x_plane, T* dw_k, T* bordered);
};

DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<DepthwiseKernels>, depthwise_kernels)

}  // namespace deepkern::cpu
