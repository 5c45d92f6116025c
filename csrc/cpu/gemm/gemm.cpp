// The GEMM driver: Goto/BLIS blocking around the per-ISA micro-kernel.
//
//   for jc in N by nc:                 B block kc x nc, packed into nr-wide panels (L3)
//     for pc in K by kc:
//       for ic in M by mc:             A block mc x kc, packed into mr-tall panels (L2)
//         for jr in nc by nr:          one kc x nr B panel is reused by ...
//           for ir in mc by mr:        ... every A panel of the block
//             micro-kernel on the mr x nr tile of C
//
// kc is deep (1024 for AVX-512 float): C is read and written once per kc block, so a shallow kc
// makes large problems bound by C's memory traffic; the panels stream from L2 instead.
//
// Threads split C into a grid of blocks (rows x columns chosen from the shape) and each runs the
// loops above on its own block with its own packing buffers, so they never synchronise inside a
// call. Packing buffers are per thread, bounded by the cache blocks, and reused across calls.
// A single row or column of C goes to the GEMV kernels, and a product of few rows whose A rows and
// B columns both run along K to the dot-product kernel (gemm_dot: neither is packed); problems too
// small to share run on the calling thread alone.
#include "cpu/gemm/gemm.h"

#include <stdexcept>
#include <string>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <utility>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/isa_dispatch.h"
#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/gemm/grid.h"
#include "cpu/gemm/portable_kernels.h"

