// Batch, layer and group normalization on the GPU, with the CPU kernels' contract
// (cpu/norm/norm.h).
//
// Batch normalization (norm.cu): x is
// C-contiguous (n, c, s), per-channel arrays hold c elements (weight, bias and the running
// statistics may be null where the CPU's may), save_mean and save_invstd are float64. T is float
// or double; every pointer is device memory of the current device. Work is queued on `stream` and
// the calls return at once. One block per channel reduces in float64 with a fixed tree, so the
// results do not depend on the schedule.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/norm/norm.h"

namespace deepkern::cuda {

template <class T>
void launch_batch_norm_forward(const cpu::BatchNormShape& s, const T* x, const T* weight, const T* bias,
                               T* running_mean, T* running_var, T* out, double* save_mean, double* save_invstd,
                               bool training, double momentum, double eps, cudaStream_t stream);

template <class T>
void launch_batch_norm_backward(const cpu::BatchNormShape& s, const T* grad_out, const T* x, const T* weight,
                                const double* save_mean, const double* save_invstd, T* grad_x, T* grad_weight,
                                T* grad_bias, bool training, cudaStream_t stream);

// Layer and group normalization (layer_norm.cu): the shapes, layouts and null arguments of
// cpu::layer_norm_* and cpu::group_norm_* (T float or double, device memory, save_mean and
// save_rstd float64, NaN for empty rows). Statistics as the CPU's in value: the row's mean from
// the sum of x - x[0], then the sum of squared deviations from it, summed in float64 across
// threads in a fixed order; normalized values and grad_x in T, within a few roundings of T (not
// the CPU's bits). The weight and bias gradients are float64 partial sums over fixed row ranges
// (layer norm) or samples (group norm) in `workspace`, added in order: the same bits on every run.
template <class T>
void launch_layer_norm_forward(const cpu::LayerNormShape& s, const T* x, const T* weight, const T* bias, T* out,
                               double* save_mean, double* save_rstd, double eps, cudaStream_t stream);

// The bytes of device memory launch_layer_norm_backward needs in `workspace` when grad_weight or
// grad_bias is wanted (none otherwise).
std::int64_t layer_norm_backward_workspace_bytes(const cpu::LayerNormShape& s);

template <class T>
void launch_layer_norm_backward(const cpu::LayerNormShape& s, const T* grad_out, const T* x, const T* weight,
                                const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight,
                                T* grad_bias, void* workspace, cudaStream_t stream);

template <class T>
void launch_group_norm_forward(const cpu::GroupNormShape& s, const T* x, const T* weight, const T* bias, T* out,
                               double* save_mean, double* save_rstd, double eps, cudaStream_t stream);

// As layer_norm_backward_workspace_bytes, for launch_group_norm_backward.
std::int64_t group_norm_backward_workspace_bytes(const cpu::GroupNormShape& s);

template <class T>
void launch_group_norm_backward(const cpu::GroupNormShape& s, const T* grad_out, const T* x, const T* weight,
                                const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight,
                                T* grad_bias, void* workspace, cudaStream_t stream);

}  // namespace deepkern::cuda
