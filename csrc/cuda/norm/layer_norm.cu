// The layer and group normalization kernels (norm.h).
//
// Layer norm, forward and grad_x: a group of threads per row, the row held in registers.
//   rows of up to kWarpRowLimit elements: a warp per row (kWarpRowsPerBlock rows per block);
//   longer rows: a block of kBlockThreads threads per row.
// Each thread holds the packs q = t, t + group, t + 2 * group, ... of its row (a pack is 4 floats,
// one float4 load, where the row length and every pointer allow it, else 1 element), up to
// kHeldBytes of them; packs beyond (rows longer than the registers cover) are read again from
// memory at each pass. Statistics, in two passes over the registers: the sum of x - shift (shift =
// the row's first element, so a large common offset cancels before any rounding), then the sum of
// the squared centred values; each thread adds its held values in T (at most 32 of them, or one
// pack at a time beyond), then in float64, and the group adds the float64 partials in a fixed
// order (warp butterfly, then the warps in order through shared memory). The mean is split into
// T's hi + lo (as the CPU's SplitMean), so x - mean keeps T's accuracy next to a large offset.
//
// Layer norm, grad_weight and grad_bias: a grid of (column blocks, row parts); each thread sums
// its column over a fixed range of rows in float64 into a workspace, then sum_parts_kernel adds
// the parts in order. No atomics: the results repeat bit for bit.
//
// Group norm: a block per (sample, group); its statistics as a long layer-norm row, then a flat
// pass with each element's channel followed by a cursor. The backward sums each channel with a
// warp (float64), writes the per-sample channel sums to the workspace for sum_parts_kernel, and
// combines the channel sums into the group's two sums for grad_x.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/launch.h"
#include "cuda/norm/norm.h"

namespace deepkern::cuda {
namespace {

using cpu::GroupNormShape;
using cpu::LayerNormShape;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;
constexpr int kBlockThreads = 256;
constexpr int kBlockWarps = kBlockThreads / kWarp;
constexpr int kWarpRowsPerBlock = 4;
constexpr std::int64_t kWarpRowLimit = 1024;
// Bytes of each array a thread holds in registers: float4 packs, 32 floats per lane (a 1024-element
// row with a warp) or 16 floats per thread (4096 with a block); single elements, half as many (their
// addresses and bounds checks cost registers too).
constexpr int kWarpHeldBytes = 128;
constexpr int kBlockHeldBytes = 64;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;
// grad_weight / grad_bias: rows per part at least kMinPartRows, at most kMaxParts parts.
constexpr std::int64_t kMinPartRows = 32;
constexpr std::int64_t kMaxParts = 1024;

// V consecutive elements; V = 4 (float only) loads and stores as one float4.
template <class T, int V>
struct Pack {
  T v[V];
};

template <class T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  static_assert(V == 1 || (V == 4 && std::is_same_v<T, float>), "packs are 1 element or 4 floats");
  Pack<T, V> r;
  if constexpr (V == 4) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    r.v[0] = f.x;
    r.v[1] = f.y;
    r.v[2] = f.z;
    r.v[3] = f.w;
  } else {
    r.v[0] = *p;
  }
  return r;
}

template <class T, int V>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& r) {
  if constexpr (V == 4)
    *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  else
    *p = r.v[0];
}

// A float64 mean as T's hi + lo: (x - hi) - lo is x - mean to T's accuracy relative to the
// difference (x - hi is exact near the mean), as the CPU kernels centre.
template <class T>
struct SplitMean {
  T hi, lo;
  __device__ explicit SplitMean(double mean)
      : hi(static_cast<T>(mean)), lo(static_cast<T>(mean - static_cast<double>(static_cast<T>(mean)))) {}
  __device__ T centre(T x) const { return (x - hi) - lo; }
};

struct Sums {
  double a, b;
};

// (a, b) summed over the kThreads threads of a row group, every one of them getting the same
// result: a butterfly over the warp (each lane adds the same pairs), then, for a block, the warps'
// sums in warp order through `shared` (2 * kThreads / 32 doubles; barriers before and after).
template <int kThreads>
__device__ __forceinline__ Sums group_sum(Sums s, double* shared) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    s.a += __shfl_xor_sync(kFullMask, s.a, offset);
    s.b += __shfl_xor_sync(kFullMask, s.b, offset);
  }
  if constexpr (kThreads > kWarp) {
    const int warp = static_cast<int>(threadIdx.x) / kWarp;
    __syncthreads();  // the previous call's readers are done
    if (threadIdx.x % kWarp == 0) {
      shared[2 * warp] = s.a;
      shared[2 * warp + 1] = s.b;
    }
    __syncthreads();
    s = {0, 0};
    for (int w = 0; w < kThreads / kWarp; ++w) {
      s.a += shared[2 * w];
      s.b += shared[2 * w + 1];
    }
  }
  return s;
}

