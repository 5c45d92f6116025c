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

// The sum of Lanes partial sums, added pairwise (a tree of log2(Lanes) vector adds, not a chain of
// Lanes scalar ones); acc is overwritten.
template <int Lanes>
double lanes_total(double* acc) {
#pragma GCC unroll 8
  for (int half = Lanes / 2; half >= 1; half /= 2)
    for (int l = 0; l < half; ++l) acc[l] += acc[l + half];
  return acc[0];
}

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
  for (int k = 0; k < K; ++k) sums[k] = lanes_total<Lanes>(acc[k]);
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

// The gradient's term of x, (x - mean) b; none where b = 0 (evaluation: the gradient does not read
// x, so an inf or NaN input leaves it finite, as PyTorch's).
inline double centered_term(double x, double mean, double b) { return b == 0 ? 0.0 : (x - mean) * b; }

template <class T>
void grad_input(const T* g, const T* x, T* gx, const ChannelRows& r, double mean, double p, double a, double b,
                double c) {
  map_channel(gx, r, [&](int64_t i) {
    return (static_cast<double>(g[i]) * p - a - centered_term(static_cast<double>(x[i]), mean, b)) * c;
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
  T hi = 0, lo = 0;
  SplitMean() = default;
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

// sums[k] = the sum over j in [0, len) of the K terms term(j, t) writes into t[0..K) (computed
// in T): in T over groups of kGroup terms per lane (a vector's worth of lanes), each group's sum
// then added into float64 lanes; so the conversions to double cost one per kGroup terms and the
// rounding error stays that of kGroup-term sums in T, whatever len.
template <class T, int K, class Term>
void grouped_row_sums(int64_t len, Term term, double* sums) {
  constexpr int Lanes = 64 / sizeof(T), kGroup = 4;
  double acc[K][Lanes] = {};
  int64_t j = 0;
  for (; j + Lanes * kGroup <= len; j += Lanes * kGroup) {
    T part[K][Lanes] = {};
    for (int q = 0; q < kGroup; ++q)
      for (int l = 0; l < Lanes; ++l) {
        T t[K];
        term(j + q * Lanes + l, t);
        for (int k = 0; k < K; ++k) part[k][l] += t[k];
      }
    for (int k = 0; k < K; ++k)
      for (int l = 0; l < Lanes; ++l) acc[k][l] += static_cast<double>(part[k][l]);
  }
  for (; j < len; ++j) {
    T t[K];
    term(j, t);
    for (int k = 0; k < K; ++k) acc[k][j % Lanes] += static_cast<double>(t[k]);
  }
  for (int k = 0; k < K; ++k) sums[k] = lanes_total<Lanes>(acc[k]);
}

template <class T>
void row_grad_sums(const T* g, const T* x, int64_t len, double mean, double rstd, const T* weight, double* sums) {
  const SplitMean<T> m(mean);
  const T r = static_cast<T>(rstd);
  with_flag(weight != nullptr, [&](auto has_weight) {
    grouped_row_sums<T, 2>(
        len,
        [&](int64_t j, T* t) {
          T gw = g[j];
          if constexpr (has_weight) gw *= weight[j];
          t[0] = gw;
          t[1] = gw * (m.centre(x[j]) * r);
        },
        sums);
  });
}

template <class T>
void row_grad_input(const T* g, const T* x, T* gx, int64_t len, double mean, double rstd, const T* weight, double a,
                    double b, T* part_gxhat, T* part_g) {
  const SplitMean<T> m(mean);
  const T r = static_cast<T>(rstd), ta = static_cast<T>(a), tb = static_cast<T>(b);
  with_flag(weight != nullptr, [&](auto has_weight) {
    with_flag(gx != nullptr, [&](auto write_gx) {
      with_flag(part_g != nullptr, [&](auto has_parts) {
      // The outputs never overlap the row (distinct arrays).
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) {
          const T gv = g[j], xhat = m.centre(x[j]) * r;
          if constexpr (write_gx) gx[j] = ((has_weight ? gv * weight[j] : gv) - ta - xhat * tb) * r;
          if constexpr (has_parts) {
            part_gxhat[j] += gv * xhat;
            part_g[j] += gv;
          }
        }
      });
    });
  });
}

template <class T>
void flush_partials(T* part, double* sums, int64_t len) {
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    sums[j] += static_cast<double>(part[j]);
    part[j] = 0;
  }
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
    return (static_cast<double>(g[i]) - a[j] - centered_term(static_cast<double>(x[i]), mean[j], b[j])) * c[j];
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
    .flush_partials = &flush_partials<T>,
    .column_moments = &column_moments<T>,
    .column_normalize = &column_normalize<T>,
    .column_grad_sums = &column_grad_sums<T>,
    .column_grad_input = &column_grad_input<T>,
};

}  // namespace

const KernelsByType<NormKernels> norm_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
