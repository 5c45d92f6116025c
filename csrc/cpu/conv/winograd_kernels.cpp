// The Winograd transforms of winograd_kernels.h, compiled once per ISA (a per-ISA source): each
// runs along a row of tiles, or a range of weight pairs, so the compiler vectorizes it across them
// for this ISA. Only computes: buffers come from the callers in winograd.cpp.
#include <algorithm>

#include "core/scratch.h"
#include "cpu/conv/winograd_kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// A probe term: 0 for finite values, NaN when one of them is Inf or NaN (or their sum overflows).
// Summed over a transform's inputs, it is 0 exactly when they were all finite.
template <class T, class... V>
inline T non_finite_probe(V... values) {
  return (values + ...) * T(0);
}

// The matrices of F(m x m, 3x3) (Lavin & Gray), m = 2 or 4: alpha = m + 2 input points per tile
// side, interpolation points 0, +-1 (and +-2 for m = 4) and infinity.
template <int M>
struct Variant;
template <>
struct Variant<2> {
  static constexpr int kAlpha = 4;
  static constexpr double kBt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double kG[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
  static constexpr double kAt[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
template <>
struct Variant<4> {
  static constexpr int kAlpha = 6;
  static constexpr double kBt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                       {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double kG[6][3] = {{1. / 4, 0, 0},
                                      {-1. / 6, -1. / 6, -1. / 6},
                                      {-1. / 6, 1. / 6, -1. / 6},
                                      {1. / 24, 1. / 12, 1. / 6},
                                      {1. / 24, -1. / 12, 1. / 6},
                                      {0, 0, 1}};
  static constexpr double kAt[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// out = Mat @ in for a constant R x N matrix Mat. The loops unroll completely, so that the
// compiler drops Mat's zero terms, keeps the small arrays in (vector) registers and vectorizes the
// caller's loop across tiles.
template <const auto& Mat, class T, int R, int N>
[[gnu::always_inline]] inline void apply(const T (&in)[N], T (&out)[R]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    T acc = T(0);
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j)
      if (Mat[r][j] != 0) acc += T(Mat[r][j]) * in[j];
    out[r] = acc;
  }
}

// out = (Mat @ in)^T for a constant R x N matrix Mat and an N x C in.
template <const auto& Mat, class T, int R, int N, int C>
[[gnu::always_inline]] inline void apply_transposed(const T (&in)[N][C], T (&out)[C][R]) {
#pragma GCC unroll 8
  for (int q = 0; q < C; ++q) {
    T col[N];
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) col[i] = in[i][q];
    apply<Mat>(col, out[q]);
  }
}

// out = Mat @ in @ Mat^T = (Mat @ (Mat @ in)^T)^T for a constant R x N matrix Mat and an N x N in.
template <const auto& Mat, class T, int R, int N>
[[gnu::always_inline]] inline void apply_both_sides(const T (&in)[N][N], T (&out)[R][R]) {
  T left[N][R];
  apply_transposed<Mat>(in, left);
  apply_transposed<Mat>(left, out);
}

// Positions of u whose taps transform_weights_of copies at a time.
constexpr int64_t kTapChunk = 512;

// Copies the taps of the positions [o0, o0 + count) of u's planes (panels `width` wide, `panel`
// positions each) into taps[j][i], zeros past the last output channel. In panels (width > 1) with
// o0 and count multiples of width, the positions are whole channels c of one panel: each of its
// output channels' rows of w is then read as one contiguous run (w's rows are C * 9 apart, and a
// position at a time visited the panel's rows in turn, a cache miss per position at 256 channels).
template <class T>
void gather_taps(const T* __restrict w, int64_t out_channels, int64_t in_channels, int width, int64_t panel, int64_t o0,
                 int64_t count, T (*__restrict taps)[kTapChunk]) {
  const int64_t first_k = o0 / panel * width, c0 = o0 % panel / width;
  if (width > 1 && o0 % width == 0 && count % width == 0) {
    const int64_t channels = count / width;
    // The next chunk's run of each row is prefetched: `width` short runs at a time (32 rows of 8
    // channels) are more streams than the hardware prefetcher follows, and weights read from memory
    // made this gather half of a batch-1 layer (256 channels at 14 x 14: 2.4-2.7 -> 1.2-1.3 ms).
    const bool next_in_row = c0 + 2 * channels <= in_channels;
    for (int lane = 0; lane < width; ++lane) {
      const int64_t k = first_k + lane;
      const T* row = w + (k * in_channels + c0) * 9;
      if (next_in_row && k < out_channels)
        for (int64_t p = channels * 9; p < 2 * channels * 9; p += kCacheLineElements<T>) __builtin_prefetch(row + p);
      for (int64_t c = 0; c < channels; ++c)
#pragma GCC unroll 9
        for (int j = 0; j < 9; ++j) taps[j][c * width + lane] = k < out_channels ? row[c * 9 + j] : T(0);
    }
    return;
  }
  // Position o holds the pair k = (o / panel) width + o % width, c = o % panel / width.
  int64_t k0 = first_k, c = c0;
  int lane = static_cast<int>(o0 % width);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t k = k0 + lane;
    for (int j = 0; j < 9; ++j) taps[j][i] = k < out_channels ? w[(k * in_channels + c) * 9 + j] : T(0);
    if (++lane == width) {
      lane = 0;
      if (++c == in_channels) {
        c = 0;
        k0 += width;
      }
    }
  }
}

// WinogradKernels::transform_weights for F(M x M, 3x3): vectorized across consecutive positions of
// u's planes, each plane written as one unit-stride stream per xi.
template <int M, class T>
bool transform_weights_of(const T* __restrict w, int64_t out_channels, int64_t in_channels, int width, int64_t lo,
                          int64_t hi, T scale, T* __restrict u) {
  // The 9 taps of each (k, c) are 9 apart in w, a stride the compiler does not vectorize: copy
  // a chunk of positions' taps into 9 unit-stride rows first, then transform across the chunk.
  using V = Variant<M>;
  constexpr int A = V::kAlpha;
  const int64_t panel = in_channels * width, plane = (out_channels + width - 1) / width * panel;
  T taps[9][kTapChunk];
  T probe = 0;
  // In panels, chunks of whole channels that end at the panel's end at the latest (gather_taps).
  const bool panels = width > 1 && width <= kTapChunk;
  const int64_t chunk = panels ? kTapChunk / width * width : kTapChunk;
  for (int64_t o0 = lo, count = 0; o0 < hi; o0 += count) {
    count = std::min(chunk, hi - o0);
    if (panels) count = std::min(count, panel - o0 % panel);
    gather_taps(w, out_channels, in_channels, width, panel, o0, count, taps);
    T* out = u + o0;
#pragma omp simd reduction(+ : probe)
    for (int64_t i = 0; i < count; ++i) {
      T g[3][3], res[A][A];
#pragma GCC unroll 9
      for (int j = 0; j < 9; ++j) g[j / 3][j % 3] = taps[j][i];
      probe += non_finite_probe<T>(g[0][0] * scale, g[0][1] * scale, g[0][2] * scale, g[1][0] * scale, g[1][1] * scale,
                                   g[1][2] * scale, g[2][0] * scale, g[2][1] * scale, g[2][2] * scale);
      apply_both_sides<V::kG>(g, res);
#pragma GCC unroll 36
      for (int xi = 0; xi < A * A; ++xi) out[xi * plane + i] = res[xi / A][xi % A];
    }
  }
  return probe == 0;
}

template <class T>
bool transform_weights(int tile, const T* w, int64_t out_channels, int64_t in_channels, int width, int64_t lo,
                       int64_t hi, T scale, T* u) {
  return tile == 4 ? transform_weights_of<4>(w, out_channels, in_channels, width, lo, hi, scale, u)
                   : transform_weights_of<2>(w, out_channels, in_channels, width, lo, hi, scale, u);
}

// WinogradKernels::transform_input for F(M x M, 3x3), one (image, channel) plane at a time. Its
// padded rows y are first unfolded into alpha arrays: array q holds, for each tile column tw,
// column M tw + q of row y, at [y % M][y / M][tw]; then the input d[i][q] of tile f = (th, tw) is
// element (i / M) tiles_w + f of array q's part i % M, so that the transform runs across all the
// plane's tiles at unit stride (a row of tiles alone is too short a vector for small images).
template <int M, class T>
void transform_input_of(const Conv2dShape& s, const WinogradTiling& t, const T* x, int64_t n0, int64_t n1, int64_t c0,
                        int64_t c1, T* v, WinogradLayout l, T* rows) {
  using V = Variant<M>;
  constexpr int A = V::kAlpha;
  const int64_t C = s.in_channels, len = t.tiles_w + 1, tiles = t.per_image, tiles_w = t.tiles_w;
  const int64_t part = (t.tiles_h + 1) * tiles_w, array = M * part;
  T* unfolded = rows;                // alpha arrays of M parts
  T* phases = unfolded + A * array;  // M rows of tiles_w + 1: column M j + r of a row at [r][j]
  T* padded = phases + M * len;      // one padded input row: M (tiles_w + 1) columns
  const int64_t copied = std::min(s.in_w, M * len - s.pad_w);
  std::fill(padded, padded + M * len, T(0));
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = c0; c < c1; ++c) {
      const T* plane = x + (n * C + c) * s.in_h * s.in_w;
      for (int64_t y = 0; y < M * t.tiles_h + 2; ++y) {
        // Padded row y holds x[y - pad_h][j - pad_w] at column j (zero outside the image).
        T* dst = unfolded + (y % M) * part + (y / M) * tiles_w;
        const int64_t ih = y - s.pad_h;
        if (ih < 0 || ih >= s.in_h) {
          for (int q = 0; q < A; ++q) std::fill(dst + q * array, dst + q * array + tiles_w, T(0));
          continue;
        }
        std::copy(plane + ih * s.in_w, plane + ih * s.in_w + copied, padded + s.pad_w);
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) {
#pragma GCC unroll 8
          for (int r = 0; r < M; ++r) phases[r * len + j] = padded[M * j + r];
        }
        for (int q = 0; q < A; ++q) {
          const T* src = phases + (q % M) * len + q / M;
          T* to = dst + q * array;
#pragma omp simd
          for (int64_t tw = 0; tw < tiles_w; ++tw) to[tw] = src[tw];
        }
      }
      // B^T d B of every tile, into v.
      T* out = v + c * l.row + (n - n0) * tiles;
#pragma omp simd
      for (int64_t f = 0; f < tiles; ++f) {
        T d[A][A], res[A][A];
#pragma GCC unroll 36
        for (int iq = 0; iq < A * A; ++iq) {
          const int i = iq / A, q = iq % A;
          d[i][q] = unfolded[q * array + (i % M) * part + (i / M) * tiles_w + f];
        }
        apply_both_sides<V::kBt>(d, res);
#pragma GCC unroll 36
        for (int xi = 0; xi < A * A; ++xi) out[xi * l.xi + f] = res[xi / A][xi % A];
      }
    }
}