// The packs of kArrays rows (the same length) that thread t of a group of kThreads handles: pack
// q = t + k * kThreads for k = 0, 1, ... while q < packs; the first kHeld of each array in
// registers (load() fills them), the others read from memory when visited.
template <class T, int V, int kThreads, int kHeld, int kArrays>
struct RowSlice {
  using value_type = T;
  using P = Pack<T, V>;
  const T* rows[kArrays];
  std::int64_t packs;
  int t;
  P held[kArrays][kHeld];

  __device__ void load() {
#pragma unroll
    for (int k = 0; k < kHeld; ++k) {
      const std::int64_t q = t + std::int64_t(k) * kThreads;
#pragma unroll
      for (int a = 0; a < kArrays; ++a)
        if (q < packs) held[a][k] = load_pack<T, V>(rows[a] + q * V);
    }
  }

  // f(p, q) for each of the thread's packs, p[a] the pack of array a: the held ones, then the
  // others; flush() after the held ones and after each later pack (the caller moves its T partial
  // sums into float64 there, so no T sum runs over more than kHeld * V values).
  template <class F, class Flush>
  __device__ void each(F&& f, Flush&& flush) const {
#pragma unroll
    for (int k = 0; k < kHeld; ++k) {
      const std::int64_t q = t + std::int64_t(k) * kThreads;
      if (q < packs) {
        P p[kArrays];
#pragma unroll
        for (int a = 0; a < kArrays; ++a) p[a] = held[a][k];
        f(p, q);
      }
    }
    flush();
    for (std::int64_t q = t + std::int64_t(kHeld) * kThreads; q < packs; q += kThreads) {
      P p[kArrays];
#pragma unroll
      for (int a = 0; a < kArrays; ++a) p[a] = load_pack<T, V>(rows[a] + q * V);
      f(p, q);
      flush();
    }
  }
};

// Row statistics: the mean and 1 / sqrt(biased variance + eps) of the `len` elements of array 0
// of `slice` (NaN for len == 0), identical in every thread of the group.
template <int kThreads, class Slice, class T = typename Slice::value_type>
__device__ __forceinline__ void row_moments(const Slice& slice, std::int64_t len, double inv_len, double eps,
                                            double* shared, double* mean, double* rstd) {
  T shift = len > 0 ? slice.rows[0][0] : T(0);
  if (!(shift - shift == T(0))) shift = 0;  // an infinite or NaN first element: no shift
  T part = 0;
  double total = 0;
  const auto flush = [&] {
    total += static_cast<double>(part);
    part = 0;
  };
  slice.each(
      [&](const auto* p, std::int64_t) {
#pragma unroll
        for (T v : p[0].v) part += v - shift;
      },
      flush);
  *mean = static_cast<double>(shift) + group_sum<kThreads>({total, 0}, shared).a * inv_len;
  const SplitMean<T> m(*mean);
  total = 0;
  slice.each(
      [&](const auto* p, std::int64_t) {
#pragma unroll
        for (T v : p[0].v) {
          const T c = m.centre(v);
          part += c * c;
        }
      },
      flush);
  *rstd = 1 / sqrt(group_sum<kThreads>({total, 0}, shared).a * inv_len + eps);
}

// A row group's thread rank and row index for the layer-norm kernels: a warp per row, or the
// block.
template <int kThreads>
struct RowGroups {
  static constexpr int kRowsPerBlock = kThreads == kWarp ? kWarpRowsPerBlock : 1;
  static constexpr int kBlock = kThreads * kRowsPerBlock;
  // Warp rows: at least 4 blocks of 4 warps per SM (at most 128 registers); block rows: 1, so
  // ptxas never trades registers for spills.
  static constexpr int kMinBlocks = kThreads == kWarp ? 4 : 1;
  __device__ static int rank() { return static_cast<int>(threadIdx.x) % kThreads; }
  __device__ static std::int64_t first_row() {
    return std::int64_t(blockIdx.x) * kRowsPerBlock + static_cast<int>(threadIdx.x) / kThreads;
  }
  __device__ static std::int64_t row_step() { return std::int64_t(gridDim.x) * kRowsPerBlock; }
};

