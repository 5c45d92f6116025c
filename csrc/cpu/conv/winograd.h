// Winograd convolution of 3x3 stride-1 layers: F(2x2, 3x3), 16 multiplies per 2x2 output tile and
// input channel instead of 36 (2.25x fewer), or F(4x4, 3x3), 36 per 4x4 tile instead of 144 (4x
// fewer); the multiplies done as 16 or 36 blocked GEMMs.
#pragma once
#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// True for the geometry winograd_forward handles: 3x3, stride 1, dilation 1, one group, padding <= 2.
bool winograd_geometry(const Conv2dShape& s);

// True when the convolution has enough channels on both sides to feed Winograd's GEMMs.
bool winograd_channels(const Conv2dShape& s);

// True for the shapes of winograd_geometry where Winograd pays: winograd_channels, outputs whose partial edge tiles
// still leave F(2x2, 3x3) a 1.7x saving, and enough tiles in the call (batch x 2x2 tiles per image) to repay the
// weight transform.
bool winograd_applies(const Conv2dShape& s);

// The output tile (2 or 4) of the variant F(tile x tile, 3x3) winograd_forward runs for this shape:
// the one with the lower cost points x max(tiles, 32) per weight pair (points = (tile + 2)^2, tiles
// of the call counting the partial ones at the edges; each transformed weight costs at least 32 tiles'
// multiply-adds of memory traffic): F(4x4) unless the image is so small that its edge tiles waste
// more, or the call has too few tiles to repay its 36 transformed weights per pair (ties: F(2x2)).
int winograd_tile(const Conv2dShape& s);

// The tile of the last successful winograd_forward call of the process (0 before the first).
int winograd_last_forward_tile();

// The size (36 K C) of winograd_transform_weights' output for this geometry and these channels
// (batch and image sizes are not read), 0 when no input size takes the Winograd path.
int64_t winograd_weights_size(const Conv2dShape& s);

// The layout of the transformed weights winograd_forward of this shape (batch and image sizes read,
// at the current thread count) multiplies by (conv2d_winograd_layout); tile 0 where it does not apply.
template <class T>
WinogradWeightsLayout winograd_forward_layout(const Conv2dShape& s);

// The shape (points, panels, width * C) of transformed weights in `layout`; zeros for tile 0.
std::array<int64_t, 3> winograd_weights_shape(const Conv2dShape& s, WinogradWeightsLayout layout);

// u = the transformed weights G g G^T of w (K, C, 3, 3) in `layout`, which winograd_forward takes
// instead of transforming w itself where it runs that layout (weights packed once for inference).
// Returns false, u partly written, when w holds Inf or NaN (or a value so large that the transforms
// could overflow: winograd.cpp's probe_scale).
template <class T>
bool winograd_transform_weights(int64_t out_channels, int64_t in_channels, WinogradWeightsLayout layout, const T* w,
                                T* u);

// The entry points below return false, leaving their output partly written, when an operand they
// read (x or w; grad_y or w; grad_y or x) holds Inf or NaN: the transforms add and subtract them,
// which can turn the direct sum's Inf into NaN, so the caller computes that call another way; and
// so they do for values large enough (about 1e16 in float32) to overflow inside the transforms.

// The contract of conv2d_forward (conv.h) for shapes where winograd_applies(), with the variant of
// winograd_tile(). `transformed`, when not null, is winograd_transform_weights of w in `layout`
// (finite; then w itself is not read where that is the forward's layout, winograd_forward_layout).
template <class T>
bool winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y, const T* transformed = nullptr,
                      WinogradWeightsLayout layout = {});

// The contract of conv2d_backward_data for shapes where winograd_applies(), with F(2x2, 3x3): the data gradient
// of a 3x3 stride-1 convolution is itself one (of dY with the flipped, transposed weights and
// padding 2 - pad).
template <class T>
bool winograd_backward_data(const Conv2dShape& s, const T* grad_y, const T* w, T* grad_x);

// True where the Winograd weight gradient beats im2col + GEMM (a subset of winograd_applies).
bool winograd_applies_to_weight_grad(const Conv2dShape& s);

// The weight gradient of conv2d_backward_weight (without the bias) for shapes where
// winograd_applies_to_weight_grad(): dU = sum over tiles of (A dY A^T) .* (B^T d B), then G^T dU G.
template <class T>
bool winograd_backward_weight(const Conv2dShape& s, const T* grad_y, const T* x, T* grad_w);

}  // namespace deepkern::cpu
