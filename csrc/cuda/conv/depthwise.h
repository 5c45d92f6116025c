// Depthwise 2-D convolution on the GPU (groups == in_channels > 1, out_channels = in_channels *
// multiplier; NCHW activations, (K, 1, R, S) weights): direct kernels instead of the implicit GEMM's
// C tiny GEMMs of depth R*S. Plain C++ (no CUDA headers beyond the stream type), so bindings include
// it; conv.h's entry points call these for the shapes depthwise_takes accepts.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/conv/conv.h"
#include "cuda/gemm/gemm.h"

namespace deepkern::cuda {

// Every entry's contract is conv.h's (shape validated, indices fit in 32 bits, C-contiguous device
// arrays of the precision's dtype, outputs written and never read). tf32 computes in full FP32 (the
// kernels run on the CUDA cores); bf16 reads and writes bfloat16 and accumulates in FP32.

// Whether the depthwise kernels take `shape`: groups == in_channels > 1, and the staged tiles of
// the forward and the data-gradient pass fit in 48 KiB of shared memory.
bool depthwise_takes(const cpu::Conv2dShape& shape);

// y = conv(x, w) + bias (bias may be null): one block per (image, channel tile, output tile), the
// input tile plus its halo staged in shared memory, each thread computing 4 outputs along W.
void depthwise_forward(const cpu::Conv2dShape& shape, GemmPrecision precision, const void* x, const void* w,
                       const void* bias, void* y, cudaStream_t stream);

// grad_x: the forward kernel's shape on the flipped weights (the transposed convolution), each input
// gathering the output gradients its taps reached (no atomics).
void depthwise_backward_data(const cpu::Conv2dShape& shape, GemmPrecision precision, const void* grad_y, const void* w,
                             void* grad_x, cudaStream_t stream);

// How many blocks share each channel's N*P*Q positions for a device with `sm_count`
// multiprocessors, and the float32 workspace the weight gradient needs with `splits` of them.
int depthwise_weight_splits(const cpu::Conv2dShape& shape, int sm_count);
std::int64_t depthwise_weight_workspace_bytes(const cpu::Conv2dShape& shape, int splits);

// grad_w and, when not null, grad_bias: per (channel, tap) a sum over N*P*Q in a fixed order (each
// of `splits` >= 1 blocks sums its range into `workspace`, then a second pass adds the splits in
// order), so the result depends on `splits` only, never on timing.
void depthwise_backward_weight(const cpu::Conv2dShape& shape, GemmPrecision precision, const void* grad_y,
                               const void* x, void* grad_w, void* grad_bias, int splits, void* workspace,
                               cudaStream_t stream);

}  // namespace deepkern::cuda
