// Fused, in-place optimizer steps on the CPU with torch.optim's semantics: SGD (momentum,
// dampening, Nesterov), Adam / AdamW (amsgrad) and RMSprop (momentum, centered). One call steps a
// list of parameter tensors in one pass over their memory, on the threads of one parallel region.
#pragma once
#include <cstdint>

namespace deepkern::cpu {

// Hyperparameters with torch.optim's names and meaning, as the op received them. Validated by
// deepkern.ops.optim (lr, eps, weight_decay, momentum, alpha >= 0; betas in [0, 1)).
struct SgdOptions {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};
struct AdamOptions {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled_weight_decay;  // decoupled: AdamW
};
struct RmspropOptions {
  double lr, alpha, eps, weight_decay, momentum;
  bool centered, maximize;
};

// One parameter tensor of a step: `size` contiguous elements in param, grad and every state it
// uses; a state the options do not use is null and never touched. The arrays do not overlap.
//   SGD:     state[0] momentum_buffer (momentum != 0)
//   Adam:    state[0] exp_avg, state[1] exp_avg_sq, state[2] max_exp_avg_sq (amsgrad)
//   RMSprop: state[0] square_avg, state[1] momentum_buffer (momentum > 0), state[2] grad_avg (centered)
template <class T>
struct OptimTensor {
  T* param;
  const T* grad;
  T* state[3];
  int64_t size;
  // Adam: the step count including this step (>= 1), for the bias corrections.
  // SGD: nonzero on the first step, when momentum_buffer holds no history yet and is set to the
  // gradient (torch.optim.SGD's buffer being None). RMSprop: unused.
  int64_t step;
};

// Each call updates param and the states of every tensor in place, element by element, in the
// order of operations of PyTorch's fused CPU kernels (SGD, Adam) or foreach ops (RMSprop), so
// float32 results match torch.optim to rounding. Work is split over the threads only when there
// are enough elements to pay for the thread start (see optim.cpp).
template <class T>
void sgd_step(const SgdOptions& options, const OptimTensor<T>* tensors, int64_t count);
template <class T>
void adam_step(const AdamOptions& options, const OptimTensor<T>* tensors, int64_t count);
template <class T>
void rmsprop_step(const RmspropOptions& options, const OptimTensor<T>* tensors, int64_t count);

}  // namespace deepkern::cpu