template <class T>
void transform_input(const Conv2dShape& s, const WinogradTiling& t, const T* x, int64_t n0, int64_t n1, int64_t c0,
                     int64_t c1, T* v, WinogradLayout l, T* rows) {
  if (t.tile == 4) return transform_input_of<4>(s, t, x, n0, n1, c0, c1, v, l, rows);
  transform_input_of<2>(s, t, x, n0, n1, c0, c1, v, l, rows);
}

// WinogradKernels::transform_output for F(M x M, 3x3), one (image, channel) plane at a time: A^T m A
// across all the plane's tiles into M^2 scratch rows of per_image (output (p, q) of tile f at row
// p M + q, column f), then interleaved into y a row at a time.
template <int M, class T>
void transform_output_of(const Conv2dShape& s, const WinogradTiling& t, const T* m, WinogradLayout l, const T* bias,
                         int64_t n0, int64_t n1, int64_t k0, int64_t k1, T* y, T* rows) {
  using V = Variant<M>;
  constexpr int A = V::kAlpha;
  const int64_t K = s.out_channels, tiles = t.per_image, tiles_w = t.tiles_w;
  T* joined = rows + M * M * tiles;  // one output row: M tiles_w columns
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = k0; k < k1; ++k) {
      const T offset = bias ? bias[k] : T(0);
      const T* in = m + k * l.row + (n - n0) * tiles;
#pragma omp simd
      for (int64_t f = 0; f < tiles; ++f) {
        T d[A][A], res[M][M];
#pragma GCC unroll 36
        for (int xi = 0; xi < A * A; ++xi) d[xi / A][xi % A] = in[xi * l.xi + f];
        apply_both_sides<V::kAt>(d, res);
#pragma GCC unroll 16
        for (int pq = 0; pq < M * M; ++pq) rows[pq * tiles + f] = res[pq / M][pq % M] + offset;
      }
      T* plane = y + (n * K + k) * s.out_h * s.out_w;
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        const T* src = rows + (oh % M) * M * tiles + (oh / M) * tiles_w;
#pragma omp simd
        for (int64_t tw = 0; tw < tiles_w; ++tw) {
#pragma GCC unroll 8
          for (int q = 0; q < M; ++q) joined[M * tw + q] = src[q * tiles + tw];
        }
        std::copy(joined, joined + s.out_w, plane + oh * s.out_w);
      }
    }
}

