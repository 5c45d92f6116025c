// Fused optimizer steps on the GPU: SGD, Adam / AdamW and RMSprop with the CPU kernels' contract
// (cpu/optim/optim.h: the same options, the same OptimTensor lists with device pointers) and the
// same per-element rules (cpu/optim/rules.h), so a step's results equal the CPU's bit for bit
// where the CPU fuses its multiply-adds (AVX2 / AVX-512) and no value is denormal (see
// optim_kernels.cu). Work is queued on `stream` and the call returns at once; every pointer is on
// the current device.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cpu/optim/optim.h"

namespace deepkern::cuda {

template <class T>
void sgd_step(const cpu::SgdOptions& options, const cpu::OptimTensor<T>* tensors, int64_t count, cudaStream_t stream);
template <class T>
void adam_step(const cpu::AdamOptions& options, const cpu::OptimTensor<T>* tensors, int64_t count, cudaStream_t stream);
template <class T>
void rmsprop_step(const cpu::RmspropOptions& options, const cpu::OptimTensor<T>* tensors, int64_t count,
                  cudaStream_t stream);

}  // namespace deepkern::cuda
