// The GEMM micro-kernel contract, the per-ISA kernel table, and the portable kernels.
//
// Micro-kernel contract (BLIS style; row-major C, vectors run along N):
//   tile(kc, a_panel, b_rows, ldb, c, ldc, alpha, beta, epilogue)
//   - a_panel: an MR x kc block of A packed column by column: A(i, p) = a_panel[p * MR + i].
//     Rows past the edge of A are zero-filled by the packing routine.
//   - b_rows:  kc rows of NR contiguous elements: B(p, j) = b_rows[p * ldb + j] (the driver
//     passes packed panels, ldb = NR, columns past the edge of B zero-filled; or, for a full
//     panel of a B with contiguous rows, B itself, ldb = its row stride).
//   - c:       a full MR x NR tile, C(i, j) = c[i * ldc + j].
//   - computes C = alpha * A B + beta * C, never reading C when beta == 0; then, if
//     epilogue.bias is set, adds bias[i] (rows) or bias[j] (cols); then ReLU if asked.
//     The driver passes the epilogue only with the last kc block of K.
//   - kc may be 0. The tile is always full: partial tiles at the edges of C are computed
//     into a local MR x NR buffer by the driver and merged with merge_tile(), so the kernel
//     has no edge cases. A kernel table may add short kernels (fewer rows, same panels) so
//     that the last row panel of C does not compute rows that are only padding.
// Kernels only compute: no allocation, no threads, no validation.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {

template <class T>
struct TileEpilogue {
  const T* bias = nullptr;  // already offset to the tile's first row (rows) or column (cols)
  BiasAxis axis = BiasAxis::none;
  bool relu = false;
};

template <class T>
using TileKernel = void (*)(int64_t kc, const T* a_panel, const T* b_rows, int64_t ldb, T* c, int64_t ldc, T alpha,
                            T beta, TileEpilogue<T> epilogue);

// y[j] = sum_p x[p] * B(p, j) for j < n, with B(p, j) = b[p * ldb + j] (rows contiguous).
template <class T>
using GemvRowsKernel = void (*)(int64_t k, int64_t n, const T* x, const T* b, int64_t ldb, T* y);

// y[j] = sum_p x[p] * B(p, j) for j < n, with B(p, j) = bt[j * ldbt + p] (columns contiguous).
template <class T>
using GemvColsKernel = void (*)(int64_t k, int64_t n, const T* x, const T* bt, int64_t ldbt, T* y);

// y[j] = sum_p x[p] * B(p, j) for j < panels * nr, B as pack_b_matrix lays it out: panel q holds
// columns q*nr .. q*nr+nr-1, its k rows of nr elements contiguous (one sequential stream).
template <class T>
using GemvPackedKernel = void (*)(int64_t k, int64_t panels, const T* x, const T* b, T* y);

// dst[d * ld + w] = x[w * ws + d] for w < width, d < depth: the packers' transposing copy.
template <class T>
using TransposeKernel = void (*)(int64_t width, int64_t depth, const T* x, int64_t ws, int64_t ld, T* dst);

// merge_tile (portable_kernels.h): C = epilogue(alpha * acc + beta * C) on an m x n block.
template <class T>
using MergeKernel = void (*)(int64_t m, int64_t n, const T* acc, int64_t ld_acc, T* c, int64_t rs_c, int64_t cs_c,
                             T alpha, T beta, const TileEpilogue<T>& ep);

// The dot-product kernel, for products whose A rows and B columns are both contiguous along K (x W^T
// of a linear layer at a small batch, col^T W^T of a small convolution block), so neither is packed:
//   out[i * ldo + j] = sum_p a[i * lda + p] * bt[j * ldb + p]   for i < rows, j < cols,
// 1 <= rows <= dot_mr, 1 <= cols <= dot_nr, k >= 0 (no sums: zeros). Each of the dot_mr x dot_nr
// sums runs in its own SIMD register along K and is reduced once at the end.
template <class T>
using DotTileKernel = void (*)(int64_t k, int rows, int cols, const T* a, int64_t lda, const T* bt, int64_t ldb, T* out,
                               int64_t ldo);

// A micro-kernel computing only the first `rows` rows of an MR x NR tile.
template <class T>
struct ShortTile {
  int rows;  // 0: no such kernel
  TileKernel<T> kernel;
};

// One ISA's kernels and the cache blocking chosen for them.
template <class T>
struct GemmKernels {
  const char* name;
  int mr, nr;          // register tile of the micro-kernel
  int64_t mc, kc, nc;  // cache blocks: A block mc x kc (L2), B block kc x nc (L3)
  TileKernel<T> tile;
  ShortTile<T> short_tiles[2];  // by rows ascending, each rows < mr; for the last row panel
  GemvRowsKernel<T> gemv_rows;
  GemvColsKernel<T> gemv_cols;
  GemvPackedKernel<T> gemv_packed;
  int dot_mr, dot_nr;  // the dot-product kernel's tile
  DotTileKernel<T> dot_tile;
  TransposeKernel<T> transpose;  // the packing routines' transposing copy
  MergeKernel<T> merge;          // edge tiles, strided C and GEMV rows into C
};

// The kernel tables, one per ISA (kernels_<isa>.cpp).
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<GemmKernels>, gemm_kernels)

}  // namespace deepkern::cpu