// The packs of each array a thread of a kThreads group holds in registers.
template <class T, int V, int kThreads>
constexpr int kHeldPacks =
    (kThreads == kWarp ? kWarpHeldBytes : kBlockHeldBytes) / (V == 1 ? 2 : 1) / static_cast<int>(sizeof(T) * V);

template <class T, int V, int kThreads>
__global__ void __launch_bounds__(RowGroups<kThreads>::kBlock, RowGroups<kThreads>::kMinBlocks)
    layer_norm_forward_kernel(LayerNormShape s, double inv_len, const T* __restrict__ x, const T* __restrict__ weight,
                              const T* __restrict__ bias, T* __restrict__ out, double* __restrict__ save_mean,
                              double* __restrict__ save_rstd, double eps) {
  using G = RowGroups<kThreads>;
  __shared__ double shared[2 * kBlockWarps];
  RowSlice<T, V, kThreads, kHeldPacks<T, V, kThreads>, 1> slice{{nullptr}, s.len / V, G::rank()};
  for (std::int64_t row = G::first_row(); row < s.rows; row += G::row_step()) {
    slice.rows[0] = x + row * s.len;
    slice.load();
    double mean, rstd;
    row_moments<kThreads>(slice, s.len, inv_len, eps, shared, &mean, &rstd);
    if (slice.t == 0) {
      save_mean[row] = mean;
      save_rstd[row] = rstd;
    }
    const SplitMean<T> m(mean);
    const T r = static_cast<T>(rstd);
    T* y = out + row * s.len;
    slice.each(
        [&](const Pack<T, V>* p, std::int64_t q) {
          Pack<T, V> o;
#pragma unroll
          for (int e = 0; e < V; ++e) o.v[e] = m.centre(p[0].v[e]) * r;
          if (weight) {
            const Pack<T, V> w = load_pack<T, V>(weight + q * V);
#pragma unroll
            for (int e = 0; e < V; ++e) o.v[e] *= w.v[e];
          }
          if (bias) {
            const Pack<T, V> b = load_pack<T, V>(bias + q * V);
#pragma unroll
            for (int e = 0; e < V; ++e) o.v[e] += b.v[e];
          }
          store_pack<T, V>(y + q * V, o);
        },
        [] {});
  }
}

// grad_x = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) per row, gw = grad_out * weight.
template <class T, int V, int kThreads>
__global__ void __launch_bounds__(RowGroups<kThreads>::kBlock, RowGroups<kThreads>::kMinBlocks)
    layer_norm_grad_input_kernel(LayerNormShape s, double inv_len, const T* __restrict__ grad_out,
                                 const T* __restrict__ x, const T* __restrict__ weight,
                                 const double* __restrict__ save_mean, const double* __restrict__ save_rstd,
                                 T* __restrict__ grad_x) {
  using G = RowGroups<kThreads>;
  using P = Pack<T, V>;
  __shared__ double shared[2 * kBlockWarps];
  RowSlice<T, V, kThreads, kHeldPacks<T, V, kThreads>, 2> slice{{nullptr, nullptr}, s.len / V, G::rank()};
  for (std::int64_t row = G::first_row(); row < s.rows; row += G::row_step()) {
    slice.rows[0] = grad_out + row * s.len;
    slice.rows[1] = x + row * s.len;
    slice.load();
    const SplitMean<T> m(save_mean[row]);
    const T r = static_cast<T>(save_rstd[row]);
    // gw and xhat of pack q from its grad_out and x packs.
    const auto terms = [&](const P* p, std::int64_t q, P& gw, P& xhat) {
      const P w = weight ? load_pack<T, V>(weight + q * V) : P{};
#pragma unroll
      for (int e = 0; e < V; ++e) {
        gw.v[e] = weight ? p[0].v[e] * w.v[e] : p[0].v[e];
        xhat.v[e] = m.centre(p[1].v[e]) * r;
      }
    };
    T part_a = 0, part_b = 0;
    Sums total{0, 0};
    slice.each(
        [&](const P* p, std::int64_t q) {
          P gw, xhat;
          terms(p, q, gw, xhat);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            part_a += gw.v[e];
            part_b += gw.v[e] * xhat.v[e];
          }
        },
        [&] {
          total.a += static_cast<double>(part_a);
          total.b += static_cast<double>(part_b);
          part_a = part_b = 0;
        });
    const Sums sums = group_sum<kThreads>(total, shared);
    const T a = static_cast<T>(sums.a * inv_len), b = static_cast<T>(sums.b * inv_len);
    T* gx = grad_x + row * s.len;
    slice.each(
        [&](const P* p, std::int64_t q) {
          P gw, xhat, o;
          terms(p, q, gw, xhat);
#pragma unroll
          for (int e = 0; e < V; ++e) o.v[e] = (gw.v[e] - a - xhat.v[e] * b) * r;
          store_pack<T, V>(gx + q * V, o);
        },
        [] {});
  }
}

