// Depthwise convolution (groups == C: each output channel k reads only input channel
// k / (K / C)) as direct loops; the GEMM formulation would run GEMMs with one row.
#pragma once
#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// True for the shapes these loops take: groups == in_channels (> 1).
inline bool is_depthwise(const Conv2dShape& s) { return s.groups > 1 && s.groups == s.in_channels; }

// The contracts of conv2d_forward / conv2d_backward_data / conv2d_backward_weight (conv.h) for
// shapes with groups == in_channels; depthwise_backward_weight leaves the bias gradient to the
// caller. T: float, double, or bf16 (the float32 kernels on each plane widened just before use,
// every result plane rounded once).
template <class T>
void depthwise_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);
template <class T>
void depthwise_backward_data(const Conv2dShape& s, const T* grad_y, const T* w, T* grad_x);
template <class T>
void depthwise_backward_weight(const Conv2dShape& s, const T* grad_y, const T* x, T* grad_w);

}  // namespace deepkern::cpu
