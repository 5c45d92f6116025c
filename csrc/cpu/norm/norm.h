// Batch normalization on the CPU: the statistics, the normalization and the running-statistics
// update in one forward call, and the three gradients in one backward call.
//
// x is C-contiguous (n, c, s): n samples, c channels, s = the product of the spatial sizes (1 for
// an (N, C) input); a channel's count is n * s. Per-channel arrays hold c elements; weight and bias
// may be null (1 and 0). Every statistic is accumulated in double: the mean, then the sum of
// squared deviations from it (two passes over the channel), so the variance has no cancellation;
// normalized values are computed in double and rounded once. Threads split the channels; each
// channel's loops run along its contiguous rows of s elements (the active ISA's kernels,
// kernels.h).
#pragma once
#include <cstdint>

namespace deepkern::cpu {

struct BatchNormShape {
  int64_t n, c, s;
};

// training: mean and biased variance of each channel from x; running_mean and running_var (each
// may be null) updated in place, r = (1 - momentum) * r + momentum * stat, with the unbiased
// variance (var * count / (count - 1); count > 1). Not training: mean and var are running_mean
// and running_var (both required). Then out = (x - mean) * invstd * weight + bias with
// invstd = 1 / sqrt(var + eps); save_mean and save_invstd (float64 whatever T is, so the backward
// pass sees the statistics unrounded) receive mean and invstd.
template <class T>
void batch_norm_forward(const BatchNormShape& s, const T* x, const T* weight, const T* bias, T* running_mean,
                        T* running_var, T* out, double* save_mean, double* save_invstd, bool training, double momentum,
                        double eps);

// From grad_out and the forward's x, weight, save_mean and save_invstd: grad_bias = sum of
// grad_out over each channel, grad_weight = sum of grad_out * xhat (xhat = (x - mean) * invstd),
// grad_x = invstd * weight * (grad_out - (sum_g + xhat * sum_g_xhat) / count) when training (the
// statistics depend on x), invstd * weight * grad_out when not. Each output may be null (not
// computed); the sums are taken in double.
template <class T>
void batch_norm_backward(const BatchNormShape& s, const T* grad_out, const T* x, const T* weight,
                         const double* save_mean, const double* save_invstd, T* grad_x, T* grad_weight, T* grad_bias,
                         bool training);

}  // namespace deepkern::cpu