// Rows per part of the weight and bias gradients' column sums, and the number of parts.
struct Parts {
  std::int64_t rows_per_part, count;
};
Parts parts_for(std::int64_t rows) {
  const std::int64_t wanted = std::clamp<std::int64_t>((rows + kMinPartRows - 1) / kMinPartRows, 1, kMaxParts);
  const std::int64_t per = (rows + wanted - 1) / wanted;
  return {per, per > 0 ? (rows + per - 1) / per : 0};
}

// Part blockIdx.y of the columns' sums over rows [part * rows_per_part, +rows_per_part): of
// grad_out * xhat into part_w and of grad_out into part_b (each (parts, len), float64; either
// may be null).
template <class T>
__global__ void __launch_bounds__(kBlockThreads, 1)
    layer_norm_param_parts_kernel(LayerNormShape s, std::int64_t rows_per_part, const T* __restrict__ grad_out,
                                  const T* __restrict__ x, const double* __restrict__ save_mean,
                                  const double* __restrict__ save_rstd, double* __restrict__ part_w,
                                  double* __restrict__ part_b) {
  const std::int64_t j = std::int64_t(blockIdx.x) * kBlockThreads + threadIdx.x, part = blockIdx.y;
  if (j >= s.len) return;
  const std::int64_t end = s.rows < (part + 1) * rows_per_part ? s.rows : (part + 1) * rows_per_part;
  double sw = 0, sb = 0;
  for (std::int64_t r = part * rows_per_part; r < end; ++r) {
    const double g = static_cast<double>(grad_out[r * s.len + j]);
    sb += g;
    sw += g * ((static_cast<double>(x[r * s.len + j]) - save_mean[r]) * save_rstd[r]);
  }
  if (part_w) part_w[part * s.len + j] = sw;
  if (part_b) part_b[part * s.len + j] = sb;
}

// grad_weight[j] and grad_bias[j] (either may be null): the sums over p in order of the float64
// parts part_w[p * width + j] and part_b[p * width + j], rounded to T once.
template <class T>
__global__ void __launch_bounds__(kBlockThreads, 1)
    sum_parts_kernel(std::int64_t width, std::int64_t parts, const double* __restrict__ part_w,
                     const double* __restrict__ part_b, T* __restrict__ grad_weight, T* __restrict__ grad_bias) {
  for (std::int64_t j = std::int64_t(blockIdx.x) * kBlockThreads + threadIdx.x; j < width;
       j += std::int64_t(gridDim.x) * kBlockThreads) {
    double w = 0, b = 0;
    for (std::int64_t p = 0; p < parts; ++p) {
      if (grad_weight) w += part_w[p * width + j];
      if (grad_bias) b += part_b[p * width + j];
    }
    if (grad_weight) grad_weight[j] = static_cast<T>(w);
    if (grad_bias) grad_bias[j] = static_cast<T>(b);
  }
}

// The flat index j of a thread's elements of a group (j = t, t + kBlockThreads, ...) and its
// channel within the group (j / spatial), advanced without a division per step (and with 32-bit
// divisions at the start: t and kBlockThreads are below 2**31, so a larger spatial size acts as
// kBlockThreads + 1).
struct ChannelCursor {
  std::int64_t j, channel, position, spatial;
  int step_channels, step_positions;
  __device__ ChannelCursor(int t, std::int64_t spatial_size) : j(t), spatial(spatial_size) {
    const int d = spatial_size > kBlockThreads ? kBlockThreads + 1 : static_cast<int>(spatial_size);
    channel = t / d;
    position = t % d;
    step_channels = kBlockThreads / d;
    step_positions = kBlockThreads % d;
  }
  __device__ void next() {
    j += kBlockThreads;
    channel += step_channels;
    position += step_positions;
    if (position >= spatial) {
      position -= spatial;
      ++channel;
    }
  }
};

