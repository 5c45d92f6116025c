// Normalization on the CPU: batch, layer and group normalization.
//
// Batch normalization: the statistics, the normalization and the running-statistics
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

// Layer normalization (layer_norm.cpp): x is C-contiguous (rows, len), each row normalized over its
// len elements; weight and bias (len elements each, either may be null: 1 and 0) apply per
// element. Statistics as batch norm's: float64, the mean, then the sum of squared deviations
// from it (two passes over the row, which stays in cache); the normalized values and grad_x are
// computed in T (kernels.h), within a few roundings of T. save_mean and save_rstd hold `rows`
// float64 values (NaN for len == 0). Threads split the rows; each thread asks the CPU for its next
// row while the current one computes.
struct LayerNormShape {
  int64_t rows, len;
};

// out = (x - mean) * rstd * weight + bias per row, rstd = 1 / sqrt(biased variance + eps).
template <class T>
void layer_norm_forward(const LayerNormShape& s, const T* x, const T* weight, const T* bias, T* out, double* save_mean,
                        double* save_rstd, double eps);

// With xhat = (x - mean) * rstd and gw = grad_out * weight: grad_x = rstd * (gw - mean(gw) -
// xhat * mean(gw * xhat)) per row; grad_weight = the sum over rows of grad_out * xhat, grad_bias
// the sum of grad_out. Each output may be null. grad_x's two row sums are taken in T over short
// groups, then in float64. The column sums go into per-thread sums in T, moved into per-thread
// float64 partial sums every kLayerNormFlushRows (8) rows, over contiguous row ranges; those are
// added in thread order (the same result on every run at a given thread count).
template <class T>
void layer_norm_backward(const LayerNormShape& s, const T* grad_out, const T* x, const T* weight,
                         const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight, T* grad_bias);

// Group normalization (layer_norm.cpp): x is C-contiguous (n, c, s) with the c channels in
// `groups` groups of c / groups consecutive channels (groups divides c); statistics per (sample,
// group) over its contiguous c / groups * s elements, as layer norm's; weight and bias hold c
// elements (per channel, either may be null); save_mean and save_rstd hold n * groups float64
// values. Threads split the (sample, group) pairs.
struct GroupNormShape {
  int64_t n, c, s, groups;
};

template <class T>
void group_norm_forward(const GroupNormShape& s, const T* x, const T* weight, const T* bias, T* out, double* save_mean,
                        double* save_rstd, double eps);

// Layer norm's gradients with each (sample, group) as a row and the weight per channel:
// grad_weight[c] = the sum over samples and positions of grad_out * xhat, grad_bias[c] of
// grad_out (per-thread partial sums added in thread order).
template <class T>
void group_norm_backward(const GroupNormShape& s, const T* grad_out, const T* x, const T* weight,
                         const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight, T* grad_bias);

}  // namespace deepkern::cpu
