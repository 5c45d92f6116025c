// The depthwise per-plane kernels of depthwise_kernels.h, compiled once per ISA (a per-ISA source).
//
// Each output row is accumulated in place (it stays in L1) from the R x S input rows it reads:
// each tap is one multiply-add pass over the row's valid columns, vectorized for this ISA at stride
// 1. With a bordered scratch (stride 1, no dilation) the plane is first copied with a zero border,
// so each pass covers the whole row without per-tap column bounds.
// The 3x3 forward prefetches the thread's next plane while it computes this one.
#include <algorithm>

#include "cpu/conv/depthwise_kernels.h"
#include "cpu/conv/taps.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// Calls tap(out_row p, kernel row r, kernel col t, input row ih, w_offset, q_lo, q_hi) for every
// tap of every output row that reads inside the image. Inlined, with the taps, into the per-plane
// kernels below, so the taps' loops are vectorized for this ISA.
template <class Tap>
[[gnu::always_inline]] inline void for_each_tap(const Conv2dShape& s, Tap tap) {
  for (int64_t p = 0; p < s.out_h; ++p)
    for (int64_t r = 0; r < s.kernel_h; ++r) {
      const int64_t ih = p * s.stride_h - s.pad_h + r * s.dilation_h;
      if (ih < 0 || ih >= s.in_h) continue;
      for (int64_t t = 0; t < s.kernel_w; ++t) {
        const int64_t w_offset = t * s.dilation_w - s.pad_w;
        int64_t q_lo, q_hi;
        valid_columns(s, w_offset, q_lo, q_hi);
        tap(p, r, t, ih, w_offset, q_lo, q_hi);
      }
    }
}

// dst (rows x cols) = src (src_rows x src_cols) shifted down by `top` and right by `left`, zero
// outside it.
template <class T>
[[gnu::always_inline]] inline void bordered_copy(const T* src, int64_t src_rows, int64_t src_cols, int64_t top,
                                                 int64_t left, int64_t rows, int64_t cols, T* dst) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t from = i - top;
    const bool inside = from >= 0 && from < src_rows;
    const T* in = src + from * src_cols - left;
    T* __restrict row = dst + i * cols;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) row[j] = inside && j >= left && j - left < src_cols ? in[j] : T(0);
  }
}

// Hints the cache to fetch [lines * first, lines * (first + 1)) of the count elements at p (null:
// nothing), 64-byte lines; kWrite for lines about to be written.
template <bool kWrite, class T>
[[gnu::always_inline]] inline void prefetch_share(const T* p, int64_t count, int64_t first, int64_t parts) {
  if (!p) return;
  const int64_t lines = (count * int64_t(sizeof(T)) + 63) / 64, share = (lines + parts - 1) / parts;
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t i = first * share; i < std::min(lines, (first + 1) * share); ++i)
    __builtin_prefetch(bytes + 64 * i, kWrite ? 1 : 0);
}

// accumulate_taps for a kernel size known at compile time: each vector of an output row takes all
// R x S taps in registers before it is stored once (the general loop below loads and stores the row
// once per tap). Same sums in the same order. With kInit the row starts from `init` instead of its
// contents (the forward's bias: no separate fill pass). Output row p prefetches its share of `next`
// (next_count elements to read) and `next_out` (to write), the next plane's operands, so that their
// memory traffic overlaps this plane's arithmetic (a plane otherwise waits for memory, then computes).
template <bool kFlip, bool kInit, int R, int S, class T>
[[gnu::always_inline]] inline void accumulate_fixed_taps(int64_t out_h, int64_t out_w, const T* w, const T* bordered,
                                                         T* out, T init, const T* next, int64_t next_count,
                                                         const T* next_out) {
  const int64_t pw = out_w + S - 1;
  T taps[R * S];
  for (int i = 0; i < R * S; ++i) taps[i] = kFlip ? w[R * S - 1 - i] : w[i];
  for (int64_t p = 0; p < out_h; ++p) {
    prefetch_share<false>(next, next_count, p, out_h);
    prefetch_share<true>(next_out, out_h * out_w, p, out_h);
    const T* __restrict in = bordered + p * pw;
    T* __restrict row = out + p * out_w;
#pragma omp simd
    for (int64_t q = 0; q < out_w; ++q) {
      T acc = kInit ? init : row[q];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < S; ++t) acc += taps[r * S + t] * in[r * pw + t + q];
      row[q] = acc;
    }
  }
}