template <class T>
void transform_output(const Conv2dShape& s, const WinogradTiling& t, const T* m, WinogradLayout l, const T* bias,
                      int64_t n0, int64_t n1, int64_t k0, int64_t k1, T* y, T* rows) {
  if (t.tile == 4) return transform_output_of<4>(s, t, m, l, bias, n0, n1, k0, k1, y, rows);
  transform_output_of<2>(s, t, m, l, bias, n0, n1, k0, k1, y, rows);
}

// WinogradKernels::transform_grad_output: dbar is the gradient of the tile sums S = U .* V
// (positions past the output are zero), with A = A^T's transpose; the tile row's two dY rows are
// split into even and odd columns (the 4 scratch rows) first, so the transform runs across tiles.
template <class T>
void transform_grad_output(const Conv2dShape& s, const WinogradTiling& t, const T* grad_y, int64_t n0, int64_t n1,
                           T* dbar, int64_t ld, T* rows) {
  const int64_t K = s.out_channels, xi_stride = K * ld, tiles_w = t.tiles_w;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const T* plane = grad_y + (n * K + k) * s.out_h * s.out_w;
      for (int64_t th = 0; th < t.tiles_h; ++th) {
        // rows: even and odd columns of the tile row's two dY rows (zero past the output).
        std::fill(rows, rows + 4 * tiles_w, T(0));
        for (int64_t p = 0; p < 2 && 2 * th + p < s.out_h; ++p)
          for (int64_t q = 0; q < s.out_w; ++q)
            rows[(2 * p + q % 2) * tiles_w + q / 2] = plane[(2 * th + p) * s.out_w + q];
        const T* y0e = rows;
        const T* y0o = rows + tiles_w;
        const T* y1e = rows + 2 * tiles_w;
        const T* y1o = rows + 3 * tiles_w;
        T* out = dbar + k * ld + (n - n0) * t.per_image + th * tiles_w;
#pragma omp simd
        for (int64_t tw = 0; tw < tiles_w; ++tw) {
          // A dY: rows (y00, y01), (y00 + y10, y01 + y11), (y00 - y10, y01 - y11), (-y10, -y11);
          // each row (a, b) times A^T: (a, a + b, a - b, -b).
          const T y00 = y0e[tw], y01 = y0o[tw], y10 = y1e[tw], y11 = y1o[tw];
          const T a[4] = {y00, y00 + y10, y00 - y10, -y10};
          const T b[4] = {y01, y01 + y11, y01 - y11, -y11};
          for (int p = 0; p < 4; ++p) {
            out[(4 * p + 0) * xi_stride + tw] = a[p];
            out[(4 * p + 1) * xi_stride + tw] = a[p] + b[p];
            out[(4 * p + 2) * xi_stride + tw] = a[p] - b[p];
            out[(4 * p + 3) * xi_stride + tw] = -b[p];
          }
        }
      }
    }
}

