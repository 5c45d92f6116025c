// Batch normalization on the GPU, with the CPU kernels' contract (cpu/norm/norm.h): x is
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

}  // namespace deepkern::cuda
