// Element-wise activations on the GPU: relu and gelu (exact or tanh), forward and backward, with the
// CPU kernels' contract and definitions (cpu/activation/activation.h) and the same per-element math
// (cpu/activation/activation_math.h). Work is queued on `stream` and the call returns at once.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

enum class ActivationOp { relu, relu_backward, gelu, gelu_backward, gelu_tanh, gelu_tanh_backward };

// out[i] = op(grad[i], x[i]) for i in [0, n): n contiguous elements of each array, all on the
// current device; grad is read only by the backward ops (nullptr otherwise) and out overlaps no
// input. T is float or double. Arrays 16-byte aligned are read and written 16 bytes per access.
template <class T>
void launch_activation(ActivationOp op, const T* grad, const T* x, T* out, std::int64_t n, cudaStream_t stream);

}  // namespace deepkern::cuda
