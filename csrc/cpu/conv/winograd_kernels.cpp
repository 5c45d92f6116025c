// The Winograd transforms of winograd_kernels.h, compiled once per ISA (a per-ISA source): each
// runs along a row of tiles, or a range of weight pairs, so the compiler vectorizes it across them
// for this ISA. Only computes: buffers come from the callers in winograd.cpp.
#include <algorithm>

#include "cpu/conv/winograd_kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// A probe term: 0 for finite values, NaN when one of them is Inf or NaN (or their sum overflows).
// Summed over a transform's inputs, it is 0 exactly when they were all finite.
template <class T, class... V>
inline T non_finite_probe(V... values) {
  return (values + ...) * T(0);
}

// WinogradKernels::transform_weights: vectorized across consecutive (k, c) pairs, u written in 16
// unit-stride streams.
template <class T>
bool transform_weights(const T* __restrict w, int64_t plane, int64_t lo, int64_t hi, T* __restrict u) {
  // The 9 taps of each (k, c) are 9 apart in w, a stride the compiler does not vectorize: copy
  // a chunk of pairs into 9 unit-stride tap rows first, then transform across the chunk.
  constexpr int64_t kChunk = 256;
  T taps[9][kChunk];
  const T h = T(0.5);
  T probe = 0;
  for (int64_t c0 = lo; c0 < hi; c0 += kChunk) {
    const int64_t count = std::min(kChunk, hi - c0);
    for (int64_t i = 0; i < count; ++i)
      for (int j = 0; j < 9; ++j) taps[j][i] = w[(c0 + i) * 9 + j];
    T* out = u + c0;
#pragma omp simd reduction(+ : probe)
    for (int64_t i = 0; i < count; ++i) {
      // Rows of G g: (g0 g1 g2), ((g0+g3+g6)/2 ...), ((g0-g3+g6)/2 ...), (g6 g7 g8); each row
      // (x0, x1, x2) times G^T is (x0, (x0 + x1 + x2) / 2, (x0 - x1 + x2) / 2, x2).
      const T g0 = taps[0][i], g1 = taps[1][i], g2 = taps[2][i], g3 = taps[3][i], g4 = taps[4][i];
      const T g5 = taps[5][i], g6 = taps[6][i], g7 = taps[7][i], g8 = taps[8][i];
      probe += non_finite_probe<T>(g0, g1, g2, g3, g4, g5, g6, g7, g8);
      const T b0 = h * (g0 + g3 + g6), b1 = h * (g1 + g4 + g7), b2 = h * (g2 + g5 + g8);
      const T c0v = h * (g0 - g3 + g6), c1 = h * (g1 - g4 + g7), c2 = h * (g2 - g5 + g8);
      out[0 * plane + i] = g0;
      out[1 * plane + i] = h * (g0 + g1 + g2);
      out[2 * plane + i] = h * (g0 - g1 + g2);
      out[3 * plane + i] = g2;
      out[4 * plane + i] = b0;
      out[5 * plane + i] = h * (b0 + b1 + b2);
      out[6 * plane + i] = h * (b0 - b1 + b2);
      out[7 * plane + i] = b2;
      out[8 * plane + i] = c0v;
      out[9 * plane + i] = h * (c0v + c1 + c2);
      out[10 * plane + i] = h * (c0v - c1 + c2);
      out[11 * plane + i] = c2;
      out[12 * plane + i] = g6;
      out[13 * plane + i] = h * (g6 + g7 + g8);
      out[14 * plane + i] = h * (g6 - g7 + g8);
      out[15 * plane + i] = g8;
    }
  }
  return probe == 0;
}