// A group's channels and elements, and 1 / len (computed on the host: no division in the kernels).
struct GroupDims {
  std::int64_t per_group, len;
  double inv_len;
};
GroupDims group_dims(const GroupNormShape& s) {
  const std::int64_t per_group = s.c / s.groups;
  return {per_group, per_group * s.s, 1.0 / static_cast<double>(per_group * s.s)};
}

// The (sample, group) units of the group-norm kernels: blockIdx.y strides the samples, blockIdx.x
// the groups (no division by the group count).
template <class Body>
__device__ __forceinline__ void for_units(const GroupNormShape& s, Body&& body) {
  for (std::int64_t n = blockIdx.y; n < s.n; n += gridDim.y)
    for (std::int64_t g = blockIdx.x; g < s.groups; g += gridDim.x) body(n, g, n * s.groups + g);
}

template <class T>
__global__ void __launch_bounds__(kBlockThreads, 1)
    group_norm_forward_kernel(GroupNormShape s, GroupDims d, const T* __restrict__ x, const T* __restrict__ weight,
                              const T* __restrict__ bias, T* __restrict__ out, double* __restrict__ save_mean,
                              double* __restrict__ save_rstd, double eps) {
  __shared__ double shared[2 * kBlockWarps];
  const std::int64_t per_group = d.per_group, len = d.len;
  RowSlice<T, 1, kBlockThreads, kHeldPacks<T, 1, kBlockThreads>, 1> slice{
      {nullptr}, len, static_cast<int>(threadIdx.x)};
  for_units(s, [&](std::int64_t, std::int64_t group, std::int64_t u) {
    slice.rows[0] = x + u * len;
    slice.load();
    double mean, rstd;
    row_moments<kBlockThreads>(slice, len, d.inv_len, eps, shared, &mean, &rstd);
    if (slice.t == 0) {
      save_mean[u] = mean;
      save_rstd[u] = rstd;
    }
    const SplitMean<T> m(mean);
    const T r = static_cast<T>(rstd);
    const std::int64_t c0 = group * per_group;
    for (ChannelCursor at(slice.t, s.s > 0 ? s.s : 1); at.j < len; at.next()) {
      const std::int64_t ch = c0 + at.channel;
      T v = m.centre(slice.rows[0][at.j]) * r;
      if (weight) v *= weight[ch];
      if (bias) v += bias[ch];
      out[u * len + at.j] = v;
    }
  });
}

