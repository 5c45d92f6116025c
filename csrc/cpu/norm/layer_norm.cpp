// Layer and group normalization: splits the rows ((sample, group) pairs for group norm) over
// threads in contiguous ranges and runs the active ISA's loops (kernels.h) on each; a row's
// statistics and normalization stay on one thread, and layer norm's threads prefetch their next
// row while the current one computes. The weight and bias gradients are summed per thread into
// float64 partials (layer norm's through sums in T flushed every kLayerNormFlushRows rows), then
// added in thread order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/norm/kernels.h"
#include "cpu/norm/norm.h"

namespace deepkern::cpu {
namespace {

// Below this many elements per thread fewer threads run (a thread start costs about as much as
// streaming 32K elements from cache).
constexpr int64_t kMinPerThread = int64_t(1) << 15;

template <class T>
const NormKernels<T>& kernels() {
  return dispatch(IsaFamily::norm, IsaTables{generic::norm_kernels, avx2::norm_kernels, avx512::norm_kernels}).of<T>();
}

// The threads for `units` rows of `elements` elements in all (at least 1).
int threads_for(int64_t units, int64_t elements) {
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(num_threads(), units));
  return static_cast<int>(std::clamp<int64_t>(elements / kMinPerThread, 1, most));
}

// Runs body(t, u) for every unit u in [0, units), thread t taking a contiguous range.
template <class Body>
void for_units(int threads, int64_t units, Body&& body) {
  run_on_threads(threads, [&](int t) {
    for (int64_t u = units * t / threads; u < units * (t + 1) / threads; ++u) body(t, u);
  });
}

// The row after a row of `len` elements at `row` (none when `exists` is false), which the CPU is
// asked to load into its cache, half by half, while the current row computes: the loads overlap
// the computation instead of waiting for it.
template <class T>
class NextRow {
 public:
  NextRow(const T* row, int64_t len, bool exists)
      : bytes_(reinterpret_cast<const char*>(row + len)), size_(exists ? len * int64_t(sizeof(T)) : 0) {}

  // Prefetches half h (0 or 1) of the row.
  void prefetch_half(int h) const {
    const int64_t half = (size_ + 127) / 128 * 64;
    for (int64_t at = h * half; at < std::min(size_, (h + 1) * half); at += 64) __builtin_prefetch(bytes_ + at);
  }