// WinogradKernels::all_finite: one vectorized pass (the caller's block of x or dY, just before its
// transform reads it from cache).
template <class T>
bool all_finite(const T* __restrict p, int64_t count, T scale) {
  T probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < count; ++i) probe += non_finite_probe<T>(p[i] * scale);
  return probe == 0;
}

// WinogradKernels::transform_weight_grad: one (k, c) pair at a time (9 outputs each).
template <class T>
void transform_weight_grad(const T* __restrict du, int64_t plane, int64_t lo, int64_t hi, T* __restrict grad_w) {
  const T h = T(0.5);
  for (int64_t kc = lo; kc < hi; ++kc) {
    T x[4][4];
    for (int xi = 0; xi < 16; ++xi) x[xi / 4][xi % 4] = du[xi * plane + kc];
    // G^T X: rows X0 + (X1 + X2) / 2, (X1 - X2) / 2, (X1 + X2) / 2 + X3; then the same on columns.
    T z[3][4];
    for (int q = 0; q < 4; ++q) {
      z[0][q] = x[0][q] + h * (x[1][q] + x[2][q]);
      z[1][q] = h * (x[1][q] - x[2][q]);
      z[2][q] = h * (x[1][q] + x[2][q]) + x[3][q];
    }
    T* g = grad_w + kc * 9;
    for (int r = 0; r < 3; ++r) {
      g[3 * r + 0] = z[r][0] + h * (z[r][1] + z[r][2]);
      g[3 * r + 1] = h * (z[r][1] - z[r][2]);
      g[3 * r + 2] = h * (z[r][1] + z[r][2]) + z[r][3];
    }
  }
}

template <class T>
constexpr WinogradKernels<T> kernels_of = {
    .transform_weights = &transform_weights<T>,
    .transform_input = &transform_input<T>,
    .transform_output = &transform_output<T>,
    .transform_grad_output = &transform_grad_output<T>,
    .transform_weight_grad = &transform_weight_grad<T>,
    .all_finite = &all_finite<T>,
};

}  // namespace

const KernelsByType<WinogradKernels> winograd_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
