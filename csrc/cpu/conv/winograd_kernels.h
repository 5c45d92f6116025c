// The Winograd F(2x2, 3x3) transforms (winograd.cpp has the algorithm and the drivers), as one
// table per ISA: winograd_kernels.cpp is compiled once per ISA and vectorizes them for it.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// How a call cuts its output into 2x2 tiles and its batch into blocks of images.
struct WinogradTiling {
  int64_t tiles_h, tiles_w, per_image;  // 2x2 output tiles
  int64_t images;                       // images per block
  int slots;                            // threads the blocks are spread over
};

// The transforms run across a row of tiles (or of weight pairs), so the compiler vectorizes them
// along it. The kernels only compute: callers pass every buffer, each ISA's table is filled by
// field name. The transforms add and subtract values, which can turn a direct sum's Inf into NaN:
// the callers use their results only for finite operands (transform_weights and all_finite tell).
// Both also report as non-finite the rare values so large that a sum of a few of them overflows.
template <class T>
struct WinogradKernels {
  // u[xi][k][c] = (G g_kc G^T)[xi / 4][xi % 4] for the (k, c) pairs [lo, hi) of the K x C plane
  // (u's xi planes are `plane` apart).
  // Returns false when one of the weights read is Inf or NaN.
  bool (*transform_weights)(const T* w, int64_t plane, int64_t lo, int64_t hi, T* u);
  // v[xi][c][tile] (row stride ld, xi planes C * ld apart) = (B^T d B)[xi] for the channels
  // [c0, c1) and the tiles of images [n0, n1); `rows` is a scratch of 8 rows of tiles_w + 1 elements.
  void (*transform_input)(const Conv2dShape& s, const WinogradTiling& t, const T* x, int64_t n0, int64_t n1, int64_t c0,
                          int64_t c1, T* v, int64_t ld, T* rows);
  // y (+ bias, may be null) of the channels [k0, k1) of images [n0, n1) from m[xi][k][tile] (row
  // stride ld, xi planes K * ld apart); `rows` is a scratch of 4 rows of tiles_w elements.
  void (*transform_output)(const Conv2dShape& s, const WinogradTiling& t, const T* m, int64_t ld, const T* bias,
                           int64_t n0, int64_t n1, int64_t k0, int64_t k1, T* y, T* rows);
  // dbar[xi][k][tile] (row stride ld) = (A dY A^T)[xi] for the tiles of images [n0, n1); `rows` is
  // a scratch of 4 rows of tiles_w elements.
  void (*transform_grad_output)(const Conv2dShape& s, const WinogradTiling& t, const T* grad_y, int64_t n0, int64_t n1,
                                T* dbar, int64_t ld, T* rows);
  // grad_w[k][c] = G^T dU_kc G for the (k, c) pairs [lo, hi), du[xi][k][c] (planes `plane` apart).
  void (*transform_weight_grad)(const T* du, int64_t plane, int64_t lo, int64_t hi, T* grad_w);
  // True when none of the count values at p is Inf or NaN.
  bool (*all_finite)(const T* p, int64_t count);
};

DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<WinogradKernels>, winograd_kernels)

}  // namespace deepkern::cpu