 private:
  const char* bytes_;
  int64_t size_;
};

// The mean and 1 / sqrt(biased variance + eps) of `len` contiguous values (NaN for len == 0). Float64
// deviations beyond ~1e154 square past the largest double: such a row's deviations are scaled by the
// largest of them first, so its rstd is the finite one, not 1 / inf = 0 (which made every output 0).
// A spread below sqrt(epsilon) of the mean (a float64 row of one huge value: sum / n lands a step off
// it, and that step was the whole deviation, normalizing the row to +-1) takes the mean's correction,
// the mean deviation from it, and its squares again.
template <class T>
void moments(const NormKernels<T>& k, const T* x, int64_t len, double eps, double* mean, double* rstd) {
  if (len == 0) {
    *mean = *rstd = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  const ChannelRows row{1, len, len};
  const double n = static_cast<double>(len);
  *mean = k.sum(x, row) / n;
  double squares = k.squared_deviations(x, row, *mean);
  const double narrow = std::sqrt(std::numeric_limits<double>::epsilon()) * std::abs(*mean);
  if (squares <= n * narrow * narrow && narrow > 0 && std::isfinite(*mean)) {
    double deviation = 0;
    for (int64_t i = 0; i < len; ++i) deviation += static_cast<double>(x[i]) - *mean;
    *mean += deviation / n;
    squares = k.squared_deviations(x, row, *mean);
  }
  if (!std::isinf(squares) || !std::isfinite(*mean)) {
    *rstd = 1 / std::sqrt(squares / n + eps);
    return;
  }
  double largest = 0, scaled = 0;
  for (int64_t i = 0; i < len; ++i) largest = std::max(largest, std::abs(static_cast<double>(x[i]) - *mean));
  for (int64_t i = 0; i < len; ++i) {
    const double d = (static_cast<double>(x[i]) - *mean) / largest;
    scaled += d * d;
  }
  *rstd = 1 / (largest * std::sqrt(scaled / n + eps / largest / largest));
}

// Per-thread float64 partial sums of the weight and bias gradients (`width` columns each,
// weight's then bias's; both kept whenever either gradient is wanted, none when neither is),
// added in thread order into grad_weight and grad_bias (each may be null) by finish(). Layer
// norm's rows add into per-thread sums in T first (pending(t), the same layout), which
// flush_partials moves into the float64 ones every kLayerNormFlushRows rows.
template <class T>
class ParamGradSums {
 public:
  ParamGradSums(int threads, int64_t width, T* grad_weight, T* grad_bias, bool pending_in_t = false)
      : width_(width),
        gw_(grad_weight),
        gb_(grad_bias),
        parts_(gw_ || gb_ ? threads * 2 * width : 0, 0.0),
        pending_(pending_in_t ? parts_.size() : 0, T(0)) {}

  // Thread t's partial sums (null when neither gradient is wanted).
  double* weight_part(int t) { return parts_.empty() ? nullptr : parts_.data() + 2 * t * width_; }
  double* bias_part(int t) { return parts_.empty() ? nullptr : parts_.data() + (2 * t + 1) * width_; }
  // Thread t's sums in T (null when neither gradient is wanted or pending_in_t was false).
  T* pending(int t) { return pending_.empty() ? nullptr : pending_.data() + 2 * t * width_; }

  void finish(int threads) {
    if (parts_.empty()) return;
    for (int64_t j = 0; j < width_; ++j) {
      double w = 0, b = 0;
      for (int t = 0; t < threads; ++t) {
        w += weight_part(t)[j];
        b += bias_part(t)[j];
      }
      if (gw_) gw_[j] = static_cast<T>(w);
      if (gb_) gb_[j] = static_cast<T>(b);
    }
  }

 private:
  int64_t width_;
  T *gw_, *gb_;
  std::vector<double> parts_;
  std::vector<T> pending_;
};

}  // namespace

template <class T>
void layer_norm_forward(const LayerNormShape& s, const T* x, const T* weight, const T* bias, T* out, double* save_mean,
                        double* save_rstd, double eps) {
  const NormKernels<T>& k = kernels<T>();
  const int threads = threads_for(s.rows, s.rows * s.len);
  for_units(threads, s.rows, [&](int, int64_t r) {
    const int64_t at = r * s.len;
    const NextRow<T> next(x + at, s.len, r + 1 < s.rows);
    next.prefetch_half(0);
    moments(k, x + at, s.len, eps, &save_mean[r], &save_rstd[r]);
    next.prefetch_half(1);
    k.row_normalize(x + at, out + at, s.len, save_mean[r], save_rstd[r], weight, bias);
  });
}

template <class T>
void layer_norm_backward(const LayerNormShape& s, const T* grad_out, const T* x, const T* weight,
                         const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight, T* grad_bias) {
  const NormKernels<T>& k = kernels<T>();
  const int threads = threads_for(s.rows, s.rows * s.len);
  ParamGradSums<T> params(threads, s.len, grad_weight, grad_bias, true);
  const double count = static_cast<double>(s.len);
  run_on_threads(threads, [&](int t) {
    T* pending = params.pending(t);
    const int64_t begin = s.rows * t / threads, end = s.rows * (t + 1) / threads;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t at = r * s.len;
      const NextRow<T> next_g(grad_out + at, s.len, r + 1 < end), next_x(x + at, s.len, r + 1 < end);
      next_g.prefetch_half(0);
      next_x.prefetch_half(0);
      double sums[2] = {0, 0};
      if (grad_x) k.row_grad_sums(grad_out + at, x + at, s.len, save_mean[r], save_rstd[r], weight, sums);
      next_g.prefetch_half(1);
      next_x.prefetch_half(1);
      k.row_grad_input(grad_out + at, x + at, grad_x ? grad_x + at : nullptr, s.len, save_mean[r], save_rstd[r], weight,
                       sums[0] / count, sums[1] / count, pending, pending ? pending + s.len : nullptr);
      if (pending && ((r + 1 - begin) % kLayerNormFlushRows == 0 || r + 1 == end))
        k.flush_partials(pending, params.weight_part(t), 2 * s.len);
    }
  });
  params.finish(threads);
}

