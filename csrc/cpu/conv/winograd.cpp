// Winograd F(2x2, 3x3) (Lavin & Gray): for each 2x2 output tile,
//   Y = A^T [ sum over c of (G g_kc G^T) .* (B^T d_c B) ] A
// with d_c the 4x4 input patch of channel c. The 16 elementwise products summed over channels
// are 16 GEMMs: M_xi (K x tiles) = U_xi (K x C) @ V_xi (C x tiles), xi = one of the 4x4 positions.
//
//   U = G g G^T    (weights, once per call)      G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
//   V = B^T d B    (input, per block of images)   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   Y = A^T M A    (output, + bias)               A^T = [1 1 1 0; 0 1 -1 -1]
//
// Blocks of whole images (enough tiles for wide GEMMs, V and M bounded by kMaxBlockBytes per
// thread) are spread over threads with single-threaded GEMMs, like the im2col path in conv.cpp.
// The transforms run along a row of tiles so the compiler vectorizes them across tiles.
#include "cpu/conv/winograd.h"

#include <algorithm>
#include <vector>

#include "core/cpu_features.h"
#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {
namespace {

constexpr int64_t kMaxBlockBytes = int64_t(16) << 20;  // V + M of one block
constexpr int64_t kTargetTiles = 512;                  // GEMM columns per block

struct Tiling {
  int64_t tiles_h, tiles_w, per_image;  // 2x2 output tiles
  int64_t images;                       // images per block
  int slots;
};

template <class T>
Tiling make_tiling(const Conv2dShape& s) {
  Tiling t;
  t.tiles_h = (s.out_h + 1) / 2;
  t.tiles_w = (s.out_w + 1) / 2;
  t.per_image = t.tiles_h * t.tiles_w;
  t.slots = num_threads();
  const int64_t per_slot = (s.batch + t.slots - 1) / t.slots;
  const int64_t image_bytes = 16 * (s.in_channels + s.out_channels) * t.per_image * int64_t(sizeof(T));
  int64_t images = std::min(per_slot, (kTargetTiles + t.per_image - 1) / t.per_image);
  images = std::max<int64_t>(1, std::min(images, kMaxBlockBytes / std::max<int64_t>(image_bytes, 1)));
  const int64_t blocks_per_slot = (per_slot + images - 1) / images;
  t.images = std::max<int64_t>(1, (per_slot + blocks_per_slot - 1) / blocks_per_slot);
  return t;
}

// u[xi][k][c] = (G g_kc G^T)[xi / 4][xi % 4] for the (k, c) pairs [lo, hi) of the K x C plane,
// vectorized across consecutive pairs (u is written in 16 unit-stride streams).
template <class T>
DEEPKERN_ISA_CLONES void transform_weights(const T* __restrict w, int64_t plane, int64_t lo, int64_t hi,
                                           T* __restrict u) {
  // The 9 taps of each (k, c) are 9 apart in w, a stride the compiler does not vectorize: copy
  // a chunk of pairs into 9 unit-stride tap rows first, then transform across the chunk.
  constexpr int64_t kChunk = 256;
  T taps[9][kChunk];
  const T h = T(0.5);
  for (int64_t c0 = lo; c0 < hi; c0 += kChunk) {
    const int64_t count = std::min(kChunk, hi - c0);
    for (int64_t i = 0; i < count; ++i)
      for (int j = 0; j < 9; ++j) taps[j][i] = w[(c0 + i) * 9 + j];
    T* out = u + c0;
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) {
      // Rows of G g: (g0 g1 g2), ((g0+g3+g6)/2 ...), ((g0-g3+g6)/2 ...), (g6 g7 g8); each row
      // (x0, x1, x2) times G^T is (x0, (x0 + x1 + x2) / 2, (x0 - x1 + x2) / 2, x2).
      const T g0 = taps[0][i], g1 = taps[1][i], g2 = taps[2][i], g3 = taps[3][i], g4 = taps[4][i];
      const T g5 = taps[5][i], g6 = taps[6][i], g7 = taps[7][i], g8 = taps[8][i];
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
}

// v[xi][c][tile] (row stride ld) = (B^T d B)[xi] for the tiles of images [n0, n1). `rows` is a
// scratch of 8 rows of tiles_w + 1 elements: each padded input row is split into its even and odd
// columns, so that both passes of the transform run at unit stride across a row of tiles.
template <class T>
DEEPKERN_ISA_CLONES void transform_input(const Conv2dShape& s, const Tiling& t, const T* x, int64_t n0, int64_t n1,
                     T* v, int64_t ld, T* rows) {
  const int64_t C = s.in_channels, half = t.tiles_w + 1, xi_stride = C * ld;
  T* even[4];
  T* odd[4];
  for (int i = 0; i < 4; ++i) {
    even[i] = rows + (2 * i) * half;
    odd[i] = rows + (2 * i + 1) * half;
  }
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < C; ++c) {
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
          for (int64_t j = j_lo; j < j_hi; ++j) (j % 2 ? odd[i] : even[i])[j / 2] = plane[ih * s.in_w + j - s.pad_w];
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

// y (+ bias) from m[xi][k][tile] (row stride ld) for images [n0, n1). `rows` is a scratch of 4
// rows of tiles_w elements (the even and odd columns of the tile row's two output rows).
template <class T>
DEEPKERN_ISA_CLONES void transform_output(const Conv2dShape& s, const Tiling& t, const T* m, int64_t ld, const T* bias,
                      int64_t n0, int64_t n1, T* y, T* rows) {
  const int64_t K = s.out_channels, xi_stride = K * ld, tiles_w = t.tiles_w;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = 0; k < K; ++k) {
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

// dbar[xi][k][tile] (row stride ld) = (A dY A^T)[xi] for the 2x2 tiles of dY of images [n0, n1)
// (the gradient of the tile sums S = U .* V; positions past the output are zero), with A =
// A^T's transpose. `rows` is a scratch of 4 rows of tiles_w elements.
template <class T>
DEEPKERN_ISA_CLONES void transform_grad_output(const Conv2dShape& s, const Tiling& t, const T* grad_y,
                                               int64_t n0, int64_t n1, T* dbar, int64_t ld, T* rows) {
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

// grad_w[k][c] = G^T dU_kc G for the (k, c) pairs [lo, hi), du[xi][k][c].
template <class T>
DEEPKERN_ISA_CLONES void transform_weight_grad(const T* __restrict du, int64_t plane, int64_t lo,
                                               int64_t hi, T* __restrict grad_w) {
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

// Per-thread scratch: tiles of x (V, 0), of the output or dY (M, 1), transform rows (2), and the
// transformed weights (3), kept for the next call (no page faults).
struct WinogradScratch;
template <class T>
T* thread_buffer(int which, int64_t count) {
  return thread_scratch<WinogradScratch, 4, T>(which, count);
}

}  // namespace

namespace {

// Multiplies saved against direct convolution, counting the partial tiles at odd edges: 2.25x
// for even outputs, 1.72x for 7 x 7.
double winograd_saving(const Conv2dShape& s) {
  const double tiles = double((s.out_h + 1) / 2) * double((s.out_w + 1) / 2);
  return 9.0 * double(s.out_h) * double(s.out_w) / (16.0 * std::max(tiles, 1.0));
}

}  // namespace

bool winograd_applies(const Conv2dShape& s) {
  // 7 x 7 pays too (measured: 512 channels at 7 x 7, 2 threads, 29.5 ms against 31.6-34.7 ms for
  // im2col + GEMM, before the weight transform was vectorized).
  return s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 && s.stride_w == 1 &&
         s.dilation_h == 1 && s.dilation_w == 1 && s.groups == 1 && s.pad_h <= 2 && s.pad_w <= 2 &&
         s.in_channels >= 64 && s.out_channels >= 64 && winograd_saving(s) >= 1.7;
}

bool winograd_applies_to_weight_grad(const Conv2dShape& s) {
  // The weight gradient accumulates 16 K x C sums per thread over few tiles per block: at 7 x 7
  // (1.72x saving) that traffic loses to im2col + GEMM (512 channels, 2 threads: 0.61x against
  // 0.75x of PyTorch's backward), at 14 x 14 and larger it wins (256 channels: 0.82x -> 0.89x).
  return winograd_applies(s) && winograd_saving(s) >= 2.0;
}

template <class T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const int64_t K = s.out_channels, C = s.in_channels;
  const Tiling t = make_tiling<T>(s);
  T* u = thread_buffer<T>(3, 16 * K * C);
  const int64_t plane = K * C;
  run_on_threads(t.slots, [&](int part) {
    transform_weights(w, plane, plane * part / t.slots, plane * (part + 1) / t.slots, u);
  });
  const int64_t blocks = (s.batch + t.images - 1) / t.images;
  auto run_block = [&](int64_t n0, int gemm_threads) {
    const int64_t n1 = std::min(s.batch, n0 + t.images), tiles = (n1 - n0) * t.per_image;
    T* v = thread_buffer<T>(0, 16 * C * tiles);
    T* m = thread_buffer<T>(1, 16 * K * tiles);
    T* rows = thread_buffer<T>(2, 8 * (t.tiles_w + 1));
    transform_input(s, t, x, n0, n1, v, tiles, rows);
    for (int xi = 0; xi < 16; ++xi)
      gemm<T>(K, tiles, C, T(1), {u + xi * K * C, C, 1}, {v + xi * C * tiles, tiles, 1}, T(0),
              {m + xi * K * tiles, tiles, 1}, {}, gemm_threads);
    transform_output(s, t, m, tiles, bias, n0, n1, y, rows);
  };
  if (t.slots > 1 && blocks >= t.slots) {
    run_on_threads(t.slots, [&](int slot) {
      for (int64_t b = slot; b < blocks; b += t.slots) run_block(b * t.images, 1);
    });
  } else {
    for (int64_t b = 0; b < blocks; ++b) run_block(b * t.images, t.slots);
  }
}

template <class T>
void winograd_backward_data(const Conv2dShape& s, const T* grad_y, const T* w, T* grad_x) {
  // dX = conv(dY, w') with w'[c][k][r][s] = w[k][c][2 - r][2 - s], padding 2 - pad, output H x W.
  const int64_t K = s.out_channels, C = s.in_channels;
  std::vector<T> flipped(static_cast<size_t>(C * K * 9));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c)
      for (int i = 0; i < 9; ++i) flipped[(c * K + k) * 9 + (8 - i)] = w[(k * C + c) * 9 + i];
  Conv2dShape t = s;
  t.in_channels = K;
  t.out_channels = C;
  t.in_h = s.out_h;
  t.in_w = s.out_w;
  t.out_h = s.in_h;
  t.out_w = s.in_w;
  t.pad_h = 2 - s.pad_h;
  t.pad_w = 2 - s.pad_w;
  winograd_forward(t, grad_y, flipped.data(), static_cast<const T*>(nullptr), grad_x);
}

template <class T>
void winograd_backward_weight(const Conv2dShape& s, const T* grad_y, const T* x, T* grad_w) {
  // dU_xi (K x C) = sum over tiles of dbar_xi (K x tiles) @ V_xi^T (tiles x C): 16 GEMMs per
  // block of images, accumulated per thread; then grad_w = G^T dU G.
  const int64_t K = s.out_channels, C = s.in_channels, plane = K * C;
  const Tiling t = make_tiling<T>(s);
  const int64_t blocks = (s.batch + t.images - 1) / t.images;
  const bool spread = t.slots > 1 && blocks >= t.slots;
  const int sums = spread ? t.slots : 1;
  std::vector<T> du(static_cast<size_t>(sums * 16 * plane), T(0));
  auto run_block = [&](int64_t n0, int slot, int gemm_threads) {
    const int64_t n1 = std::min(s.batch, n0 + t.images), tiles = (n1 - n0) * t.per_image;
    T* v = thread_buffer<T>(0, 16 * C * tiles);
    T* dbar = thread_buffer<T>(1, 16 * K * tiles);
    T* rows = thread_buffer<T>(2, 8 * (t.tiles_w + 1));
    transform_input(s, t, x, n0, n1, v, tiles, rows);
    transform_grad_output(s, t, grad_y, n0, n1, dbar, tiles, rows);
    T* du_slot = du.data() + slot * 16 * plane;
    for (int xi = 0; xi < 16; ++xi)
      gemm<T>(K, C, tiles, T(1), {dbar + xi * K * tiles, tiles, 1}, {v + xi * C * tiles, 1, tiles}, T(1),
              {du_slot + xi * plane, C, 1}, {}, gemm_threads);
  };
  if (spread) {
    run_on_threads(t.slots, [&](int slot) {
      for (int64_t b = slot; b < blocks; b += t.slots) run_block(b * t.images, slot, 1);
    });
  } else {
    for (int64_t b = 0; b < blocks; ++b) run_block(b * t.images, 0, t.slots);
  }
  for (int slot = 1; slot < sums; ++slot) {
    const T* part = du.data() + slot * 16 * plane;
#pragma omp simd
    for (int64_t i = 0; i < 16 * plane; ++i) du[i] += part[i];
  }
  run_on_threads(t.slots, [&](int part) {
    transform_weight_grad(du.data(), plane, plane * part / t.slots, plane * (part + 1) / t.slots, grad_w);
  });
}

template void winograd_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*);
template void winograd_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*);
template void winograd_backward_data<float>(const Conv2dShape&, const float*, const float*, float*);
template void winograd_backward_data<double>(const Conv2dShape&, const double*, const double*, double*);
template void winograd_backward_weight<float>(const Conv2dShape&, const float*, const float*, float*);
template void winograd_backward_weight<double>(const Conv2dShape&, const double*, const double*, double*);

}  // namespace deepkern::cpu
