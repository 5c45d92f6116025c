// The normalization loops (kernels.h), compiled once per ISA. The sums keep several double
// accumulators per row chunk (lane_sums), so the compiler vectorizes them over the contiguous
// elements (the lanes are added in a fixed order at the end); the maps convert to double, compute
// and round once.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu/norm/kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// sums[k] = the sum over the channel's elements i of the K terms term(i, t) writes into t[0..K),
// accumulated in Lanes partial sums per term (lane j % Lanes of each row).
template <int K, int Lanes, class Term>
void lane_sums_of(const ChannelRows& r, Term term, double* sums) {
  double acc[K][Lanes] = {};
  for (int64_t row = 0; row < r.rows; ++row) {
    const int64_t base = row * r.stride;
    int64_t j = 0;
    for (; j + Lanes <= r.len; j += Lanes)
      for (int l = 0; l < Lanes; ++l) {
        double t[K];
        term(base + j + l, t);
        for (int k = 0; k < K; ++k) acc[k][l] += t[k];
      }
    for (; j < r.len; ++j) {
      double t[K];
      term(base + j, t);
      for (int k = 0; k < K; ++k) acc[k][j % Lanes] += t[k];
    }
  }
  for (int k = 0; k < K; ++k) {
    double total = 0;
    for (int l = 0; l < Lanes; ++l) total += acc[k][l];
    sums[k] = total;
  }
}

// lane_sums_of with 8 lanes (a vector of doubles), or 32 for rows of 128 elements or more: four
// independent vector sums, so the loop runs at the adds' throughput rather than their latency.
template <int K, class Term>
void lane_sums(const ChannelRows& r, Term term, double* sums) {
  if (r.len >= 128)
    lane_sums_of<K, 32>(r, term, sums);
  else
    lane_sums_of<K, 8>(r, term, sums);
}

// out[i] = value(i) rounded to T for every element i of the channel.
template <class T, class Value>
void map_channel(T* out, const ChannelRows& r, Value value) {
  for (int64_t row = 0; row < r.rows; ++row) {
    const int64_t base = row * r.stride;
    for (int64_t j = 0; j < r.len; ++j) out[base + j] = static_cast<T>(value(base + j));
  }
}

template <class T>
double sum(const T* x, const ChannelRows& r) {
  double total;
  lane_sums<1>(r, [&](int64_t i, double* t) { t[0] = static_cast<double>(x[i]); }, &total);
  return total;
}

template <class T>
double squared_deviations(const T* x, const ChannelRows& r, double mean) {
  double total;
  lane_sums<1>(
      r,
      [&](int64_t i, double* t) {
        const double d = static_cast<double>(x[i]) - mean;
        t[0] = d * d;
      },
      &total);
  return total;
}

template <class T>
void normalize(const T* x, T* out, const ChannelRows& r, double mean, double scale, double shift) {
  map_channel(out, r, [&](int64_t i) { return (static_cast<double>(x[i]) - mean) * scale + shift; });
}

template <class T>
void grad_sums(const T* g, const T* x, const ChannelRows& r, double mean, double* sums) {
  lane_sums<2>(
      r,
      [&](int64_t i, double* t) {
        t[0] = static_cast<double>(g[i]);
        t[1] = t[0] * (static_cast<double>(x[i]) - mean);
      },
      sums);
}

template <class T>
void grad_input(const T* g, const T* x, T* gx, const ChannelRows& r, double mean, double p, double a, double b,
                double c) {
  map_channel(gx, r, [&](int64_t i) {
    return (static_cast<double>(g[i]) * p - a - (static_cast<double>(x[i]) - mean) * b) * c;
  });
}

// ---- rows (layer norm) ---------------------------------------------------------------------------

// Calls f(std::true_type) when `flag`, else f(std::false_type): a loop inside f tests the flag with
// `if constexpr`, so each case compiles to its own loop without a branch per element.
template <class F>
void with_flag(bool flag, F&& f) {
  flag ? f(std::true_type{}) : f(std::false_type{});
}

// A float64 row mean as T's hi + lo, so (x - hi) - lo is x - mean to T's accuracy relative to the
// difference (x - hi is exact near the mean), which keeps the centring accurate when |mean| is
// far larger than the spread; the row maps then compute in T, at T's vector width.
template <class T>
struct SplitMean {
  T hi, lo;
  explicit SplitMean(double mean)
      : hi(static_cast<T>(mean)), lo(static_cast<T>(mean - static_cast<double>(static_cast<T>(mean)))) {}
  T centre(T x) const { return (x - hi) - lo; }
};

template <class T>
void row_normalize(const T* x, T* out, int64_t len, double mean, double rstd, const T* weight, const T* bias) {
  const SplitMean<T> m(mean);
  const T r = static_cast<T>(rstd);
  with_flag(weight != nullptr, [&](auto has_weight) {
    with_flag(bias != nullptr, [&](auto has_bias) {
      for (int64_t j = 0; j < len; ++j) {
        T v = m.centre(x[j]) * r;
        if constexpr (has_weight) v *= weight[j];
        if constexpr (has_bias) v += bias[j];
        out[j] = v;
      }
    });
  });
}

