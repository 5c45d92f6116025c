// 2-D convolution on the GPU (NCHW activations, KCRS weights, PyTorch's semantics): forward and
// both backward passes as implicit GEMMs on the GEMM kernels' tiles (cuda/gemm/simt_tile.h,
// mma_tile.h), with no im2col buffer. Plain C++ (no CUDA headers beyond the stream type), so
// bindings include it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/conv/conv.h"
#include "cuda/gemm/gemm.h"

namespace deepkern::cuda {

using cpu::Conv2dShape;

// Every entry's contract: the shape as cpu::Conv2dShape (validated by the caller, every size, index
// and window reach below 2^31: see conv2d_indices_fit); arrays C-contiguous device memory of one
// dtype, float32 for precision fp32 (the CUDA cores) or tf32 (the tensor cores on TF32-rounded
// inputs), bfloat16 for bf16; outputs written, never read, and apart from the inputs. Each group of
// the convolution is one GEMM (sizes per group):
//   forward        M = N*P*Q outputs, N = K/groups channels, K = (C/groups)*R*S taps
//   backward data  M = N*H*W inputs,  N = C/groups channels, K = (K/groups)*R*S taps (a transposed
//                  convolution: each input gathers the output gradients its taps reached)
//   backward weight M = K/groups, N = (C/groups)*R*S, K = N*P*Q, split over blocks along K when
//                  M*N is small (partial sums in a float32 workspace, added in a fixed order: the
//                  result does not depend on timing).
// Accumulation is FP32 throughout; bfloat16 results are rounded to nearest even once.

// Whether the kernels' 32-bit index arithmetic takes `shape`: every size, and each axis's reach
// in + pad + (out-1)*stride + (kernel-1)*dilation, below 2^31.
bool conv2d_indices_fit(const Conv2dShape& shape);

// Which kernels a pass runs (the entries below choose; last_conv2d_path says what the last call
// chose, for tests):
//   depthwise      groups == in_channels > 1 where cuda/conv/depthwise.h takes the shape: direct
//                  kernels (all three passes)
//   gemm_1x1       1x1 kernels, stride 1, no padding, one group (forward and data gradient): the
//                  GEMM itself (cuda/gemm/gemm.h) on the NCHW planes, one strided batch entry per
//                  image: y[n] = w (K x C) @ x[n] (C x H*W), grad_x[n] = w^T @ grad_y[n]
//   implicit_gemm  everything else (above)
enum class Conv2dPath : std::uint8_t { none, implicit_gemm, depthwise, gemm_1x1 };
Conv2dPath last_conv2d_path();                  // none before the first call
const char* conv2d_path_name(Conv2dPath path);  // "none", "implicit_gemm", "depthwise", "gemm_1x1"

// The device workspace conv2d_forward and conv2d_backward_data need for `shape` (the batch offsets
// of gemm_1x1: 16 bytes per image), 0 when they need none (workspace may then be null).
std::int64_t conv2d_workspace_bytes(const Conv2dShape& shape);

// y = conv(x, w) + bias (bias may be null).
void conv2d_forward(const Conv2dShape& shape, GemmPrecision precision, const void* x, const void* w, const void* bias,
                    void* y, void* workspace, cudaStream_t stream);

// grad_x = the gradient of sum(grad_y * conv(x, w)) with respect to x.
void conv2d_backward_data(const Conv2dShape& shape, GemmPrecision precision, const void* grad_y, const void* w,
                          void* grad_x, void* workspace, cudaStream_t stream);

// How many blocks share each weight-gradient tile's K (1: none), for a device with `sm_count`
// multiprocessors, and the float32 workspace they need (0 bytes when 1, except on the depthwise
// path).
int conv2d_weight_splits(const Conv2dShape& shape, int sm_count);
std::int64_t conv2d_weight_workspace_bytes(const Conv2dShape& shape, int splits);

// grad_w and, when not null, grad_bias. `splits` >= 1 (any value; conv2d_weight_splits gives the
// fast one); `workspace` holds conv2d_weight_workspace_bytes(shape, splits) bytes (unused when 0).
// The depthwise path splits N*P*Q instead (depthwise.h) and always takes a workspace.
void conv2d_backward_weight(const Conv2dShape& shape, GemmPrecision precision, const void* grad_y, const void* x,
                            void* grad_w, void* grad_bias, int splits, void* workspace, cudaStream_t stream);

}  // namespace deepkern::cuda