template <class T>
void group_norm_forward(const GroupNormShape& s, const T* x, const T* weight, const T* bias, T* out, double* save_mean,
                        double* save_rstd, double eps) {
  const NormKernels<T>& k = kernels<T>();
  const int64_t units = s.n * s.groups, per_group = s.groups ? s.c / s.groups : 0, len = per_group * s.s;
  const int threads = threads_for(units, units * len);
  const ChannelRows channel{1, s.s, s.s};
  for_units(threads, units, [&](int, int64_t u) {
    const int64_t at = u * len;
    moments(k, x + at, len, eps, &save_mean[u], &save_rstd[u]);
    for (int64_t j = 0, ch = u % s.groups * per_group; j < per_group; ++j, ++ch) {
      const double scale = save_rstd[u] * (weight ? static_cast<double>(weight[ch]) : 1.0);
      k.normalize(x + at + j * s.s, out + at + j * s.s, channel, save_mean[u], scale,
                  bias ? static_cast<double>(bias[ch]) : 0.0);
    }
  });
}

template <class T>
void group_norm_backward(const GroupNormShape& s, const T* grad_out, const T* x, const T* weight,
                         const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight, T* grad_bias) {
  const NormKernels<T>& k = kernels<T>();
  const int64_t units = s.n * s.groups, per_group = s.groups ? s.c / s.groups : 0, len = per_group * s.s;
  const int threads = threads_for(units, units * len);
  ParamGradSums<T> params(threads, s.c, grad_weight, grad_bias);
  std::vector<double> channel_sums(static_cast<size_t>(threads * 2 * per_group));
  const ChannelRows channel{1, s.s, s.s};
  for_units(threads, units, [&](int t, int64_t u) {
    const int64_t at = u * len, c0 = u % s.groups * per_group;
    const double mean = save_mean[u], rstd = save_rstd[u];
    double* sums = channel_sums.data() + t * 2 * per_group;  // per channel: sum g, sum g * (x - mean)
    double* wp = params.weight_part(t);
    double* bp = params.bias_part(t);
    double sum_gw = 0, sum_gw_xhat = 0;
    for (int64_t j = 0; j < per_group; ++j) {
      const double w = weight ? static_cast<double>(weight[c0 + j]) : 1.0;
      k.grad_sums(grad_out + at + j * s.s, x + at + j * s.s, channel, mean, sums + 2 * j);
      if (wp) wp[c0 + j] += sums[2 * j + 1] * rstd;
      if (bp) bp[c0 + j] += sums[2 * j];
      sum_gw += w * sums[2 * j];
      sum_gw_xhat += w * sums[2 * j + 1] * rstd;
    }
    if (!grad_x) return;
    const double a = sum_gw / static_cast<double>(len), b = sum_gw_xhat / static_cast<double>(len) * rstd;
    for (int64_t j = 0; j < per_group; ++j) {
      const double w = weight ? static_cast<double>(weight[c0 + j]) : 1.0;
      k.grad_input(grad_out + at + j * s.s, x + at + j * s.s, grad_x + at + j * s.s, channel, mean, w, a, b, rstd);
    }
  });
  params.finish(threads);
}

#define DEEPKERN_LAYER_NORM_INSTANTIATE(T)                                                                       \
  template void layer_norm_forward<T>(const LayerNormShape&, const T*, const T*, const T*, T*, double*, double*, \
                                      double);                                                                   \
  template void layer_norm_backward<T>(const LayerNormShape&, const T*, const T*, const T*, const double*,       \
                                       const double*, T*, T*, T*);                                               \
  template void group_norm_forward<T>(const GroupNormShape&, const T*, const T*, const T*, T*, double*, double*, \
                                      double);                                                                   \
  template void group_norm_backward<T>(const GroupNormShape&, const T*, const T*, const T*, const double*,       \
                                       const double*, T*, T*, T*);
DEEPKERN_LAYER_NORM_INSTANTIATE(float)
DEEPKERN_LAYER_NORM_INSTANTIATE(double)
#undef DEEPKERN_LAYER_NORM_INSTANTIATE

}  // namespace deepkern::cpu