// Per (sample, group): each channel's sums of grad_out and grad_out * (x - mean) by a warp (into
// part_w / part_b at [sample, channel] when given), the group's sums of weight times those for
// grad_x (when given).
template <class T>
__global__ void __launch_bounds__(kBlockThreads, 1)
    group_norm_backward_kernel(GroupNormShape s, GroupDims d, const T* __restrict__ grad_out, const T* __restrict__ x,
                               const T* __restrict__ weight, const double* __restrict__ save_mean,
                               const double* __restrict__ save_rstd, T* __restrict__ grad_x,
                               double* __restrict__ part_w, double* __restrict__ part_b) {
  __shared__ double shared[2 * kBlockWarps];
  const std::int64_t per_group = d.per_group, len = d.len;
  const int t = static_cast<int>(threadIdx.x), lane = t % kWarp, warp = t / kWarp;
  for_units(s, [&](std::int64_t n, std::int64_t group, std::int64_t u) {
    const double mean = save_mean[u], rstd = save_rstd[u];
    const std::int64_t c0 = group * per_group;
    const T* g = grad_out + u * len;
    const T* xu = x + u * len;
    Sums totals{0, 0};  // lane 0 of each warp: its channels' weight * sum g, weight * sum g * xhat
    for (std::int64_t j = warp; j < per_group; j += kBlockWarps) {
      Sums ch{0, 0};
      for (std::int64_t i = lane; i < s.s; i += kWarp) {
        const double gv = static_cast<double>(g[j * s.s + i]);
        ch.a += gv;
        ch.b += gv * (static_cast<double>(xu[j * s.s + i]) - mean);
      }
      ch = group_sum<kWarp>(ch, nullptr);
      if (lane == 0) {
        if (part_w) part_w[n * s.c + c0 + j] = ch.b * rstd;
        if (part_b) part_b[n * s.c + c0 + j] = ch.a;
        const double w = weight ? static_cast<double>(weight[c0 + j]) : 1.0;
        totals.a += w * ch.a;
        totals.b += w * ch.b * rstd;
      }
    }
    if (!grad_x) return;
    const Sums sums = group_sum<kBlockThreads>(totals, shared);
    const SplitMean<T> m(mean);
    const T a = static_cast<T>(sums.a * d.inv_len), b = static_cast<T>(sums.b * d.inv_len * rstd),
            r = static_cast<T>(rstd);
    for (ChannelCursor at(t, s.s > 0 ? s.s : 1); at.j < len; at.next()) {
      const T gv = g[at.j];
      const T gw = weight ? gv * weight[c0 + at.channel] : gv;
      grad_x[u * len + at.j] = (gw - a - m.centre(xu[at.j]) * b) * r;
    }
  });
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Calls run(std::integral_constant<int, V>{}, std::integral_constant<int, kThreads>{}) with the
// row kernel for rows of `len`: float4 packs when `vectorizable` (T float, len % 4 == 0, every
// pointer 16-byte aligned), a warp per row up to kWarpRowLimit elements, else a block.
template <class T, class Run>
void with_row_kernel(std::int64_t len, bool vectorizable, Run&& run) {
  using One = std::integral_constant<int, 1>;
  using Warp = std::integral_constant<int, kWarp>;
  using Block = std::integral_constant<int, kBlockThreads>;
  if constexpr (std::is_same_v<T, float>) {
    if (vectorizable && len % 4 == 0) {
      using Four = std::integral_constant<int, 4>;
      return len <= kWarpRowLimit ? run(Four{}, Warp{}) : run(Four{}, Block{});
    }
  }
  return len <= kWarpRowLimit ? run(One{}, Warp{}) : run(One{}, Block{});
}

template <int kThreads>
dim3 row_grid(std::int64_t rows) {
  constexpr int per = RowGroups<kThreads>::kRowsPerBlock;
  return dim3(static_cast<unsigned>(std::min<std::int64_t>((rows + per - 1) / per, kMaxBlocks)));
}

unsigned blocks_of(std::int64_t work, std::int64_t per_block) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((work + per_block - 1) / per_block, 1, kMaxBlocks));
}

// The group-norm kernels' grid: the groups along x, the samples along y (at most 65535).
dim3 unit_grid(const GroupNormShape& s) {
  return dim3(blocks_of(s.groups, 1), static_cast<unsigned>(std::clamp<std::int64_t>(s.n, 1, 65535)));
}

}  // namespace

template <class T>
void launch_layer_norm_forward(const LayerNormShape& s, const T* x, const T* weight, const T* bias, T* out,
                               double* save_mean, double* save_rstd, double eps, cudaStream_t stream) {
  if (s.rows <= 0) return;
  const bool vectorizable = aligned16(x) && aligned16(out) && aligned16(weight) && aligned16(bias);
  with_row_kernel<T>(s.len, vectorizable, [&](auto v, auto threads) {
    constexpr int V = decltype(v)::value, kThreads = decltype(threads)::value;
    launch("layer_norm_forward_kernel", layer_norm_forward_kernel<T, V, kThreads>, row_grid<kThreads>(s.rows),
           dim3(RowGroups<kThreads>::kBlock), 0, stream, s, 1.0 / static_cast<double>(s.len), x, weight, bias, out,
           save_mean, save_rstd, eps);
  });
}

std::int64_t layer_norm_backward_workspace_bytes(const LayerNormShape& s) {
  return 2 * parts_for(s.rows).count * s.len * static_cast<std::int64_t>(sizeof(double));
}

