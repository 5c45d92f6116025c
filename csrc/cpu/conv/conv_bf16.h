// 2-D convolution in bfloat16 on the CPU: conv.h's entry points for T = bf16 (the binding's dtype
// switch reaches them as it reaches float and double). bf16 x, w, bias and gradients, float32 sums:
// every GEMM is the bfloat16 GEMM (gemm_bf16.h) with float32 accumulation; grad_x is summed over
// the taps (col2im) and grad_w and grad_bias over the batch in float32, each rounded to bf16 once
// (to nearest even). Every geometry (groups, strides, padding, dilation) runs as im2col + GEMMs per
// block of images and group (stride-1 "same"-width layers with col(X) written straight into the
// GEMM's panels, and grad_x as the forward with reversed taps), except depthwise layers: the float32
// depthwise kernels on each plane widened just before use (depthwise.h), each result rounded once.
// There is no Winograd path and no prepacked weights (ConvPackedWeights is ignored).
#pragma once
#include "cpu/conv/conv.h"
#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::cpu {

template <>
void conv2d_forward<bf16>(const Conv2dShape& shape, const bf16* x, const bf16* w, const bf16* bias, bf16* y,
                          const ConvPackedWeights<bf16>& packed, bool relu);

template <>
void conv2d_backward_data<bf16>(const Conv2dShape& shape, const bf16* grad_y, const bf16* w, bf16* grad_x);

template <>
void conv2d_backward_weight<bf16>(const Conv2dShape& shape, const bf16* grad_y, const bf16* x, bf16* grad_w,
                                  bf16* grad_bias);

}  // namespace deepkern::cpu