// out (out_h x out_w) += sum over taps (r, t) of w[r][t] (w[R-1-r][S-1-t] when kFlip) times the
// bordered plane shifted by (r, t); bordered rows are out_w + S - 1 wide.
template <bool kFlip, class T>
[[gnu::always_inline]] inline void accumulate_taps(int64_t out_h, int64_t out_w, int64_t R, int64_t S, const T* w,
                                                   const T* bordered, T* out) {
  if (R == 3 && S == 3)
    return accumulate_fixed_taps<kFlip, false, 3, 3, T>(out_h, out_w, w, bordered, out, T(0), nullptr, 0, nullptr);
  const int64_t pw = out_w + S - 1;
  for (int64_t p = 0; p < out_h; ++p)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t t = 0; t < S; ++t) {
        const T weight = kFlip ? w[(R - 1 - r) * S + (S - 1 - t)] : w[r * S + t];
        const T* __restrict in = bordered + (p + r) * pw + t;
        T* __restrict row = out + p * out_w;
#pragma omp simd
        for (int64_t q = 0; q < out_w; ++q) row[q] += weight * in[q];
      }
}

template <class T>
void forward_plane(const Conv2dShape& s, const T* x_plane, const T* w_k, T bias, T* y_plane, T* bordered,
                   const T* next_x_plane, const T* next_y_plane) {
  if (bordered) {
    const int64_t R = s.kernel_h, S = s.kernel_w;
    bordered_copy(x_plane, s.in_h, s.in_w, s.pad_h, s.pad_w, s.out_h + R - 1, s.out_w + S - 1, bordered);
    if (R == 3 && S == 3)
      return accumulate_fixed_taps<false, true, 3, 3>(s.out_h, s.out_w, w_k, bordered, y_plane, bias, next_x_plane,
                                                      s.in_h * s.in_w, next_y_plane);
    std::fill(y_plane, y_plane + s.out_h * s.out_w, bias);
    return accumulate_taps<false>(s.out_h, s.out_w, R, S, w_k, bordered, y_plane);
  }
  std::fill(y_plane, y_plane + s.out_h * s.out_w, bias);
  const int64_t sw = s.stride_w;
  for_each_tap(s, [&](int64_t p, int64_t r, int64_t t, int64_t ih, int64_t w_offset, int64_t q_lo, int64_t q_hi)
                      __attribute__((always_inline)) {
                        const T weight = w_k[r * s.kernel_w + t];
                        const T* __restrict in = x_plane + ih * s.in_w + w_offset;
                        T* __restrict out = y_plane + p * s.out_w;
                        if (sw == 1) {
#pragma omp simd
                          for (int64_t q = q_lo; q < q_hi; ++q) out[q] += weight * in[q];
                        } else {
                          for (int64_t q = q_lo; q < q_hi; ++q) out[q] += weight * in[q * sw];
                        }
                      });
}

template <class T>
void backward_data_plane(const Conv2dShape& s, const T* dy_plane, const T* w_k, T* dx_plane, T* bordered) {
  if (bordered) {  // dx(i, j) = sum w(r, t) dy(i + pad - r, j + pad - t): the flipped kernel
    const int64_t R = s.kernel_h, S = s.kernel_w;
    bordered_copy(dy_plane, s.out_h, s.out_w, R - 1 - s.pad_h, S - 1 - s.pad_w, s.in_h + R - 1, s.in_w + S - 1,
                  bordered);
    return accumulate_taps<true>(s.in_h, s.in_w, R, S, w_k, bordered, dx_plane);
  }
  const int64_t sw = s.stride_w;
  for_each_tap(s, [&](int64_t p, int64_t r, int64_t t, int64_t ih, int64_t w_offset, int64_t q_lo, int64_t q_hi)
                      __attribute__((always_inline)) {
                        const T weight = w_k[r * s.kernel_w + t];
                        const T* __restrict dy = dy_plane + p * s.out_w;
                        T* __restrict dx = dx_plane + ih * s.in_w + w_offset;
                        if (sw == 1) {
#pragma omp simd
                          for (int64_t q = q_lo; q < q_hi; ++q) dx[q] += weight * dy[q];
                        } else {
                          for (int64_t q = q_lo; q < q_hi; ++q) dx[q * sw] += weight * dy[q];
                        }
                      });
}