// WinogradKernels::transform_input: each padded input row is split into its even and odd columns
// (the 8 scratch rows), so that both passes of the transform run at unit stride across a row of tiles.
template <class T>
void transform_input(const Conv2dShape& s, const WinogradTiling& t, const T* x, int64_t n0, int64_t n1, int64_t c0,
                     int64_t c1, T* v, int64_t ld, T* rows) {
  const int64_t C = s.in_channels, half = t.tiles_w + 1, xi_stride = C * ld;
  T* even[4];
  T* odd[4];
  for (int i = 0; i < 4; ++i) {
    even[i] = rows + (2 * i) * half;
    odd[i] = rows + (2 * i + 1) * half;
  }
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = c0; c < c1; ++c) {
      const T* plane = x + (n * C + c) * s.in_h * s.in_w;
      for (int64_t th = 0; th < t.tiles_h; ++th) {
        // Padded row i holds x[2 th - pad_h + i][j - pad_w] at column j (zero outside the
        // image): even columns in even[i], odd ones in odd[i].
        for (int i = 0; i < 4; ++i) {
          std::fill(even[i], even[i] + half, T(0));
          std::fill(odd[i], odd[i] + half, T(0));
          const int64_t ih = 2 * th - s.pad_h + i;
          if (ih < 0 || ih >= s.in_h) continue;
          const int64_t j_lo = s.pad_w, j_hi = std::min(2 * half, s.in_w + s.pad_w);
          // One pointer per column, then the store: GCC 12's UBSan instrumentation miscompiles a
          // conditional expression used as the subscripted array here.
          for (int64_t j = j_lo; j < j_hi; ++j) {
            T* dst = j % 2 ? odd[i] : even[i];
            dst[j / 2] = plane[ih * s.in_w + j - s.pad_w];
          }
        }
        // B^T d, down the columns (in place: row p of B^T d replaces row p).
        for (T** half_rows : {even, odd}) {
          T* r0 = half_rows[0];
          T* r1 = half_rows[1];
          T* r2 = half_rows[2];
          T* r3 = half_rows[3];
#pragma omp simd
          for (int64_t j = 0; j < half; ++j) {
            const T d0 = r0[j], d1 = r1[j], d2 = r2[j], d3 = r3[j];
            r0[j] = d0 - d2;
            r1[j] = d1 + d2;
            r2[j] = d2 - d1;
            r3[j] = d1 - d3;
          }
        }
        // (B^T d) B along each row: tile tw reads columns 2 tw .. 2 tw + 3 = even[tw], odd[tw],
        // even[tw + 1], odd[tw + 1].
        T* out = v + c * ld + (n - n0) * t.per_image + th * t.tiles_w;
        for (int p = 0; p < 4; ++p) {
          const T* e = even[p];
          const T* o = odd[p];
          T* o0 = out + (4 * p + 0) * xi_stride;
          T* o1 = out + (4 * p + 1) * xi_stride;
          T* o2 = out + (4 * p + 2) * xi_stride;
          T* o3 = out + (4 * p + 3) * xi_stride;
#pragma omp simd
          for (int64_t tw = 0; tw < t.tiles_w; ++tw) {
            o0[tw] = e[tw] - e[tw + 1];
            o1[tw] = o[tw] + e[tw + 1];
            o2[tw] = e[tw + 1] - o[tw];
            o3[tw] = o[tw] - o[tw + 1];
          }
        }
      }
    }
}

// WinogradKernels::transform_output: A^T M A across a row of tiles into the 4 scratch rows (the
// even and odd columns of the tile row's two output rows), then interleaved into y.
template <class T>
void transform_output(const Conv2dShape& s, const WinogradTiling& t, const T* m, int64_t ld, const T* bias, int64_t n0,
                      int64_t n1, int64_t k0, int64_t k1, T* y, T* rows) {
  const int64_t K = s.out_channels, xi_stride = K * ld, tiles_w = t.tiles_w;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = k0; k < k1; ++k) {
      const T offset = bias ? bias[k] : T(0);
      T* plane = y + (n * K + k) * s.out_h * s.out_w;
      for (int64_t th = 0; th < t.tiles_h; ++th) {
        const T* in = m + k * ld + (n - n0) * t.per_image + th * tiles_w;
#pragma omp simd
        for (int64_t tw = 0; tw < tiles_w; ++tw) {
          T a[2][4];  // A^T M
          for (int q = 0; q < 4; ++q) {
            const T m0 = in[(0 + q) * xi_stride + tw], m1 = in[(4 + q) * xi_stride + tw];
            const T m2 = in[(8 + q) * xi_stride + tw], m3 = in[(12 + q) * xi_stride + tw];
            a[0][q] = m0 + m1 + m2;
            a[1][q] = m1 - m2 - m3;
          }
          for (int p = 0; p < 2; ++p) {
            rows[(2 * p) * tiles_w + tw] = a[p][0] + a[p][1] + a[p][2] + offset;
            rows[(2 * p + 1) * tiles_w + tw] = a[p][1] - a[p][2] - a[p][3] + offset;
          }
        }
        for (int64_t p = 0; p < 2 && 2 * th + p < s.out_h; ++p) {
          const T* e = rows + (2 * p) * tiles_w;
          const T* o = rows + (2 * p + 1) * tiles_w;
          T* out = plane + (2 * th + p) * s.out_w;
          for (int64_t q = 0; q < s.out_w; ++q) out[q] = q % 2 ? o[q / 2] : e[q / 2];
        }
      }
    }
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
bool all_finite(const T* __restrict p, int64_t count) {
  T probe = 0;
#pragma omp simd reduction(+ : probe)
  for (int64_t i = 0; i < count; ++i) probe += non_finite_probe<T>(p[i]);
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
