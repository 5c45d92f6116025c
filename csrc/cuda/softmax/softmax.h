// Softmax, log-softmax and cross entropy on the GPU, forward and backward, with the CPU kernels'
// contract and definitions (cpu/softmax/softmax.h): x is contiguous, seen as (outer, length,
// inner), and the ops run along the middle axis. All arrays are on the current device and
// contiguous; outputs overlap no input. T is float or double. Work is queued on `stream` and the
// calls return at once.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

struct SoftmaxShape {
  std::int64_t outer, length, inner;
};

// out = softmax(x) (log: log_softmax(x)).
template <class T>
void launch_softmax(const T* x, T* out, SoftmaxShape shape, bool log, cudaStream_t stream);

// out = the gradient wrt x of softmax (log: log_softmax) from grad and the saved output y.
template <class T>
void launch_softmax_backward(const T* grad, const T* y, T* out, SoftmaxShape shape, bool log, cudaStream_t stream);

struct CrossEntropyArgs {
  std::int64_t ignore_index;
  double label_smoothing;
  // Two int64 of device memory the caller zeroed: where a target is outside [0, classes) and not
  // ignore_index, bad[0] becomes 1 and bad[1] one such target; that sample's loss is NaN (forward)
  // or its gradient row is left unwritten (backward).
  std::int64_t* bad;
};

// loss (batch * inner) and stats (batch * inner * 3) as the CPU's cross_entropy_forward; weight
// may be null. shape = (batch, classes, inner).
template <class T>
void launch_cross_entropy_forward(const T* x, const std::int64_t* target, const T* weight, T* loss, T* stats,
                                  SoftmaxShape shape, CrossEntropyArgs args, cudaStream_t stream);

// out (batch, classes, inner) as the CPU's cross_entropy_backward; grad has grad_count elements
// (batch * inner, or 1 for one factor for all).
template <class T>
void launch_cross_entropy_backward(const T* grad, std::int64_t grad_count, const T* x, const std::int64_t* target,
                                   const T* weight, const T* stats, T* out, SoftmaxShape shape, CrossEntropyArgs args,
                                   cudaStream_t stream);

}  // namespace deepkern::cuda
