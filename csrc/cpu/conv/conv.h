// 2-D convolution on the CPU (NCHW activations, KCRS weights, PyTorch's semantics), forward and
// both backward passes, built on the blocked GEMM (csrc/cpu/gemm).
#pragma once
#include <array>
#include <cstdint>

namespace deepkern::cpu {

// Shapes and options of one convolution; the caller (deepkern.ops) validated them and computed
// the output size. Padding is given at the start of each axis; the end padding is implied by
// out_h/out_w (PyTorch's padding="same" pads one more at the end for even windows).
struct Conv2dShape {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w;
  int64_t groups;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t out_h, out_w;
};

// Inf and NaN give what the direct sums give (as PyTorch): the forward and the weight gradient sum
// over every tap of the zero-padded input, padding included (0 * Inf is NaN), the data gradient over
// the (output, tap) pairs that read each input element.

// How Winograd's transformed weights are laid out: F(tile x tile, 3x3)'s (tile + 2)^2 planes, each
// in panels of `width` output channels over the input channels (element (k, c) at
// [k / width][c][k % width], zero past K; width 1: plane[k][c]). tile 0: none.
struct WinogradWeightsLayout {
  int tile = 0;
  int width = 0;
};

// Weights packed once for inference (a model in eval mode packs each layer once, not per call) for
// conv2d_forward; each part is optional and used only where its path runs.
template <class T>
struct ConvPackedWeights {
  const T* winograd = nullptr;              // conv2d_pack_winograd_weights of w
  WinogradWeightsLayout winograd_layout{};  // ... in this layout: used only while it is the forward's
  const T* gemm = nullptr;                  // conv2d_pack_gemm_weights of w
  int64_t gemm_panel_width = 0;             // the panel width `gemm` was packed with: used only while it is the GEMM's
                                            // (nr for Y^T = col^T W^T, mr for col(X) as B panels)
};

// y = conv(x, w) + bias, then relu(y) (torch.relu: NaN and -0 kept) when `relu`. x (N, C, H, W), w (K,
// C/groups, R, S), bias (K) or null, y (N, K, P, Q); all C-contiguous. y is written, never read.
// `packed` holds weights packed from this w, or nothing.
template <class T>
void conv2d_forward(const Conv2dShape& shape, const T* x, const T* w, const T* bias, T* y,
                    const ConvPackedWeights<T>& packed = {}, bool relu = false);

// The path the last conv2d_forward call of the process took: "depthwise", "winograd" ("winograd_prepacked"
// when it ran on ConvPackedWeights::winograd), "direct" (float32 layers with few input channels,
// direct.h), "im2col" (GEMMs over blocks of images), "im2col_row_blocks" (the inference plan: row blocks of single
// images spread over the threads), "im2col_packed_panels" (those row blocks with stride-2 rows split
// by im2col straight into the GEMM's packed panels, for few output channels: the stem),
// "im2col_shifted_panels" (float32 blocks whose col(X) rows are shifted input planes, written into
// the GEMM's packed panels by masked loads), "im2col_transposed" (small inference blocks with more
// output channels than pixels, computed as Y^T = col^T W^T), each of the last three with "_prepacked"
// appended when it ran on ConvPackedWeights::gemm, or "" before the first call. For tests and
// benchmarks.
const char* last_conv2d_forward_path();
// Sets what last_conv2d_forward_path() returns (the forwards of other element types record theirs).
void record_conv2d_forward_path(const char* path);

// The shape (groups, panels, C/groups * R * S, width) of the packed GEMM weights of a forward of this
// shape: each group's W_g (Kg x CgRS) in panels of `width` output channels over its CgRS columns
// (element (k, p) at [k / width][p][k % width], zero past Kg), which is both the GEMM's packed A of W_g
// at panel height mr and its packed B of W_g^T at panel width nr. A forward runs on them when it
// computes its blocks as Y^T = col^T W^T (inference batches with more output channels than pixels per
// thread; width nr) or writes col(X) as the GEMM's packed panels (width mr), at the thread count it
// runs with; all zeros when a forward of this shape at the current thread count does neither, or has
// no images (nothing to pack).
template <class T>
std::array<int64_t, 4> conv2d_gemm_weights_shape(const Conv2dShape& shape);

// Packs w (K, C/groups, R, S) into conv2d_gemm_weights_shape(shape) (not all zero) elements.
template <class T>
void conv2d_pack_gemm_weights(const Conv2dShape& shape, const T* w, T* packed);

// The size (36 K C) of the packed Winograd weights of a convolution with these weights and options
// (shape's batch and image sizes are not read), or 0 when no input size would run it on the Winograd
// path (then there is nothing to pack).
int64_t conv2d_winograd_weights_size(const Conv2dShape& shape);

// The layout a forward of this shape (batch and image sizes read; at the current thread count) reads
// Winograd weights in: F(2x2) or F(4x4), in the panels of the GEMM's B where the weights outnumber
// the tiles' values (batch 1), else width 1; tile 0 where it runs no Winograd.
template <class T>
WinogradWeightsLayout conv2d_winograd_layout(const Conv2dShape& shape);

// The shape (points, panels, width * C) of Winograd weights in `layout` ((36, K, C) for F(4x4) at
// width 1); all zero for tile 0.
std::array<int64_t, 3> conv2d_winograd_weights_shape(const Conv2dShape& shape, WinogradWeightsLayout layout);

// Packs w (K, C, 3, 3) for conv2d_forward's winograd_weights in `layout`
// (conv2d_winograd_weights_shape elements). Returns false when w holds Inf or NaN: such weights
// cannot be packed.
template <class T>
bool conv2d_pack_winograd_weights(const Conv2dShape& shape, WinogradWeightsLayout layout, const T* w, T* packed);

// grad_x (N, C, H, W) = the gradient of sum(grad_y * conv(x, w)) with respect to x. Written, never read.
template <class T>
void conv2d_backward_data(const Conv2dShape& shape, const T* grad_y, const T* w, T* grad_x);

// grad_w (K, C/groups, R, S) and, when not null, grad_bias (K): the gradients with respect to w
// and the bias. Written, never read.
template <class T>
void conv2d_backward_weight(const Conv2dShape& shape, const T* grad_y, const T* x, T* grad_w, T* grad_bias);

}  // namespace deepkern::cpu
