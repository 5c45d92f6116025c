// Batch normalization: splits the channels over threads and runs the active ISA's per-channel
// loops (kernels.h) on each; a channel's statistics and its normalization stay on one thread.
#include "cpu/norm/norm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/norm/kernels.h"

namespace deepkern::cpu {
namespace {

// Below this many elements a call runs on the calling thread alone (a thread start costs about
// as much as streaming 32K elements from cache).
constexpr int64_t kMinParallelElements = int64_t(1) << 15;

template <class T>
const NormKernels<T>& kernels() {
  return dispatch(IsaFamily::norm, IsaTables{generic::norm_kernels, avx2::norm_kernels, avx512::norm_kernels}).of<T>();
}

// Channels per block: a block's per-channel values live in arrays of this size on the stack, and
// an (n, c) input's rows are read kBlock channels (a few cache lines) at a time.
constexpr int64_t kBlock = 256;

// Runs body(c0, c1) over blocks [c0, c1) of at most kBlock channels, contiguous shares of the
// blocks on threads.
template <class Body>
void for_each_block(const BatchNormShape& s, Body&& body) {
  if (s.c <= 0) return;
  const int64_t blocks = (s.c + kBlock - 1) / kBlock;
  const int64_t units = s.s == 1 ? blocks : s.c;  // (n, c): blocks; else single channels
  const int threads =
      s.n * s.c * s.s < kMinParallelElements ? 1 : static_cast<int>(std::clamp<int64_t>(units, 1, num_threads()));
  run_on_threads(threads, [&](int t) {
    for (int64_t u = units * t / threads; u < units * (t + 1) / threads; ++u)
      s.s == 1 ? body(u * kBlock, std::min(s.c, (u + 1) * kBlock)) : body(u, u + 1);
  });
}

// A channel's rows in the (n, c, s) layout.
ChannelRows channel_rows(const BatchNormShape& s) { return {s.n, s.s, s.c * s.s}; }

}  // namespace

template <class T>
void batch_norm_forward(const BatchNormShape& s, const T* x, const T* weight, const T* bias, T* running_mean,
                        T* running_var, T* out, double* save_mean, double* save_invstd, bool training, double momentum,
                        double eps) {
  const NormKernels<T>& k = kernels<T>();
  const double count = static_cast<double>(s.n) * static_cast<double>(s.s);
  const ChannelRows rows = channel_rows(s);
  for_each_block(s, [&](int64_t c0, int64_t c1) {
    double mean[kBlock], var[kBlock], scale[kBlock], shift[kBlock];
    const int64_t m = c1 - c0;
    if (training && s.s == 1) {
      k.column_moments(x + c0, s.n, m, s.c, mean, var);
    } else if (training) {
      for (int64_t j = 0; j < m; ++j) {
        mean[j] = k.sum(x + (c0 + j) * s.s, rows) / count;
        var[j] = k.squared_deviations(x + (c0 + j) * s.s, rows, mean[j]);
      }
    }
    for (int64_t j = 0, ch = c0; j < m; ++j, ++ch) {
      if (training) {
        var[j] /= count;  // the sum of squared deviations above
        if (running_mean) running_mean[ch] = static_cast<T>((1 - momentum) * running_mean[ch] + momentum * mean[j]);
        if (running_var)
          running_var[ch] = static_cast<T>((1 - momentum) * running_var[ch] + momentum * var[j] * count / (count - 1));
      } else {
        mean[j] = static_cast<double>(running_mean[ch]);
        var[j] = static_cast<double>(running_var[ch]);
      }
      const double invstd = 1 / std::sqrt(var[j] + eps);
      scale[j] = invstd * (weight ? static_cast<double>(weight[ch]) : 1.0);
      shift[j] = bias ? static_cast<double>(bias[ch]) : 0.0;
      save_mean[ch] = mean[j];
      save_invstd[ch] = invstd;
    }
    if (s.s == 1)
      k.column_normalize(x + c0, out + c0, s.n, m, s.c, mean, scale, shift);
    else
      for (int64_t j = 0; j < m; ++j)
        k.normalize(x + (c0 + j) * s.s, out + (c0 + j) * s.s, rows, mean[j], scale[j], shift[j]);
  });
}

template <class T>
void batch_norm_backward(const BatchNormShape& s, const T* grad_out, const T* x, const T* weight,
                         const double* save_mean, const double* save_invstd, T* grad_x, T* grad_weight, T* grad_bias,
                         bool training) {
  const NormKernels<T>& k = kernels<T>();
  const double count = static_cast<double>(s.n) * static_cast<double>(s.s);
  const bool need_sums = grad_weight || grad_bias || (grad_x && training);
  const ChannelRows rows = channel_rows(s);
  for_each_block(s, [&](int64_t c0, int64_t c1) {
    double sum_g[kBlock] = {}, sum_gx[kBlock] = {}, a[kBlock], b[kBlock], c[kBlock];
    const int64_t m = c1 - c0;
    const double* mean = save_mean + c0;
    if (need_sums && s.s == 1) {
      k.column_grad_sums(grad_out + c0, x + c0, s.n, m, s.c, mean, sum_g, sum_gx);
    } else if (need_sums) {
      for (int64_t j = 0; j < m; ++j) {
        double sums[2];
        k.grad_sums(grad_out + (c0 + j) * s.s, x + (c0 + j) * s.s, rows, mean[j], sums);
        sum_g[j] = sums[0];
        sum_gx[j] = sums[1];
      }
    }
    for (int64_t j = 0, ch = c0; j < m; ++j, ++ch) {
      const double invstd = save_invstd[ch];
      if (grad_bias) grad_bias[ch] = static_cast<T>(sum_g[j]);
      if (grad_weight) grad_weight[ch] = static_cast<T>(sum_gx[j] * invstd);
      a[j] = training ? sum_g[j] / count : 0.0;
      b[j] = training ? sum_gx[j] * invstd * invstd / count : 0.0;
      c[j] = invstd * (weight ? static_cast<double>(weight[ch]) : 1.0);
    }
    if (!grad_x) return;
    if (s.s == 1)
      k.column_grad_input(grad_out + c0, x + c0, grad_x + c0, s.n, m, s.c, mean, a, b, c);
    else
      for (int64_t j = 0; j < m; ++j) {
        const int64_t at = (c0 + j) * s.s;
        k.grad_input(grad_out + at, x + at, grad_x + at, rows, mean[j], 1.0, a[j], b[j], c[j]);
      }
  });
}

#define DEEPKERN_NORM_INSTANTIATE(T)                                                                            \
  template void batch_norm_forward<T>(const BatchNormShape&, const T*, const T*, const T*, T*, T*, T*, double*, \
                                      double*, bool, double, double);                                           \
  template void batch_norm_backward<T>(const BatchNormShape&, const T*, const T*, const T*, const double*,      \
                                       const double*, T*, T*, T*, bool);
DEEPKERN_NORM_INSTANTIATE(float)
DEEPKERN_NORM_INSTANTIATE(double)
#undef DEEPKERN_NORM_INSTANTIATE

}  // namespace deepkern::cpu
