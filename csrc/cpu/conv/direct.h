// Direct convolution for layers with few input channels per output (the 7x7/2 stem, a first 3x3
// layer on RGB images): each output row is summed straight from the input rows it reads, with no
// im2col matrix and no packed panels, whose copies cost these layers as much as a third of their time.
#pragma once
#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// True for the float32 forwards direct_forward takes: one group, stride 1 or 2 along the width
// without dilation there, few input channels and few terms (C * R * S) per output (direct.cpp).
bool direct_applies(const Conv2dShape& s);

// The contract of conv2d_forward (conv.h) for shapes where direct_applies().
void direct_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, bool relu);

}  // namespace deepkern::cpu