// The 3x3 weight gradient over flat planes: x bordered (rows pw = out_w + 2 wide, two spare zeros
// at the end) and dy copied into rows as wide with zero columns after its out_w, so that tap (r, t)
// is one dot product of flat dy with flat x shifted by r * pw + t: nine sums in one vectorized pass,
// reduced once per plane. The zero columns meet x values of other columns (0 * x): x must be finite.
template <class T>
void weight_sums_3x3(int64_t out_h, int64_t out_w, const T* __restrict dy, const T* __restrict xb, T* dw_k) {
  const int64_t pw = out_w + 2, n = out_h * pw;
  T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, s8 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7, s8)
  for (int64_t i = 0; i < n; ++i) {
    const T d = dy[i];
    s0 += d * xb[i], s1 += d * xb[i + 1], s2 += d * xb[i + 2];
    s3 += d * xb[i + pw], s4 += d * xb[i + pw + 1], s5 += d * xb[i + pw + 2];
    s6 += d * xb[i + 2 * pw], s7 += d * xb[i + 2 * pw + 1], s8 += d * xb[i + 2 * pw + 2];
  }
  const T sums[9] = {s0, s1, s2, s3, s4, s5, s6, s7, s8};
  for (int tap = 0; tap < 9; ++tap) dw_k[tap] += sums[tap];
}

// 3x3 with a bordered buffer: weight_sums_3x3. Otherwise, per tap, a row of sums across the output
// rows (element by element: no reduction inside the vectorized loop), added up once per plane;
// chunks of kChunk output columns and kTaps taps keep those rows in L1. (A dot product per tap and
// output row, reduced row by row, ran at 6 GFLOP/s on 56-column rows; one long reduction per tap over
// a bordered plane was slower still.)
template <class T>
void backward_weight_plane(const Conv2dShape& s, const T* dy_plane, const T* x_plane, T* dw_k, T* bordered) {
  if (bordered && s.kernel_h == 3 && s.kernel_w == 3) {
    const int64_t pw = s.out_w + 2, x_size = (s.out_h + 2) * pw;
    bordered_copy(x_plane, s.in_h, s.in_w, s.pad_h, s.pad_w, s.out_h + 2, pw, bordered);
    bordered[x_size] = bordered[x_size + 1] = T(0);
    T* dy = bordered + x_size + 2;
    bordered_copy(dy_plane, s.out_h, s.out_w, 0, 0, s.out_h, pw, dy);
    return weight_sums_3x3(s.out_h, s.out_w, dy, bordered, dw_k);
  }
  constexpr int64_t kChunk = 64, kTaps = 16;
  const int64_t sw = s.stride_w, taps = s.kernel_h * s.kernel_w;
  alignas(64) T sums[kTaps][kChunk];
  for (int64_t tap0 = 0; tap0 < taps; tap0 += kTaps)
    for (int64_t q0 = 0; q0 < s.out_w; q0 += kChunk) {
      const int64_t q1 = std::min(s.out_w, q0 + kChunk);
      for (auto& row : sums) std::fill(row, row + kChunk, T(0));
      for_each_tap(s, [&](int64_t p, int64_t r, int64_t t, int64_t ih, int64_t w_offset, int64_t q_lo, int64_t q_hi)
                          __attribute__((always_inline)) {
                            const int64_t tap = r * s.kernel_w + t - tap0;
                            if (tap < 0 || tap >= kTaps) return;
                            const T* dy = dy_plane + p * s.out_w;
                            const T* in = x_plane + ih * s.in_w + w_offset;
                            T* __restrict sum = sums[tap] - q0;  // sum[q] for q in [q0, q1)
                            const int64_t lo = std::max(q_lo, q0), hi = std::min(q_hi, q1);
                            if (sw == 1) {
#pragma omp simd
                              for (int64_t q = lo; q < hi; ++q) sum[q] += dy[q] * in[q];
                            } else {
                              for (int64_t q = lo; q < hi; ++q) sum[q] += dy[q] * in[q * sw];
                            }
                          });
      for (int64_t tap = 0; tap < std::min(kTaps, taps - tap0); ++tap) {
        T total = 0;
        for (int64_t q = 0; q < q1 - q0; ++q) total += sums[tap][q];
        dw_k[tap0 + tap] += total;
      }
    }
}

template <class T>
constexpr DepthwiseKernels<T> kernels_of = {
    .forward_plane = &forward_plane<T>,
    .backward_data_plane = &backward_data_plane<T>,
    .backward_weight_plane = &backward_weight_plane<T>,
};

}  // namespace

const KernelsByType<DepthwiseKernels> depthwise_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
