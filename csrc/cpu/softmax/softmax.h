// Softmax, log-softmax and cross-entropy on the CPU, forward and backward.
//
// Layout: x is a C-contiguous array seen as (outer, length, inner): the op runs along the middle
// axis, so softmax over any dimension d of a shape S takes outer = prod S[:d], length = S[d],
// inner = prod S[d+1:] (no transpose). T is float or double; outputs overlap no input.
//
// Definitions (PyTorch's, special values included):
//   softmax(x)_c          = exp(x_c - m) / sum_k exp(x_k - m), m = max_k x_k (NaN ignored by max;
//                           a NaN anywhere in a row makes the row NaN, an all -inf row is NaN)
//   log_softmax(x)_c      = (x_c - m) - log sum_k exp(x_k - m)
//   softmax backward      = y_c (g_c - sum_k g_k y_k)            (y the saved softmax output)
//   log_softmax backward  = g_c - exp(y_c) sum_k g_k             (y the saved log_softmax output)
// Cross entropy of logits x (batch, classes, inner) and class indices t (batch, inner), weights w
// (classes; all 1 when absent), smoothing eps, per sample i = (n, j) whose t_i != ignore_index:
//   l_i = (1 - eps) w[t_i] (lse_i - x_i,t_i) + (eps / C) sum_c w_c (lse_i - x_ic),  lse_i = m_i + s_i
// with m_i the row's max and s_i = log sum_c exp(x_ic - m_i); ignored samples have l_i = 0. Their
// gradient, times a per-sample factor g_i (the caller's reduction: g/denominator for 'mean'):
//   dl_i / dx_ic = g_i (softmax(x_i)_c S_i - (eps / C) w_c - [c == t_i] (1 - eps) w[t_i]),
//   S_i = (1 - eps) w[t_i] + (eps / C) sum_c w_c;  0 for ignored samples.
// The statistics saved by the forward are stats_i = (m_i, s_i, w[t_i] or 0 when ignored): the
// softmax is then exp((x - m) - s), as accurate for logits of 1e4 as for small ones, and the sum of
// stats_i[2] is 'mean''s denominator. Targets are checked by the caller (in [0, classes) or
// ignore_index).
#pragma once
#include <cstdint>

namespace deepkern::cpu {

struct SoftmaxShape {
  int64_t outer, length, inner;
};

// out = softmax(x) (log: log_softmax(x)) along the middle axis.
template <class T>
void softmax(const T* x, T* out, SoftmaxShape shape, bool log);

// out = the gradient wrt x of softmax (log: log_softmax) given grad and the saved output y.
template <class T>
void softmax_backward(const T* grad, const T* y, T* out, SoftmaxShape shape, bool log);

struct CrossEntropyOptions {
  int64_t ignore_index;
  double label_smoothing;
};

// loss (batch * inner) = l_i, stats (batch * inner * 3) = (m_i, s_i, w[t_i] or 0). weight may be
// null. shape = (batch, classes, inner).
template <class T>
void cross_entropy_forward(const T* x, const int64_t* target, const T* weight, T* loss, T* stats, SoftmaxShape shape,
                           CrossEntropyOptions options);

// out (batch, classes, inner) = dl_i / dx times g_i; grad holds g_i per sample (grad_count =
// batch * inner) or one factor for all (grad_count = 1).
template <class T>
void cross_entropy_backward(const T* grad, int64_t grad_count, const T* x, const int64_t* target, const T* weight,
                            const T* stats, T* out, SoftmaxShape shape, CrossEntropyOptions options);

}  // namespace deepkern::cpu
