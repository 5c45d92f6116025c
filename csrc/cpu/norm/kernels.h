// The normalization loops of one ISA, as the table norm.cpp and layer_norm.cpp dispatch on. The
// channel kernels work on one channel (batch norm; group norm's channels and groups): `rows` rows
// of `len` contiguous elements, row r at element r * stride (the (n, c, s) layout: rows = n,
// len = s, stride = c * s). Sums are taken in double over several lanes; the channel kernels'
// values are computed in double and rounded once to T, the row kernels' in T (see row_normalize).
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

// A channel's view in an (n, c, s) array.
struct ChannelRows {
  int64_t rows, len, stride;
};

// Rows whose parameter-gradient terms row_grad_sums adds in T before flush_partials adds them
// into the float64 sums.
constexpr int64_t kLayerNormFlushRows = 8;

template <class T>
struct NormKernels {
  // The sum of the channel's elements.
  double (*sum)(const T* x, const ChannelRows& r);
  // The sum of (x - mean)^2 over the channel.
  double (*squared_deviations)(const T* x, const ChannelRows& r, double mean);
  // out = (x - mean) * scale + shift over the channel.
  void (*normalize)(const T* x, T* out, const ChannelRows& r, double mean, double scale, double shift);
  // sums[0] = the sum of g, sums[1] = the sum of g * (x - mean) over the channel.
  void (*grad_sums)(const T* g, const T* x, const ChannelRows& r, double mean, double* sums);
  // gx = (g * p - a - (x - mean) * b) * c over the channel.
  void (*grad_input)(const T* g, const T* x, T* gx, const ChannelRows& r, double mean, double p, double a, double b,
                     double c);

  // Layer norm's row kernels: one contiguous row of `len` elements with per-element weight and
  // bias (each may be null: 1 and 0).
  // out = (x - mean) * rstd * weight + bias, computed in T with the float64 mean split into two
  // T values (x - mean keeps T's accuracy relative to the difference however large the mean):
  // a few roundings of T per element.
  void (*row_normalize)(const T* x, T* out, int64_t len, double mean, double rstd, const T* weight, const T* bias);
  // With xhat = (x - mean) * rstd and gw = g * weight, both computed in T as row_normalize:
  // sums[0] = the sum of gw, sums[1] = the sum of gw * xhat (in T over groups of a few terms per
  // lane, then in double).
  void (*row_grad_sums)(const T* g, const T* x, int64_t len, double mean, double rstd, const T* weight, double* sums);
  // The row's second pass: gx = (g * weight - a - xhat * b) * rstd, computed in T as
  // row_normalize (when gx is given), and the parameter gradients' column sums in T (when part_g
  // is given): part_gxhat[j] += g * xhat, part_g[j] += g; flush_partials moves those into float64
  // every kLayerNormFlushRows rows, so their rounding error is that of sums of that many terms.
  void (*row_grad_input)(const T* g, const T* x, T* gx, int64_t len, double mean, double rstd, const T* weight,
                         double a, double b, T* part_gxhat, T* part_g);
  // sums[j] += part[j], then part[j] = 0, for j in [0, len).
  void (*flush_partials)(T* part, double* sums, int64_t len);

  // The same for `cols` adjacent channels of an (n, c) input (s == 1): channel j is column j of
  // `rows` rows `stride` apart; its values are element j of the per-channel arrays. The loops run
  // along the rows, vectorized over the columns.
  // mean[j] and m2[j] = the column's mean and sum of squared deviations from it (two passes).
  void (*column_moments)(const T* x, int64_t rows, int64_t cols, int64_t stride, double* mean, double* m2);
  void (*column_normalize)(const T* x, T* out, int64_t rows, int64_t cols, int64_t stride, const double* mean,
                           const double* scale, const double* shift);
  void (*column_grad_sums)(const T* g, const T* x, int64_t rows, int64_t cols, int64_t stride, const double* mean,
                           double* sum_g, double* sum_gx);
  void (*column_grad_input)(const T* g, const T* x, T* gx, int64_t rows, int64_t cols, int64_t stride,
                            const double* mean, const double* a, const double* b, const double* c);
};

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<NormKernels>, norm_kernels)

}  // namespace deepkern::cpu