namespace deepkern::cpu {

namespace {

// GEMV: elements of y computed per chunk (16 KB of float: stays in L1 while whole rows of B
// stream through, so the prefetcher never stops at a page edge), and the matrix size from
// which it is split over threads (it is bound by memory bandwidth, so it pays early).
constexpr int64_t kGemvChunk = 4096;
constexpr int64_t kMinParallelGemv = int64_t(1) << 16;
// The deepest B panel read in place (see gemm_block): each row panel of A re-reads it from its
// strided rows. Measured (AVX-512, 1 and 2 threads): up to 256 rows, skipping the copy made
// products of 16-240 rows 5-30% faster; 512-1024 rows (a row per page, rows 4 KB apart sharing
// L1 sets) made them 10-45% slower.
constexpr int64_t kMaxInPlaceDepth = 256;
// The dot-product path (takes_dot_path), measured against the packed path (AVX-512, float, 1 and 2
// threads): up to 32 rows (A's rows are re-read once per dot_nr columns of B, at 55-70% of the FMA
// peak, where the packed kernel runs at 85-90% once B is packed: packing B costs about as much as 35
// rows of multiply-adds; 196 x 512 x 4608 ran 6.97 ms on the dot path, 4.44 ms packed, and 49 x 512 x
// 4608 1.56 against 1.42 ms, while 16 x 1024 x 4096 ran 0.96 against 1.36 ms), at least 20 times as
// deep as A has rows (each sum's reduction costs about as much as 20 steps of K), and A in L2 or A
// and B together in half an L3 (B streaming past evicts A: 196 x 4096 x 4096 on 2 threads ran 0.64x
// of the packed path).
constexpr int64_t kMaxDotRows = 32;
constexpr int64_t kDotDepthPerRow = 20;
constexpr int64_t kDotCachedBytes = int64_t(512) << 10;
constexpr int64_t kDotStreamedBytes = int64_t(16) << 20;

const IsaTables<KernelsByType<GemmKernels>> kGemmTables{generic::gemm_kernels, avx2::gemm_kernels,
                                                        avx512::gemm_kernels};

// The active ISA's kernels, for running them (recorded as the ISA gemm ran on).
template <class T>
const GemmKernels<T>& dispatched_kernels() {
  return dispatch(IsaFamily::gemm, kGemmTables).of<T>();
}

// The active ISA's kernels, for their blocking or name only (not recorded).
template <class T>
const GemmKernels<T>& active_kernels() {
  return table_for(active_isa(), kGemmTables).of<T>();
}

enum ScratchSlot { kPackA, kPackB, kTile, kSlotCount };
struct GemmScratch;  // this family's thread_scratch tag

template <class T>
T* scratch(ScratchSlot slot, int64_t count) {
  return thread_scratch<GemmScratch, kSlotCount, T>(slot, count);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class T>
struct Problem {
  int64_t m, n, k;
  T alpha;
  StridedMatrix<const T> a, b;
  T beta;
  StridedMatrix<T> c;
  GemmEpilogue<T> epilogue;
  PanelOrder order = PanelOrder::ascending;
};

// The epilogue of the tile whose first element is C(i0, j0); empty unless this is the last
// kc block of K.
template <class T>
TileEpilogue<T> tile_epilogue(const GemmEpilogue<T>& ep, int64_t i0, int64_t j0, bool last) {
  TileEpilogue<T> t;
  if (!last) return t;
  t.relu = ep.relu;
  t.axis = ep.bias_axis;
  if (ep.bias) t.bias = ep.bias + (ep.bias_axis == BiasAxis::rows ? i0 : j0);
  return t;
}

// Packs one micro-panel: dst[d * panel + w] = X(w, d) = x[w * ws + d * ds] for w < width <=
// panel, d < depth, and zero for w in [width, panel). For A, w runs over rows and d over K; for
// B, w runs over columns and d over K. Whichever stride is 1 decides the copy loop (ds == 1: the
// kernels' transposing copy).
template <class T>
void copy_to_panel(const GemmKernels<T>& kern, int64_t width, int64_t depth, const T* x, int64_t ws, int64_t ds,
                   int panel, T* dst) {
  if (ws == 1 && width <= 16) {  // a loop: a library call per row of a few elements cost more than the copy
    for (int64_t d = 0; d < depth; ++d)
      for (int64_t w = 0; w < width; ++w) dst[d * panel + w] = x[d * ds + w];
  } else if (ws == 1) {
    for (int64_t d = 0; d < depth; ++d) std::memcpy(dst + d * panel, x + d * ds, sizeof(T) * width);
  } else if (ds == 1) {
    kern.transpose(width, depth, x, ws, panel, dst);
  } else {
    for (int64_t d = 0; d < depth; ++d)
      for (int64_t w = 0; w < width; ++w) dst[d * panel + w] = x[w * ws + d * ds];
  }
}

template <class T>
void zero_panel_tail(int64_t width, int64_t depth, int panel, T* dst) {
  if (width < panel)
    for (int64_t d = 0; d < depth; ++d)
      for (int64_t w = width; w < panel; ++w) dst[d * panel + w] = T(0);
}

template <class T>
void pack_panel(const GemmKernels<T>& kern, int64_t width, int64_t depth, const T* x, int64_t ws, int64_t ds, int panel,
                T* dst) {
  copy_to_panel(kern, width, depth, x, ws, ds, panel, dst);
  zero_panel_tail(width, depth, panel, dst);
}

// Packs the mc x kc block A(i, p) = a[i * rs + p * cs] into mr-tall panels, each kc x mr
// (element (i, p) at panel[p * mr + i]), zero-padded past mc.
template <class T>
void pack_a(const GemmKernels<T>& kern, int64_t mc, int64_t kc, const T* a, int64_t rs, int64_t cs, T* dst) {
  const int mr = kern.mr;
  for (int64_t i0 = 0; i0 < mc; i0 += mr)
    pack_panel(kern, std::min<int64_t>(mr, mc - i0), kc, a + i0 * rs, rs, cs, mr, dst + i0 * kc);
}

// Packs the kc x nc block B(p, j) = b[p * rs + j * cs] into nr-wide panels, each kc x nr
// (element (p, j) at panel[p * nr + j]), zero-padded past nc.
template <class T>
void pack_b(const GemmKernels<T>& kern, int64_t kc, int64_t nc, const T* b, int64_t rs, int64_t cs, T* dst) {
  const int nr = kern.nr;
  for (int64_t j0 = 0; j0 < nc; j0 += nr)
    pack_panel(kern, std::min<int64_t>(nr, nc - j0), kc, b + j0 * cs, cs, rs, nr, dst + j0 * kc);
}

// The fastest micro-kernel covering `rows` rows of a tile: a short one for the last row panel
// when the table has one, else the full one; with the rows it computes.
template <class T>
std::pair<TileKernel<T>, int> tile_for_rows(const GemmKernels<T>& kern, int64_t rows) {
  for (const ShortTile<T>& short_tile : kern.short_tiles)
    if (short_tile.kernel && rows <= short_tile.rows) return {short_tile.kernel, short_tile.rows};
  return {kern.tile, kern.mr};
}

// Operands packed beforehand (gemm_prepacked): A's row panels over all of K (PackedA) and B's column
// panels (PackedB); null where the driver packs the operand itself.
template <class T>
struct Prepacked {
  const T* a = nullptr;
  const T* b = nullptr;
};

// The serial blocked algorithm on the block C[m0:m1, n0:n1] (see the top of this file).
// When the block's rows fit one mc block, every B panel is used by that block alone: a full panel
// at most kMaxInPlaceDepth deep of a B whose rows are contiguous is then read where it lies (the
// micro-kernel takes B's row stride; its rows are prefetched into L2 while the panel before it is
// computed, since the hardware prefetchers do not follow rows a page or more apart: a convolution's
// input planes read from memory waited on every row, 1.4x at a 1x1 256 -> 64 layer's batch of 4
// on one thread), and any other is packed just before use into an L1-sized
// buffer instead of a kc x nc block (same copy work, but the panel never leaves L1, whatever B's
// strides). While a tile computes, the lines of C the next row tile stores are prefetched for
// writing: a tile of a shallow product (K = 64, a 1x1 convolution's) otherwise waited on each line
// it stored into a fresh output (19% of a 64 -> 256 channel layer's time at batch 4).
template <class T>
void gemm_block(const GemmKernels<T>& kern, const Problem<T>& P, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                const Prepacked<T>& prepacked) {
  const T* prepacked_b = prepacked.b;
  const int mr = kern.mr, nr = kern.nr;
  const int64_t rows = m1 - m0;
  const int64_t kc_max = std::min<int64_t>(kern.kc, P.k);
  // Up to twice mc rows whose A block is no larger than a full mc x kc one make a single block: B is
  // then read per panel (see above) instead of packed whole (a 1x1 convolution of 64 -> 256 channels
  // at 56 x 56, whose B comes from memory, ran 4-10% faster; a 2000-row block of K = 64 lost 3%).
  const bool one_row_block = rows <= 2 * kern.mc && rows * kc_max <= kern.mc * kern.kc;
  const int64_t mc_block = one_row_block ? std::max<int64_t>(kern.mc, ceil_div(rows, mr) * mr) : kern.mc;
  const bool pack_b_per_panel = !prepacked_b && rows <= mc_block;
  const bool unit_c = P.c.col_stride == 1;
  const int64_t mc_max = std::min<int64_t>(mc_block, ceil_div(rows, mr) * mr);
  const int64_t nc_max = std::min<int64_t>(kern.nc, ceil_div(n1 - n0, nr) * nr);

  T* a_pack = prepacked.a ? nullptr : scratch<T>(kPackA, mc_max * kc_max);
  T* b_pack = prepacked_b ? nullptr : scratch<T>(kPackB, (pack_b_per_panel ? nr : nc_max) * kc_max);
  T* edge_tile = scratch<T>(kTile, int64_t(mr) * nr);

  const bool descending = P.order == PanelOrder::descending;
  const int64_t col_blocks = ceil_div(n1 - n0, kern.nc);
  for (int64_t block = 0; block < col_blocks; ++block) {
    const int64_t jc = n0 + (descending ? col_blocks - 1 - block : block) * kern.nc;
    const int64_t nc = std::min<int64_t>(kern.nc, n1 - jc), col_panels = ceil_div(nc, nr);
    for (int64_t pc = 0; pc < P.k; pc += kern.kc) {
      const int64_t kc = std::min<int64_t>(kern.kc, P.k - pc);
      const T beta = pc == 0 ? P.beta : T(1);
      const bool last = pc + kc == P.k;
      const T* b_block = P.b.data + pc * P.b.row_stride + jc * P.b.col_stride;
      if (!prepacked_b && !pack_b_per_panel) pack_b(kern, kc, nc, b_block, P.b.row_stride, P.b.col_stride, b_pack);

      // A full panel of B (its nr columns from jr) is read where it lies (see above).
      auto reads_b_in_place = [&](int64_t jr) {
        return pack_b_per_panel && jr + nr <= nc && P.b.col_stride == 1 && kc <= kMaxInPlaceDepth;
      };
      for (int64_t ic = m0; ic < m1; ic += mc_block) {
        const int64_t mc = std::min<int64_t>(mc_block, m1 - ic);
        if (!prepacked.a)
          pack_a(kern, mc, kc, P.a.data + ic * P.a.row_stride + pc * P.a.col_stride, P.a.row_stride, P.a.col_stride,
                 a_pack);
        for (int64_t panel = 0; panel < col_panels; ++panel) {
          const int64_t jr = (descending ? col_panels - 1 - panel : panel) * nr;
          const int64_t ncols = std::min<int64_t>(nr, nc - jr);
          const T* b_panel = b_pack + jr * kc;
          int64_t ldb = nr;
          if (prepacked_b) {  // panel (jc + jr) / nr, rows from pc (jc and jr are multiples of nr)
            b_panel = prepacked_b + (jc + jr) / nr * P.k * nr + pc * nr;
          } else if (reads_b_in_place(jr)) {
            b_panel = b_block + jr;
            ldb = P.b.row_stride;
          } else if (pack_b_per_panel) {
            pack_b(kern, kc, ncols, b_block + jr * P.b.col_stride, P.b.row_stride, P.b.col_stride, b_pack);
            b_panel = b_pack;
          }
          const int64_t next_jr = (descending ? col_panels - 2 - panel : panel + 1) * nr;
          const bool prefetch_next = panel + 1 < col_panels && reads_b_in_place(next_jr);
          for (int64_t ir = 0; ir < mc; ir += mr) {
            if (prefetch_next) {  // this row tile's share of the next panel's rows
              const int64_t share_begin = kc * ir / mc, share_end = kc * std::min(ir + mr, mc) / mc;
              for (int64_t p = share_begin; p < share_end; ++p)
                for (int64_t line = 0; line < nr + kCacheLineElements<T> - 1; line += kCacheLineElements<T>)
                  __builtin_prefetch(b_block + next_jr + p * P.b.row_stride + std::min<int64_t>(line, nr - 1), 0, 2);
            }
            const int64_t nrows = std::min<int64_t>(mr, mc - ir);
            const int64_t i = ic + ir, j = jc + jr;
            T* c_tile = P.c.data + i * P.c.row_stride + j * P.c.col_stride;
            if (unit_c && last)  // the next row tile's lines of C, for writing (see above)
              for (int64_t row = nrows; row < std::min<int64_t>(2 * mr, mc - ir); ++row)
                for (int64_t line = 0; line < ncols; line += kCacheLineElements<T>)
                  __builtin_prefetch(c_tile + row * P.c.row_stride + line, 1, 3);
            const TileEpilogue<T> ep = tile_epilogue(P.epilogue, i, j, last);
            // Row panel (ic + ir) / mr from row pc when prepacked (ic and ir are multiples of mr).
            const T* a_panel = prepacked.a ? prepacked.a + (ic + ir) / mr * P.k * mr + pc * mr : a_pack + ir * kc;
            const auto [kernel, kernel_rows] = tile_for_rows(kern, nrows);
            if (nrows == kernel_rows && ncols == nr && unit_c) {
              kernel(kc, a_panel, b_panel, ldb, c_tile, P.c.row_stride, P.alpha, beta, ep);
            } else {
              kernel(kc, a_panel, b_panel, ldb, edge_tile, nr, T(1), T(0), TileEpilogue<T>{});
              kern.merge(nrows, ncols, edge_tile, nr, c_tile, P.c.row_stride, P.c.col_stride, P.alpha, beta, ep);
            }
          }
        }
      }
    }
  }
}

// Splits C over `threads` threads as a grid of blocks, choosing the grid that minimises the
// busiest thread's estimated cycles (multiply-adds at full SIMD width plus packing).
template <class T>
void gemm_parallel(const GemmKernels<T>& kern, const Problem<T>& P, int threads, const Prepacked<T>& prepacked = {}) {
  const int64_t row_panels = ceil_div(P.m, kern.mr), col_panels = ceil_div(P.n, kern.nr);
  threads = static_cast<int>(std::min<int64_t>(threads, row_panels * col_panels));
  if (threads <= 1) {
    gemm_block(kern, P, 0, P.m, 0, P.n, prepacked);
    return;
  }
  run_on_grid(P.m, P.n, choose_gemm_grid(P.m, P.n, P.k, kern.mr, kern.nr, threads),
              [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { gemm_block(kern, P, m0, m1, n0, n1, prepacked); });
}

// The row x of a GEMV as a contiguous vector: in place, or gathered into `storage`.
template <class T>
const T* contiguous_row(const Problem<T>& P, std::vector<T>& storage) {
  if (P.a.col_stride == 1) return P.a.data;
  storage.resize(static_cast<size_t>(P.k));
  for (int64_t p = 0; p < P.k; ++p) storage[p] = P.a.data[p * P.a.col_stride];
  return storage.data();
}

// The driver of both GEMVs: y = x B for a single row of C, its columns split over threads in
// runs of whole `unit`s (64 columns, or B's packed panels) and each run computed in L1-sized chunks
// by product(x, j0, columns, y), then merged into C.
template <class T, class Product>
void gemv_split(const GemmKernels<T>& kern, const Problem<T>& P, int threads, int64_t unit, Product product) {
  std::vector<T> x_storage;
  const T* x = contiguous_row(P, x_storage);
  if (P.n * P.k < kMinParallelGemv) threads = 1;
  threads = static_cast<int>(std::min<int64_t>(threads, ceil_div(P.n, unit)));
  const int64_t per_thread = ceil_div(ceil_div(P.n, unit), threads) * unit, chunk = kGemvChunk / unit * unit;
  run_on_threads(threads, [&](int t) {
    T* y = scratch<T>(kTile, kGemvChunk);
    const int64_t end = std::min(P.n, (t + 1) * per_thread);
    for (int64_t j0 = t * per_thread; j0 < end; j0 += chunk) {
      const int64_t nj = std::min(chunk, end - j0);
      product(x, j0, nj, y);
      kern.merge(int64_t(1), nj, y, nj, P.c.data + j0 * P.c.col_stride, P.c.row_stride, P.c.col_stride, P.alpha, P.beta,
                 tile_epilogue(P.epilogue, 0, j0, true));
    }
  });
}

// C is a single row (m == 1): y = x B with the GEMV kernels, when B has a unit stride.
// Returns false (nothing done) when it has none.
template <class T>
bool gemv(const GemmKernels<T>& kern, const Problem<T>& P, int threads) {
  const bool rows_contiguous = P.b.col_stride == 1;
  if (!rows_contiguous && P.b.row_stride != 1) return false;
  gemv_split(kern, P, threads, 64, [&](const T* x, int64_t j0, int64_t nj, T* y) {
    if (rows_contiguous)
      kern.gemv_rows(P.k, nj, x, P.b.data + j0, P.b.row_stride, y);
    else
      kern.gemv_cols(P.k, nj, x, P.b.data + j0 * P.b.col_stride, P.b.col_stride, y);
  });
  return true;
}

// A single row against packed B (gemm_prepacked with m == 1): the packed GEMV kernel reads each
// panel front to back; threads take runs of whole panels.
template <class T>
void gemv_prepacked(const GemmKernels<T>& kern, const Problem<T>& P, const PackedB<T>& b, int threads) {
  gemv_split(kern, P, threads, b.nr, [&](const T* x, int64_t j0, int64_t nj, T* y) {
    kern.gemv_packed(P.k, ceil_div(nj, b.nr), x, b.panels + j0 * P.k, y);
  });
}

// True when the dot-product kernel computes an m x n x k product whose A rows and B columns are
// contiguous along K, so that neither is packed (packing the transposed operand, the weights of
// x W^T, cost more than the multiply-adds of few rows: 4 x 4096 x 4096 ran 3x faster, 64 x 512 x 4608
// 1.2x): the limits above; one row or column of C is a GEMV's.
template <class T>
bool dot_path_fits(const GemmKernels<T>& kern, int64_t m, int64_t n, int64_t k) {
  const int64_t a_bytes = m * k * int64_t(sizeof(T)), b_bytes = n * k * int64_t(sizeof(T));
  return kern.dot_tile && m > 1 && n > 1 && m <= kMaxDotRows && m * kDotDepthPerRow <= k &&
         (a_bytes <= kDotCachedBytes || a_bytes + b_bytes <= kDotStreamedBytes);
}

template <class T>
bool takes_dot_path(const GemmKernels<T>& kern, const Problem<T>& P) {
  return P.a.col_stride == 1 && P.b.row_stride == 1 && dot_path_fits(kern, P.m, P.n, P.k);
}

// C = epilogue(alpha * A B + beta * C) with the dot-product kernel: threads take runs of whole
// dot_nr-column tiles, and each tile of B's columns (dot_nr x K, read in place: it stays in L2)
// meets every dot_mr-row tile of A in turn (all of A, re-read from L2 or L3 per column tile).
template <class T>
void gemm_dot(const GemmKernels<T>& kern, const Problem<T>& P, int threads) {
  const int64_t col_tiles = ceil_div(P.n, kern.dot_nr);
  if (P.m * P.n * P.k < kMinParallelMacs) threads = 1;
  threads = static_cast<int>(std::min<int64_t>(threads, col_tiles));
  const int64_t rs = P.c.row_stride, cs = P.c.col_stride;
  // The sums are C itself (written by the kernel, no merge) when nothing is added to or applied on them.
  const bool sums_are_c = P.alpha == T(1) && P.beta == T(0) && !P.epilogue.bias && !P.epilogue.relu && cs == 1;
  run_on_threads(threads, [&](int t) {
    T* tile = scratch<T>(kTile, int64_t(kern.dot_mr) * kern.dot_nr);
    for (int64_t q = col_tiles * t / threads; q < col_tiles * (t + 1) / threads; ++q) {
      const int64_t j = q * kern.dot_nr;
      const int cols = static_cast<int>(std::min<int64_t>(kern.dot_nr, P.n - j));
      for (int64_t i = 0; i < P.m; i += kern.dot_mr) {
        const int rows = static_cast<int>(std::min<int64_t>(kern.dot_mr, P.m - i));
        const T* a = P.a.data + i * P.a.row_stride;
        const T* b = P.b.data + j * P.b.col_stride;
        if (sums_are_c) {
          kern.dot_tile(P.k, rows, cols, a, P.a.row_stride, b, P.b.col_stride, P.c.data + i * rs + j, rs);
          continue;
        }
        kern.dot_tile(P.k, rows, cols, a, P.a.row_stride, b, P.b.col_stride, tile, kern.dot_nr);
        kern.merge(rows, cols, tile, kern.dot_nr, P.c.data + i * rs + j * cs, rs, cs, P.alpha, P.beta,
                   tile_epilogue(P.epilogue, i, j, true));
      }
    }
  });
}

// k == 0: C = epilogue(beta * C), as NumPy's empty sum gives zeros.
template <class T>
void gemm_empty_k(const Problem<T>& P) {
  const std::vector<T> zeros(static_cast<size_t>(P.n), T(0));
  merge_tile(P.m, P.n, zeros.data(), int64_t(0), P.c.data, P.c.row_stride, P.c.col_stride, T(1), P.beta,
             tile_epilogue(P.epilogue, 0, 0, true));
}

std::atomic<const char*> last_path{""};

template <class T>
void run_gemm(Problem<T> P, int threads) {
  if (P.m == 0 || P.n == 0) return;
  const GemmKernels<T>& kern = dispatched_kernels<T>();
  if (takes_dot_path(kern, P)) {  // any C layout: the tiles are merged into it
    last_path.store("dot", std::memory_order_relaxed);
    return gemm_dot(kern, P, threads);
  }
  // Column-major C: compute its transpose, which is row-major, so the tiles store whole rows; and a
  // narrow C with a transposed A as C^T (grid.h).
  const bool narrow = pads_less_transposed(P, kern.mr, kern.nr);
  if ((P.c.col_stride != 1 && P.c.row_stride == 1) || narrow) P = transposed(P);
  if (P.k == 0) return gemm_empty_k(P);
  last_path.store("gemv", std::memory_order_relaxed);
  if (P.m == 1 && gemv(kern, P, threads)) return;
  if (P.n == 1 && gemv(kern, transposed(P), threads)) return;
  last_path.store(narrow ? "transposed blocked" : "blocked", std::memory_order_relaxed);
  gemm_parallel(kern, P, P.m * P.n * P.k < kMinParallelMacs ? 1 : threads);
}

}  // namespace

template <class T>
void gemm(int64_t m, int64_t n, int64_t k, T alpha, StridedMatrix<const T> a, StridedMatrix<const T> b, T beta,
          StridedMatrix<T> c, const GemmEpilogue<T>& epilogue, int threads) {
  run_gemm(Problem<T>{m, n, k, alpha, a, b, beta, c, epilogue}, threads > 0 ? threads : num_threads());
}

template <class T>
void gemm_batched(int64_t batch, const int64_t* a_offsets, const int64_t* b_offsets, const int64_t* c_offsets,
                  int64_t m, int64_t n, int64_t k, T alpha, StridedMatrix<const T> a, StridedMatrix<const T> b, T beta,
                  StridedMatrix<T> c, const GemmEpilogue<T>& epilogue) {
  run_batch(batch, a_offsets, b_offsets, c_offsets, Problem<T>{m, n, k, alpha, a, b, beta, c, epilogue},
            [](const Problem<T>& P, int threads) { run_gemm(P, threads); });
}

template <class T>
int64_t packed_b_size(int64_t k, int64_t n) {
  const int nr = active_kernels<T>().nr;
  return ceil_div(n, nr) * nr * k;
}

template <class T>
PackedB<T> pack_b_groups(int64_t k, int64_t n, int groups, int64_t group_offset, StridedMatrix<const T> b, T* panels) {
  const GemmKernels<T>& kern = dispatched_kernels<T>();
  const int nr = kern.nr;
  const int64_t total = groups * n;
  for (int64_t j0 = 0; j0 < total; j0 += nr) {  // one panel, filled from as many groups as it spans
    T* dst = panels + j0 * k;
    int64_t filled = 0;
    while (filled < nr && j0 + filled < total) {
      const int64_t j = j0 + filled, within = j % n;
      const int64_t run = std::min<int64_t>(nr - filled, n - within);
      copy_to_panel(kern, run, k, b.data + j / n * group_offset + within * b.col_stride, b.col_stride, b.row_stride, nr,
                    dst + filled);
      filled += run;
    }
    zero_panel_tail(filled, k, nr, dst);
  }
  return {k, total, nr, kern.name, panels};
}

template <class T>
PackedB<T> packed_b_layout(int64_t k, int64_t n, const T* panels) {
  const GemmKernels<T>& kern = active_kernels<T>();
  return {k, n, kern.nr, kern.name, panels};
}

template <class T>
int packed_b_width() {
  return active_kernels<T>().nr;
}

template <class T>
PackedB<T> pack_b_matrix(int64_t k, int64_t n, StridedMatrix<const T> b, T* panels) {
  return pack_b_groups(k, n, 1, 0, b, panels);
}

namespace {

// Both gemm_prepacked: P on B's packed panels and, when a_panels is not null, A's (PackedA).
template <class T>
void run_on_packed_b(const GemmKernels<T>& kern, const Problem<T>& P, const PackedB<T>& b, const T* a_panels,
                     int threads) {
  if (P.m == 0 || P.n == 0) return;
  if (P.k == 0) return gemm_empty_k(P);
  if (threads <= 0) threads = num_threads();
  if (P.m == 1) return gemv_prepacked(kern, P, b, threads);
  gemm_parallel(kern, P, P.m * P.n * P.k < kMinParallelMacs ? 1 : threads, {a_panels, b.panels});
}

}  // namespace

template <class T>
void gemm_prepacked(int64_t m, T alpha, StridedMatrix<const T> a, const PackedB<T>& b, T beta, StridedMatrix<T> c,
                    const GemmEpilogue<T>& epilogue, int threads, PanelOrder order) {
  const GemmKernels<T>& kern = dispatched_kernels<T>();
  if (kern.name != b.kernel) throw std::runtime_error("gemm_prepacked: B was packed for another kernel ISA");
  run_on_packed_b<T>(kern, {m, b.n, b.k, alpha, a, {nullptr, 0, 0}, beta, c, epilogue, order}, b, nullptr, threads);
}

template <class T>
int packed_a_height() {
  return active_kernels<T>().mr;
}

template <class T>
int64_t packed_a_size(int64_t m, int64_t k) {
  const int mr = active_kernels<T>().mr;
  return ceil_div(m, mr) * mr * k;
}

template <class T>
PackedA<T> pack_a_matrix(int64_t m, int64_t k, StridedMatrix<const T> a, T* panels) {
  const GemmKernels<T>& kern = dispatched_kernels<T>();
  pack_a(kern, m, k, a.data, a.row_stride, a.col_stride, panels);
  return {m, k, kern.mr, kern.name, panels};
}

template <class T>
PackedA<T> packed_a_layout(int64_t m, int64_t k, const T* panels) {
  const GemmKernels<T>& kern = active_kernels<T>();
  return {m, k, kern.mr, kern.name, panels};
}

template <class T>
void gemm_prepacked(const PackedA<T>& a, T alpha, const PackedB<T>& b, T beta, StridedMatrix<T> c,
                    const GemmEpilogue<T>& epilogue, int threads) {
  const GemmKernels<T>& kern = dispatched_kernels<T>();
  if (kern.name != a.kernel || kern.name != b.kernel)
    throw std::runtime_error("gemm_prepacked: A or B was packed for another kernel ISA");
  if (a.k != b.k)
    throw std::invalid_argument("gemm_prepacked: A's depth " + std::to_string(a.k) + " differs from B's " +
                                std::to_string(b.k));
  // Rows up to mr of the panels are a strided A (element (i, p) at p * mr + i), which the GEMV reads.
  run_on_packed_b<T>(kern, {a.m, b.n, b.k, alpha, {a.panels, 1, a.mr}, {nullptr, 0, 0}, beta, c, epilogue}, b, a.panels,
                     threads);
}

template <class T>
bool gemm_takes_dot_path(int64_t m, int64_t n, int64_t k) {
  return dot_path_fits(active_kernels<T>(), m, n, k);
}

const char* last_gemm_path() { return last_path.load(std::memory_order_relaxed); }

const char* gemm_kernel_name(bool double_precision) {
  return double_precision ? active_kernels<double>().name : active_kernels<float>().name;
}

template void gemm<float>(int64_t, int64_t, int64_t, float, StridedMatrix<const float>, StridedMatrix<const float>,
                          float, StridedMatrix<float>, const GemmEpilogue<float>&, int);
template void gemm<double>(int64_t, int64_t, int64_t, double, StridedMatrix<const double>, StridedMatrix<const double>,
                           double, StridedMatrix<double>, const GemmEpilogue<double>&, int);
template int64_t packed_b_size<float>(int64_t, int64_t);
template int64_t packed_b_size<double>(int64_t, int64_t);
template PackedB<float> packed_b_layout<float>(int64_t, int64_t, const float*);
template PackedB<double> packed_b_layout<double>(int64_t, int64_t, const double*);
template PackedB<float> pack_b_matrix<float>(int64_t, int64_t, StridedMatrix<const float>, float*);
template PackedB<double> pack_b_matrix<double>(int64_t, int64_t, StridedMatrix<const double>, double*);
template PackedB<float> pack_b_groups<float>(int64_t, int64_t, int, int64_t, StridedMatrix<const float>, float*);
template PackedB<double> pack_b_groups<double>(int64_t, int64_t, int, int64_t, StridedMatrix<const double>, double*);
template void gemm_prepacked<float>(int64_t, float, StridedMatrix<const float>, const PackedB<float>&, float,
                                    StridedMatrix<float>, const GemmEpilogue<float>&, int, PanelOrder);
template void gemm_prepacked<double>(int64_t, double, StridedMatrix<const double>, const PackedB<double>&, double,
                                     StridedMatrix<double>, const GemmEpilogue<double>&, int, PanelOrder);
template int packed_a_height<float>();
template int packed_a_height<double>();
template int64_t packed_a_size<float>(int64_t, int64_t);
template int64_t packed_a_size<double>(int64_t, int64_t);
template PackedA<float> pack_a_matrix<float>(int64_t, int64_t, StridedMatrix<const float>, float*);
template PackedA<double> pack_a_matrix<double>(int64_t, int64_t, StridedMatrix<const double>, double*);
template PackedA<float> packed_a_layout<float>(int64_t, int64_t, const float*);
template PackedA<double> packed_a_layout<double>(int64_t, int64_t, const double*);
template void gemm_prepacked<float>(const PackedA<float>&, float, const PackedB<float>&, float, StridedMatrix<float>,
                                    const GemmEpilogue<float>&, int);
template void gemm_prepacked<double>(const PackedA<double>&, double, const PackedB<double>&, double,
                                     StridedMatrix<double>, const GemmEpilogue<double>&, int);
template int packed_b_width<float>();
template int packed_b_width<double>();
template bool gemm_takes_dot_path<float>(int64_t, int64_t, int64_t);
template bool gemm_takes_dot_path<double>(int64_t, int64_t, int64_t);
template void gemm_batched<float>(int64_t, const int64_t*, const int64_t*, const int64_t*, int64_t, int64_t, int64_t,
                                  float, StridedMatrix<const float>, StridedMatrix<const float>, float,
                                  StridedMatrix<float>, const GemmEpilogue<float>&);
template void gemm_batched<double>(int64_t, const int64_t*, const int64_t*, const int64_t*, int64_t, int64_t, int64_t,
                                   double, StridedMatrix<const double>, StridedMatrix<const double>, double,
                                   StridedMatrix<double>, const GemmEpilogue<double>&);

}  // namespace deepkern::cpu