template <class T>
void row_grad_sums(const T* g, const T* x, int64_t len, double mean, double rstd, const T* weight, double* sums,
                   double* sum_gxhat, double* sum_g) {
  with_flag(weight != nullptr, [&](auto has_weight) {
    with_flag(sum_gxhat != nullptr && sum_g != nullptr, [&](auto both_params) {
      lane_sums<2>(
          {1, len, len},
          [&](int64_t j, double* t) {
            const double gv = static_cast<double>(g[j]), xhat = (static_cast<double>(x[j]) - mean) * rstd;
            if constexpr (both_params) {
              sum_gxhat[j] += gv * xhat;
              sum_g[j] += gv;
            } else {
              if (sum_gxhat) sum_gxhat[j] += gv * xhat;
              if (sum_g) sum_g[j] += gv;
            }
            t[0] = has_weight ? gv * static_cast<double>(weight[j]) : gv;
            t[1] = t[0] * xhat;
          },
          sums);
    });
  });
}

template <class T>
void row_grad_input(const T* g, const T* x, T* gx, int64_t len, double mean, double rstd, const T* weight, double a,
                    double b) {
  const SplitMean<T> m(mean);
  const T r = static_cast<T>(rstd), ta = static_cast<T>(a), tb = static_cast<T>(b);
  with_flag(weight != nullptr, [&](auto has_weight) {
    for (int64_t j = 0; j < len; ++j) {
      const T gw = has_weight ? g[j] * weight[j] : g[j];
      gx[j] = (gw - ta - m.centre(x[j]) * r * tb) * r;
    }
  });
}

// ---- columns ((n, c) inputs) -------------------------------------------------------------------

// acc[j] += term(r * stride + j, j) for every row r and column j.
template <class Term>
void column_accumulate(int64_t rows, int64_t cols, int64_t stride, double* acc, Term term) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) acc[j] += term(r * stride + j, j);
}

// out[r * stride + j] = value(r * stride + j, j) rounded to T.
template <class T, class Value>
void column_map(T* out, int64_t rows, int64_t cols, int64_t stride, Value value) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) out[r * stride + j] = static_cast<T>(value(r * stride + j, j));
}

// Rows per tile of column_moments: a tile of kBlock float64 columns (norm.cpp) stays in L2
// between its two passes.
constexpr int64_t kTileRows = 64;

// Per column: the two-pass mean and squared deviations of each tile of kTileRows rows (the second
// pass reads the tile from cache), merged into the running ones by Chan's formula, so the input
// is read from memory once.
template <class T>
void column_moments(const T* x, int64_t rows, int64_t cols, int64_t stride, double* mean, double* m2) {
  std::fill(mean, mean + cols, 0.0);
  std::fill(m2, m2 + cols, 0.0);
  constexpr int64_t kMaxCols = 256;
  double tile_mean[kMaxCols], tile_m2[kMaxCols];
  for (int64_t c0 = 0; c0 < cols; c0 += kMaxCols) {
    const int64_t m = std::min(kMaxCols, cols - c0);
    for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
      const int64_t n = std::min(kTileRows, rows - r0);
      const T* tile = x + r0 * stride + c0;
      std::fill(tile_mean, tile_mean + m, 0.0);
      std::fill(tile_m2, tile_m2 + m, 0.0);
      column_accumulate(n, m, stride, tile_mean, [&](int64_t i, int64_t) { return static_cast<double>(tile[i]); });
      for (int64_t j = 0; j < m; ++j) tile_mean[j] /= static_cast<double>(n);
      column_accumulate(n, m, stride, tile_m2, [&](int64_t i, int64_t j) {
        const double d = static_cast<double>(tile[i]) - tile_mean[j];
        return d * d;
      });
      const double seen = static_cast<double>(r0), total = static_cast<double>(r0 + n);
      for (int64_t j = 0; j < m; ++j) {
        const double delta = tile_mean[j] - mean[c0 + j];
        mean[c0 + j] += delta * static_cast<double>(n) / total;
        m2[c0 + j] += tile_m2[j] + delta * delta * seen * static_cast<double>(n) / total;
      }
    }
  }
}

template <class T>
void column_normalize(const T* x, T* out, int64_t rows, int64_t cols, int64_t stride, const double* mean,
                      const double* scale, const double* shift) {
  column_map(out, rows, cols, stride,
             [&](int64_t i, int64_t j) { return (static_cast<double>(x[i]) - mean[j]) * scale[j] + shift[j]; });
}

template <class T>
void column_grad_sums(const T* g, const T* x, int64_t rows, int64_t cols, int64_t stride, const double* mean,
                      double* sum_g, double* sum_gx) {
  std::fill(sum_g, sum_g + cols, 0.0);
  std::fill(sum_gx, sum_gx + cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const double gv = static_cast<double>(g[r * stride + j]);
      sum_g[j] += gv;
      sum_gx[j] += gv * (static_cast<double>(x[r * stride + j]) - mean[j]);
    }
}

template <class T>
void column_grad_input(const T* g, const T* x, T* gx, int64_t rows, int64_t cols, int64_t stride, const double* mean,
                       const double* a, const double* b, const double* c) {
  column_map(gx, rows, cols, stride, [&](int64_t i, int64_t j) {
    return (static_cast<double>(g[i]) - a[j] - (static_cast<double>(x[i]) - mean[j]) * b[j]) * c[j];
  });
}

template <class T>
constexpr NormKernels<T> kernels_of = {
    .sum = &sum<T>,
    .squared_deviations = &squared_deviations<T>,
    .normalize = &normalize<T>,
    .grad_sums = &grad_sums<T>,
    .grad_input = &grad_input<T>,
    .row_normalize = &row_normalize<T>,
    .row_grad_sums = &row_grad_sums<T>,
    .row_grad_input = &row_grad_input<T>,
    .column_moments = &column_moments<T>,
    .column_normalize = &column_normalize<T>,
    .column_grad_sums = &column_grad_sums<T>,
    .column_grad_input = &column_grad_input<T>,
};

}  // namespace

const KernelsByType<NormKernels> norm_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
