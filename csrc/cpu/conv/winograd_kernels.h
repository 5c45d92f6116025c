// The Winograd F(2x2, 3x3) and F(4x4, 3x3) transforms (winograd.cpp has the algorithm and the
// drivers; the backward ones are F(2x2, 3x3) only), as one table per ISA: winograd_kernels.cpp is compiled once per ISA
// and vectorizes them for it.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// How a call cuts its output into tile x tile tiles (F(tile x tile, 3x3): 2 or 4) and its batch
// into blocks of images.
struct WinogradTiling {
  int tile;
  int64_t tiles_h, tiles_w, per_image;  // output tiles
  int64_t images;                       // images per block
  int slots;                            // threads the blocks are spread over
};

// Where a transformed matrix of a block (V: input channels x tiles, M or dbar: output channels x
// tiles, one per xi) keeps element [xi][row][tile]: at xi * xi + row * row + tile.
struct WinogradLayout {
  int64_t row, xi;
};

// The transforms run across a row of tiles (or of weight pairs), so the compiler vectorizes them
// along it. The kernels only compute: callers pass every buffer, each ISA's table is filled by
// field name. The transforms add and subtract values, which can turn a direct sum's Inf into NaN:
// the callers use their results only for finite operands (transform_weights and all_finite tell),
// whose values times `scale` are finite too: the transforms grow sums of products up to a bound that
// the caller's scale sets (winograd.cpp's probe_scale), and values beyond it could overflow there.
template <class T>
struct WinogradKernels {
  // U_xi[k][c] = (G g_kc G^T)[xi / alpha][xi % alpha] of F(tile x tile, 3x3) (alpha = tile + 2) for the
  // positions [lo, hi) of u's planes, in `width`-wide panels of output channels: element (xi, k, c) at
  // u[xi * plane + (k / width) * C * width + c * width + k % width], zero for the k past K in the last
  // panel (plane = ceil(K / width) * width * C). Width 1 is u[xi][k][c]; the GEMM's panel width makes
  // each plane the GEMM's packed B of U_xi^T (C x K). Returns false when a weight read is Inf or NaN,
  // or times `scale` is.
  bool (*transform_weights)(int tile, const T* w, int64_t out_channels, int64_t in_channels, int width, int64_t lo,
                            int64_t hi, T scale, T* u);
  // v[xi][c][tile] (laid out as l says) = (B^T d B)[xi] for the channels
  // [c0, c1) and the tiles of images [n0, n1); `rows` is a scratch of alpha tile (tiles_h + 1)
  // tiles_w + 2 tile (tiles_w + 1) + tile^2 per_image elements.
  void (*transform_input)(const Conv2dShape& s, const WinogradTiling& t, const T* x, int64_t n0, int64_t n1, int64_t c0,
                          int64_t c1, T* v, WinogradLayout l, T* rows);
  // y (+ bias, may be null) of the channels [k0, k1) of images [n0, n1) from m[xi][k][tile] (laid
  // out as l says); `rows` is a scratch as transform_input's.
  void (*transform_output)(const Conv2dShape& s, const WinogradTiling& t, const T* m, WinogradLayout l, const T* bias,
                           int64_t n0, int64_t n1, int64_t k0, int64_t k1, T* y, T* rows);
  // F(2x2, 3x3) only: dbar[xi][k][tile] (row stride ld) = (A dY A^T)[xi] for the tiles of images [n0, n1); `rows` is
  // a scratch as transform_input's.
  void (*transform_grad_output)(const Conv2dShape& s, const WinogradTiling& t, const T* grad_y, int64_t n0, int64_t n1,
                                T* dbar, int64_t ld, T* rows);
  // F(2x2, 3x3) only: grad_w[k][c] = G^T dU_kc G for the (k, c) pairs [lo, hi), du[xi][k][c] (planes `plane` apart).
  void (*transform_weight_grad)(const T* du, int64_t plane, int64_t lo, int64_t hi, T* grad_w);
  // True when none of the count values at p is Inf or NaN, nor times `scale` is.
  bool (*all_finite)(const T* p, int64_t count, T scale);
};

DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<WinogradKernels>, winograd_kernels)

}  // namespace deepkern::cpu