template <class T>
void launch_layer_norm_backward(const LayerNormShape& s, const T* grad_out, const T* x, const T* weight,
                                const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight,
                                T* grad_bias, void* workspace, cudaStream_t stream) {
  if (s.len <= 0) return;
  if (grad_x && s.rows > 0) {
    const bool vectorizable = aligned16(grad_out) && aligned16(x) && aligned16(weight) && aligned16(grad_x);
    with_row_kernel<T>(s.len, vectorizable, [&](auto v, auto threads) {
      constexpr int V = decltype(v)::value, kThreads = decltype(threads)::value;
      launch("layer_norm_grad_input_kernel", layer_norm_grad_input_kernel<T, V, kThreads>, row_grid<kThreads>(s.rows),
             dim3(RowGroups<kThreads>::kBlock), 0, stream, s, 1.0 / static_cast<double>(s.len), grad_out, x, weight,
             save_mean, save_rstd, grad_x);
    });
  }
  if (!grad_weight && !grad_bias) return;
  const Parts parts = parts_for(s.rows);
  double* part_w = grad_weight ? static_cast<double*>(workspace) : nullptr;
  double* part_b = grad_bias ? static_cast<double*>(workspace) + parts.count * s.len : nullptr;
  if (parts.count > 0)
    launch("layer_norm_param_parts_kernel", layer_norm_param_parts_kernel<T>,
           dim3(static_cast<unsigned>((s.len + kBlockThreads - 1) / kBlockThreads), static_cast<unsigned>(parts.count)),
           dim3(kBlockThreads), 0, stream, s, parts.rows_per_part, grad_out, x, save_mean, save_rstd, part_w, part_b);
  launch("sum_parts_kernel", sum_parts_kernel<T>, dim3(blocks_of(s.len, kBlockThreads)), dim3(kBlockThreads), 0, stream,
         s.len, parts.count, part_w, part_b, grad_weight, grad_bias);
}

template <class T>
void launch_group_norm_forward(const GroupNormShape& s, const T* x, const T* weight, const T* bias, T* out,
                               double* save_mean, double* save_rstd, double eps, cudaStream_t stream) {
  const std::int64_t units = s.n * s.groups;
  if (units <= 0) return;
  launch("group_norm_forward_kernel", group_norm_forward_kernel<T>, unit_grid(s), dim3(kBlockThreads), 0, stream, s,
         group_dims(s), x, weight, bias, out, save_mean, save_rstd, eps);
}

std::int64_t group_norm_backward_workspace_bytes(const GroupNormShape& s) {
  return 2 * s.n * s.c * static_cast<std::int64_t>(sizeof(double));
}

template <class T>
void launch_group_norm_backward(const GroupNormShape& s, const T* grad_out, const T* x, const T* weight,
                                const double* save_mean, const double* save_rstd, T* grad_x, T* grad_weight,
                                T* grad_bias, void* workspace, cudaStream_t stream) {
  if (s.c <= 0 || (!grad_x && !grad_weight && !grad_bias)) return;
  double* part_w = grad_weight ? static_cast<double*>(workspace) : nullptr;
  double* part_b = grad_bias ? static_cast<double*>(workspace) + s.n * s.c : nullptr;
  const std::int64_t units = s.n * s.groups;
  if (units > 0)
    launch("group_norm_backward_kernel", group_norm_backward_kernel<T>, unit_grid(s), dim3(kBlockThreads), 0, stream, s,
           group_dims(s), grad_out, x, weight, save_mean, save_rstd, grad_x, part_w, part_b);
  if (grad_weight || grad_bias)
    launch("sum_parts_kernel", sum_parts_kernel<T>, dim3(blocks_of(s.c, kBlockThreads)), dim3(kBlockThreads), 0, stream,
           s.c, s.n, part_w, part_b, grad_weight, grad_bias);
}

#define DEEPKERN_CUDA_LAYER_NORM_INSTANTIATE(T)                                                                   \
  template void launch_layer_norm_forward<T>(const LayerNormShape&, const T*, const T*, const T*, T*, double*,    \
                                             double*, double, cudaStream_t);                                      \
  template void launch_layer_norm_backward<T>(const LayerNormShape&, const T*, const T*, const T*, const double*, \
                                              const double*, T*, T*, T*, void*, cudaStream_t);                    \
  template void launch_group_norm_forward<T>(const GroupNormShape&, const T*, const T*, const T*, T*, double*,    \
                                             double*, double, cudaStream_t);                                      \
  template void launch_group_norm_backward<T>(const GroupNormShape&, const T*, const T*, const T*, const double*, \
                                              const double*, T*, T*, T*, void*, cudaStream_t);
DEEPKERN_CUDA_LAYER_NORM_INSTANTIATE(float)
DEEPKERN_CUDA_LAYER_NORM_INSTANTIATE(double)
#undef DEEPKERN_CUDA_LAYER_NORM_INSTANTIATE

}  // namespace deepkern::cuda
