// The bfloat16 GEMM driver: blocking, packing and threads around the tier's micro-kernel.
//
//   for jc in N by nc:               B (all of K) x nc packed once into nr-wide VNNI-pair panels
//     for ic in M by mc:             an mc x nc float32 accumulator block (L2), zeroed
//       for pc in K by kc:           A block mc x kc packed into mr-row panels (L2)
//         for jr, ir:                tile: acc(ir, jr) += A panel @ B panel rows pc .. pc+kc
//       merge: C = epilogue(alpha * acc + beta * C), rounded to C's type once
//
// A single row of C against row-contiguous B skips the packing: a GEMV streams B (gemv below).
//
// Threads split C into a grid of blocks (grid.h), each with its own packing buffers and
// accumulators, as in the float32 GEMM.
#include "cpu/gemm_bf16/gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "core/isa_dispatch.h"
#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/cast/bf16_bits.h"
#include "cpu/gemm/grid.h"
#include "cpu/gemm_bf16/kernels.h"
#include "cpu/roofline/roofline.h"

namespace deepkern::cpu {
namespace {

// The tables of the three tiers: the ISA picks one; avx512 runs VDPBF16PS where the CPU has it.
IsaTables<Bf16GemmKernels> bf16_tables() {
#if DEEPKERN_X86
  const Bf16GemmKernels& avx512_tier = cpu_has_avx512_bf16() ? avx512::gemm_bf16_dpbf16 : avx512::gemm_bf16_emulated;
  return {generic::gemm_bf16_emulated, avx2::gemm_bf16_emulated, avx512_tier, &avx512::gemm_bf16_amx};
#else
  return {generic::gemm_bf16_emulated, avx2::gemm_bf16_emulated, avx512::gemm_bf16_emulated};
#endif
}

enum ScratchSlot { kPackA, kPackB, kAcc, kSlotCount };
struct GemmBf16Scratch;  // this family's thread_scratch tag

template <class T>
T* scratch(ScratchSlot slot, int64_t count) {
  return thread_scratch<GemmBf16Scratch, kSlotCount, T>(slot, count);
}

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

float to_float(float x) { return x; }
float to_float(bf16 x) { return bf16_bits_to_float(x.bits); }

template <class OutT>
struct Problem {
  int64_t m, n, k;
  float alpha;
  StridedMatrix<const bf16> a, b;
  float beta;
  StridedMatrix<OutT> c;
  GemmEpilogue<OutT> epilogue;
  const Bf16PanelWriter* b_writer = nullptr;  // B's panels come from here rather than from b
};

// Packs A(i0 + i, p0 + p) for i < rows, p < depth into mr-row panels of kp columns (the layout of
// kernels.h), zero past rows (up to whole panels) and past depth.
void pack_a(const Bf16GemmKernels& kern, const StridedMatrix<const bf16>& a, int64_t i0, int64_t rows, int64_t p0,
            int64_t depth, int64_t kp, bf16* dst) {
  const int64_t padded_rows = round_up(rows, kern.mr);
  if (kp > depth)  // the zero columns past depth, then the zero rows past rows
    for (int64_t i = 0; i < rows; ++i) std::fill(dst + i * kp + depth, dst + (i + 1) * kp, bf16{0});
  std::fill(dst + rows * kp, dst + padded_rows * kp, bf16{0});
  const bf16* base = a.data + i0 * a.row_stride + p0 * a.col_stride;
  // Panels of mr rows of kp follow each other: row i is at dst + i * kp.
  if (a.col_stride != 1 && a.row_stride == 1 && kern.transpose_a)
    return kern.transpose_a(base, a.col_stride, rows, depth, kp, dst);
  if (a.col_stride != 1 && a.row_stride == 1) {   // a transposed A: blocks of 32 of its contiguous columns
    for (int64_t pb = 0; pb < depth; pb += 32) {  // (32 bfloat16: one cache line of each packed row)
      const int64_t pe = std::min<int64_t>(depth, pb + 32);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t p = pb; p < pe; ++p) dst[i * kp + p] = base[p * a.col_stride + i];
    }
    return;
  }
  for (int64_t i = 0; i < rows; ++i) {
    bf16* row = dst + i * kp;
    if (a.col_stride == 1)
      std::memcpy(static_cast<void*>(row), base + i * a.row_stride, sizeof(bf16) * depth);
    else
      for (int64_t p = 0; p < depth; ++p) row[p] = base[i * a.row_stride + p * a.col_stride];
  }
}

// dst[2 * j] = r0[j], dst[2 * j + 1] = r1[j] for j < width: one VNNI pair row of B, built as 32-bit
// words from the bits of the two rows (a loop the compiler vectorizes).
void interleave_rows(const bf16* r0, const bf16* r1, int64_t width, bf16* dst) {
  static_assert(sizeof(bf16) == sizeof(uint16_t));
  const auto* __restrict lo = reinterpret_cast<const uint16_t*>(r0);
  const auto* __restrict hi = reinterpret_cast<const uint16_t*>(r1);
  auto* __restrict out = reinterpret_cast<unsigned char*>(dst);
  for (int64_t j = 0; j < width; ++j) {
    const uint32_t word = uint32_t(lo[j]) | uint32_t(hi[j]) << 16;
    std::memcpy(out + 4 * j, &word, sizeof word);
  }
}

// Packs B(p, j) for p < k, j < cols (column j starts at column_at(j), its rows rs apart) into
// nr-wide panels of kp / 2 VNNI pair rows (kernels.h), panel q at dst + q * kp * nr, zero past k and
// past cols. column_stride: the distance between consecutive columns where it is the same for all
// (0 where it is not); 1 makes the rows contiguous.
template <class ColumnAt>
void pack_b_panels(const Bf16GemmKernels& kern, int64_t k, int64_t cols, int64_t kp, int64_t rs, int64_t column_stride,
                   const ColumnAt& column_at, bf16* dst) {
  const int nr = kern.nr;
  const bool adjacent = column_stride == 1;
  const int64_t panels = (cols + nr - 1) / nr, full_rows = k / 2 * 2;
  if (cols % nr != 0 || kp != full_rows)  // zero padding somewhere: clear it all first
    std::memset(static_cast<void*>(dst), 0, sizeof(bf16) * panels * kp * nr);
  if (adjacent) {  // rows contiguous: two rows at a time, across every panel (each row read in order)
    const bf16* src = column_at(0);
    for (int64_t p = 0; p < full_rows; p += 2) {
      if (kern.pair_rows) {
        kern.pair_rows(src + p * rs, src + (p + 1) * rs, cols, kp * nr, dst + p * nr);
        continue;
      }
      for (int64_t j0 = 0; j0 < cols; j0 += nr)
        interleave_rows(src + p * rs + j0, src + (p + 1) * rs + j0, std::min<int64_t>(nr, cols - j0),
                        dst + j0 * kp + p * nr);
    }
  }
  for (int64_t panel = 0; panel < panels; ++panel) {
    const int64_t j0 = panel * nr, width = std::min<int64_t>(nr, cols - j0);
    bf16* pairs = dst + panel * kp * nr;  // B(p, j) at pairs[p / 2 * 2 * nr + 2 * j + p % 2]
    // A transposed B (its K values next to each other, a pair one 32-bit word) with evenly spaced
    // columns: the tier's word transposes where it has them.
    const bool transposes = !adjacent && rs == 1 && column_stride > 0 && kern.transpose_b;
    if (transposes) kern.transpose_b(column_at(j0), column_stride, width, full_rows / 2, pairs);
    // Else down each column, 64 K values at a time, so that the pair rows written stay in L1.
    for (int64_t pb = 0; !adjacent && !transposes && pb < full_rows; pb += 64)
      for (int64_t j = 0; j < width; ++j) {
        const bf16* col = column_at(j0 + j);
        for (int64_t p = pb; p < std::min(full_rows, pb + 64); p += 2) {
          bf16* d = pairs + p * nr + 2 * j;
          if (rs == 1) {
            std::memcpy(static_cast<void*>(d), col + p, 2 * sizeof(bf16));
          } else {
            d[0] = col[p * rs];
            d[1] = col[(p + 1) * rs];
          }
        }
      }
    if (full_rows < k)  // odd k: the last row, its pair partner left zero
      for (int64_t j = 0; j < width; ++j) pairs[full_rows * nr + 2 * j] = column_at(j0 + j)[full_rows * rs];
  }
}

// pack_b_panels of B's columns j0 .. j0 + cols.
void pack_b(const Bf16GemmKernels& kern, const StridedMatrix<const bf16>& b, int64_t k, int64_t j0, int64_t cols,
            int64_t kp, bf16* dst) {
  const auto column_at = [&](int64_t j) { return b.data + (j0 + j) * b.col_stride; };
  pack_b_panels(kern, k, cols, kp, b.row_stride, b.col_stride, column_at, dst);
}

// C(i0 + i, j0 + j) = epilogue(alpha * acc(i, j) + beta * C) for i < rows, j < cols, a row at a
// time by the ISA's merge rows (kernels.h).
template <class OutT>
void merge(const Problem<OutT>& P, const float* acc, int64_t ldacc, int64_t i0, int64_t rows, int64_t j0,
           int64_t cols) {
  const Bf16MergeKernels& kern =
      table_for(active_isa(), IsaTables{generic::gemm_bf16_merge, avx2::gemm_bf16_merge, avx512::gemm_bf16_merge});
  const GemmEpilogue<OutT>& ep = P.epilogue;
  const OutT* col_bias = ep.bias && ep.bias_axis == BiasAxis::cols ? ep.bias + j0 : nullptr;
  for (int64_t i = 0; i < rows; ++i) {
    const Bf16MergeRow<OutT> row{
        .acc = acc + i * ldacc,
        .n = cols,
        .alpha = P.alpha,
        .beta = P.beta,
        .row_bias = ep.bias && ep.bias_axis == BiasAxis::rows ? to_float(ep.bias[i0 + i]) : 0.0f,
        .col_bias = col_bias,
        .relu = ep.relu,
        .dst = P.c.data + (i0 + i) * P.c.row_stride + j0 * P.c.col_stride,
        .stride = P.c.col_stride};
    if constexpr (std::is_same_v<OutT, float>)
      kern.to_float(row);
    else
      kern.to_bf16(row);
  }
}

// The depth of the blocks of K: K split into equal blocks (a multiple of k_align) of at most kc, so
// that a K a little over kc is not left a thin last block.
int64_t k_block(const Bf16GemmKernels& kern, int64_t k) {
  const int64_t blocks = std::max<int64_t>(1, (k + kern.kc - 1) / kern.kc);
  return round_up((k + blocks - 1) / blocks, kern.k_align);
}

// Whether all of A's `rows` rows are packed at once (at most 2 MB of them), to serve every block of
// columns, rather than one block of mc rows and one block of K at a time for each.
bool whole_a(const Bf16GemmKernels& kern, int64_t rows, int64_t k_padded) {
  return round_up(rows, kern.mr) * k_padded <= (int64_t(1) << 20);
}

// C[m0:m1, jc:jc+nc] of the blocked algorithm, B's columns from jc already packed at b_pack (all of
// K, k_padded rows), with the calling thread's A packing buffer and accumulators. a_whole: a_pack
// holds all of A's rows m0:m1 (whole_a), block (ic, pc) at (ic - m0) * k_padded + pc * (its rows
// rounded up to mr), already packed for an earlier jc where a_packed.
template <class OutT>
void multiply_packed(const Bf16GemmKernels& kern, const Problem<OutT>& P, const bf16* b_pack, int64_t k_padded,
                     int64_t m0, int64_t m1, int64_t jc, int64_t nc, bf16* a_pack, float* acc, bool a_whole,
                     bool a_packed) {
  const int mr = kern.mr, nr = kern.nr;
  const int64_t col_panels = (nc + nr - 1) / nr, ldacc = col_panels * nr;
  const int64_t k_step = k_block(kern, P.k);
  // A tier with strip kernels reads A in place where its rows are contiguous (the strip taking any
  // last rows short of a panel, an odd depth paired with B's zero row by the kernels).
  const bool a_in_place = kern.strip && P.a.col_stride == 1;
  for (int64_t ic = m0; ic < m1; ic += kern.mc) {
    const int64_t mc = std::min<int64_t>(kern.mc, m1 - ic), row_panels = (mc + mr - 1) / mr;
    // A last panel of fewer than mr rows goes through the tier's strip kernel where it has one.
    const int64_t tail_rows = kern.strip ? mc % mr : 0, tiles_down = row_panels - (tail_rows != 0);
    std::fill(acc, acc + row_panels * mr * ldacc, 0.0f);
    for (int64_t pc = 0; pc < P.k; pc += k_step) {
      const int64_t kc = std::min<int64_t>(k_step, P.k - pc), kp = round_up(kc, kern.k_align);
      bf16* packed = a_pack + (a_whole ? (ic - m0) * k_padded + pc * row_panels * mr : 0);
      const bf16* a_block = a_in_place ? P.a.data + ic * P.a.row_stride + pc : packed;
      const int64_t lda = a_in_place ? P.a.row_stride : kp, depth = a_in_place ? kc : kp;
      if (!a_in_place && !a_packed) pack_a(kern, P.a, ic, mc, pc, kc, kp, packed);
      for (int64_t jr = 0; jr < col_panels; ++jr) {
        const bf16* b_panel = b_pack + jr * k_padded * nr + pc * nr;  // pair row pc / 2
        for (int64_t ir = 0; ir < tiles_down; ++ir)
          kern.tile(depth, a_block + ir * mr * lda, lda, b_panel, acc + ir * mr * ldacc + jr * nr, ldacc);
      }
      if (tail_rows)
        kern.strip(static_cast<int>(tail_rows), {.k = depth,
                                                 .a = a_block + tiles_down * mr * lda,
                                                 .lda = lda,
                                                 .b = b_pack + pc * nr,
                                                 .panel_stride = k_padded * nr,
                                                 .c = acc + tiles_down * mr * ldacc,
                                                 .ldc = ldacc,
                                                 .cols = ldacc,
                                                 .bias = nullptr,
                                                 .accumulate = true});
    }
    merge(P, acc, ldacc, ic, mc, jc, nc);
  }
}

// The calling thread's A packing buffer (all `rows` rows where a_whole) and accumulators for blocks
// of up to `rows` x `cols` of C (cols at most nc: the width of a block of columns).
std::pair<bf16*, float*> block_buffers(const Bf16GemmKernels& kern, int64_t k_padded, int64_t rows, int64_t cols,
                                       int64_t nc, bool a_whole) {
  const int64_t nc_max = std::min<int64_t>(nc, round_up(cols, kern.nr));
  const int64_t mc_max = std::min<int64_t>(kern.mc, round_up(rows, kern.mr));
  const int64_t a_size = a_whole ? round_up(rows, kern.mr) * k_padded : mc_max * std::min<int64_t>(kern.kc, k_padded);
  return {scratch<bf16>(kPackA, a_size), scratch<float>(kAcc, mc_max * nc_max)};
}

// The blocked algorithm (top of this file) on C[m0:m1, n0:n1], on the calling thread.
template <class OutT>
void gemm_block(const Bf16GemmKernels& kern, const Problem<OutT>& P, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k_padded = round_up(P.k, kern.k_align);
  bf16* b_pack = scratch<bf16>(kPackB, std::min<int64_t>(kern.nc, round_up(n1 - n0, kern.nr)) * k_padded);
  const bool a_whole = whole_a(kern, m1 - m0, k_padded);
  const auto [a_pack, acc] = block_buffers(kern, k_padded, m1 - m0, n1 - n0, kern.nc, a_whole);
  if (kern.begin) kern.begin();
  for (int64_t jc = n0; jc < n1; jc += kern.nc) {
    const int64_t nc = std::min<int64_t>(kern.nc, n1 - jc);
    if (P.b_writer)
      P.b_writer->pack(jc, nc, k_padded, b_pack);
    else
      pack_b(kern, P.b, P.k, jc, nc, k_padded, b_pack);
    multiply_packed(kern, P, b_pack, k_padded, m0, m1, jc, nc, a_pack, acc, a_whole, a_whole && jc > n0);
  }
  if (kern.end) kern.end();
}

// Columns and K values of packed B that the strips of several row blocks take in turn: 4 panels of
// 32 by up to 1024 K values (256 KB of B at most, kept in L2 while every strip reads it).
constexpr int64_t kStripWidth = 128, kStripDepth = 1024;

// accumulate_prepacked on a tier with strip kernels and an A with contiguous rows: A is read in place
// (no packing), and C accumulated in ceil(m / strip_rows) strips of rows as equal as can be, so a
// product of 1 to 12 rows computes no padding rows. The first block of K starts C as the bias (beta
// 0) or adds the bias to it (beta 1) in the kernel, so C is read at most once per block of K. A
// single strip streams all of B once; several take B a block of kStripWidth columns by kStripDepth K
// values at a time (kStripWidth a multiple of nr, kStripDepth even).
void accumulate_strips(const Bf16GemmKernels& kern, const Problem<float>& P, const PackedBf16B& b) {
  const int64_t lda = P.a.row_stride, ldc = P.c.row_stride, strips = (P.m + kern.strip_rows - 1) / kern.strip_rows;
  const int64_t depth = strips == 1 ? std::max<int64_t>(P.k, 1) : kStripDepth, width = strips == 1 ? P.n : kStripWidth;
  for (int64_t pc = 0; pc == 0 || pc < P.k; pc += depth)  // k == 0 too: C = beta C + bias
    for (int64_t jc = 0; jc < P.n; jc += width)
      for (int64_t s = 0; s < strips; ++s) {
        const int64_t i0 = P.m * s / strips, rows = P.m * (s + 1) / strips - i0;
        const float* bias = pc == 0 && P.epilogue.bias ? P.epilogue.bias + jc : nullptr;
        kern.strip(static_cast<int>(rows), {.k = std::min(depth, P.k - pc),
                                            .a = P.a.data + i0 * lda + pc,
                                            .lda = lda,
                                            .b = b.panels + jc / kern.nr * b.k_padded * kern.nr + pc * kern.nr,
                                            .panel_stride = b.k_padded * kern.nr,
                                            .c = P.c.data + i0 * ldc + jc,
                                            .ldc = ldc,
                                            .cols = std::min(width, P.n - jc),
                                            .bias = bias,
                                            .accumulate = pc > 0 || P.beta != 0.0f});
      }
}

// gemm_bf16_prepacked's common case (alpha 1, beta 0 or 1, contiguous rows of C, a column bias
// or none, no ReLU): C starts as the bias (beta 0) or gets it added, and the tiles accumulate into
// C itself, so no accumulator block is cleared or merged; a tile past C's last row or column goes
// through a tile of its own. A is packed once per block of mc rows (unless the strips take it).
void accumulate_prepacked(const Bf16GemmKernels& kern, const Problem<float>& P, const PackedBf16B& b) {
  if (kern.strip && P.a.col_stride == 1) return accumulate_strips(kern, P, b);
  const int mr = kern.mr, nr = kern.nr;
  const int64_t ldc = P.c.row_stride, col_panels = (P.n + nr - 1) / nr;
  const float* bias = P.epilogue.bias;
  bf16* a_pack = block_buffers(kern, b.k_padded, P.m, 0, 0, false).first;
  float* edge = scratch<float>(kAcc, int64_t(mr) * nr);
  for (int64_t ic = 0; ic < P.m; ic += kern.mc) {
    const int64_t mc = std::min<int64_t>(kern.mc, P.m - ic), row_panels = (mc + mr - 1) / mr;
    for (int64_t i = ic; i < ic + mc; ++i) {
      float* row = P.c.data + i * ldc;
      if (P.beta == 0.0f)
        for (int64_t j = 0; j < P.n; ++j) row[j] = bias ? to_float(bias[j]) : 0.0f;
      else if (bias)
        for (int64_t j = 0; j < P.n; ++j) row[j] += to_float(bias[j]);
    }
    for (int64_t pc = 0; pc < P.k; pc += kern.kc) {
      const int64_t kc = std::min<int64_t>(kern.kc, P.k - pc), kp = round_up(kc, kern.k_align);
      pack_a(kern, P.a, ic, mc, pc, kc, kp, a_pack);
      for (int64_t jr = 0; jr < col_panels; ++jr) {
        const bf16* b_panel = b.panels + jr * b.k_padded * nr + pc * nr;
        const int64_t cols = std::min<int64_t>(nr, P.n - jr * nr);
        for (int64_t ir = 0; ir < row_panels; ++ir) {
          const int64_t rows = std::min<int64_t>(mr, mc - ir * mr);
          float* c = P.c.data + (ic + ir * mr) * ldc + jr * nr;
          if (rows == mr && cols == nr) {
            kern.tile(kp, a_pack + ir * mr * kp, kp, b_panel, c, ldc);
            continue;
          }
          std::fill(edge, edge + mr * nr, 0.0f);
          kern.tile(kp, a_pack + ir * mr * kp, kp, b_panel, edge, nr);
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < cols; ++j) c[i * ldc + j] += edge[i * nr + j];
        }
      }
    }
  }
}

// A single row of C (m == 1) against a B with contiguous rows: y = x B streamed row by row of B in
// L1-sized chunks of columns (packing B would cost more than the product), chunks split over threads.
template <class OutT>
void gemv(const Problem<OutT>& P, int threads) {
  constexpr int64_t kChunk = 4096;  // float32 sums of y kept in L1 while B's rows stream through
  const int64_t chunks = (P.n + kChunk - 1) / kChunk;
  if (P.n * P.k < (int64_t(1) << 16)) threads = 1;
  const int team = static_cast<int>(std::min<int64_t>(threads, chunks));
  run_on_threads(team, [&](int t) {
    float* y = scratch<float>(kAcc, kChunk);
    for (int64_t chunk = chunks * t / team; chunk < chunks * (t + 1) / team; ++chunk) {
      const int64_t j0 = chunk * kChunk, width = std::min(kChunk, P.n - j0);
      std::fill(y, y + width, 0.0f);
      for (int64_t p = 0; p < P.k; ++p) {
        const float x = to_float(P.a.data[p * P.a.col_stride]);
        const bf16* row = P.b.data + p * P.b.row_stride + j0;
        for (int64_t j = 0; j < width; ++j) y[j] += x * to_float(row[j]);
      }
      merge(P, y, width, 0, 1, j0, width);
    }
  });
}

std::atomic<const char*> last_path{""};

template <class OutT>
void run_gemm(Problem<OutT> P, int threads) {
  if (P.m == 0 || P.n == 0) return;
  const Bf16GemmKernels& kern = dispatch(IsaFamily::gemm_bf16, bf16_tables());
  if (P.b_writer && kern.nr != kBf16PanelWidth) throw std::logic_error("gemm_bf16: panels of another width");
  const bool swap = !P.b_writer && pads_less_transposed(P, kern.mr, kern.nr);  // grid.h
  if (swap) P = transposed(P);
  const bool one_row = P.m == 1 && !P.b_writer && P.b.col_stride == 1;
  last_path.store(swap ? (one_row ? "transposed gemv" : "transposed blocked") : (one_row ? "gemv" : "blocked"),
                  std::memory_order_relaxed);
  if (one_row) return gemv(P, threads);
  const int64_t tiles = ((P.m + kern.mr - 1) / kern.mr) * ((P.n + kern.nr - 1) / kern.nr);
  if (P.m * P.n * P.k < kMinParallelMacs) threads = 1;
  threads = static_cast<int>(std::min<int64_t>(threads, tiles));
  if (threads <= 1) return gemm_block(kern, P, 0, P.m, 0, P.n);
  run_on_grid(P.m, P.n, choose_gemm_grid(P.m, P.n, P.k, kern.mr, kern.nr, threads),
              [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) { gemm_block(kern, P, m0, m1, n0, n1); });
}

}  // namespace

template <class OutT>
void gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, StridedMatrix<const bf16> a, StridedMatrix<const bf16> b,
               float beta, StridedMatrix<OutT> c, const GemmEpilogue<OutT>& epilogue, int threads) {
  run_gemm(Problem<OutT>{m, n, k, alpha, a, b, beta, c, epilogue}, threads > 0 ? threads : num_threads());
}

template <class OutT>
void gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, StridedMatrix<const bf16> a, const Bf16PanelWriter& b,
               float beta, StridedMatrix<OutT> c, const GemmEpilogue<OutT>& epilogue, int threads) {
  Problem<OutT> P{m, n, k, alpha, a, {nullptr, 0, 0}, beta, c, epilogue};
  P.b_writer = &b;
  run_gemm(P, threads > 0 ? threads : num_threads());
}

template <class OutT>
void gemm_bf16_batched(int64_t batch, const int64_t* a_offsets, const int64_t* b_offsets, const int64_t* c_offsets,
                       int64_t m, int64_t n, int64_t k, float alpha, StridedMatrix<const bf16> a,
                       StridedMatrix<const bf16> b, float beta, StridedMatrix<OutT> c,
                       const GemmEpilogue<OutT>& epilogue) {
  run_batch(batch, a_offsets, b_offsets, c_offsets, Problem<OutT>{m, n, k, alpha, a, b, beta, c, epilogue},
            [](const Problem<OutT>& P, int threads) { run_gemm(P, threads); });
}

int64_t packed_bf16_b_size(int64_t k, int64_t n) {
  const Bf16GemmKernels& kern = table_for(active_isa(), bf16_tables());
  return round_up(n, kern.nr) * round_up(k, kern.k_align);
}

PackedBf16B pack_bf16_b_groups(int64_t k, int64_t n, int groups, int64_t group_offset, StridedMatrix<const bf16> b,
                               bf16* panels) {
  const Bf16GemmKernels& kern = table_for(active_isa(), bf16_tables());
  const int64_t k_padded = round_up(k, kern.k_align);
  const auto column_at = [&](int64_t j) { return b.data + j / n * group_offset + j % n * b.col_stride; };
  pack_b_panels(kern, k, groups * n, k_padded, b.row_stride, groups == 1 ? b.col_stride : 0, column_at, panels);
  return {k, groups * n, k_padded, kern.name, panels};
}

void gemm_bf16_prepacked(int64_t m, float alpha, StridedMatrix<const bf16> a, const PackedBf16B& b, float beta,
                         StridedMatrix<float> c, const GemmEpilogue<float>& epilogue) {
  const Bf16GemmKernels& kern = dispatch(IsaFamily::gemm_bf16, bf16_tables());
  if (kern.name != b.kernel) throw std::runtime_error("gemm_bf16_prepacked: B was packed for another kernel tier");
  const Problem<float> P{m, b.n, b.k, alpha, a, {nullptr, 0, 0}, beta, c, epilogue};
  if (m == 0 || b.n == 0) return;
  if (kern.begin) kern.begin();
  if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && c.col_stride == 1 && !epilogue.relu &&
      epilogue.bias_axis != BiasAxis::rows) {
    accumulate_prepacked(kern, P, b);
  } else {  // blocks of nc columns (a multiple of nr: column jc starts panel jc / nr)
    const bool a_whole = whole_a(kern, m, b.k_padded);
    const auto [a_pack, acc] = block_buffers(kern, b.k_padded, m, b.n, kern.nc, a_whole);
    for (int64_t jc = 0; jc < b.n; jc += kern.nc)
      multiply_packed(kern, P, b.panels + jc * b.k_padded, b.k_padded, 0, m, jc, std::min<int64_t>(kern.nc, b.n - jc),
                      a_pack, acc, a_whole, a_whole && jc > 0);
  }
  if (kern.end) kern.end();
}

double measure_bf16_gflops(int threads, double seconds) {
  const Bf16GemmKernels& kern = table_for(active_isa(), bf16_tables());
  if (!kern.peak_chains) return measure_fma_gflops(active_isa(), threads, seconds);
  return measure_chains_gflops(kern.peak_chains, kern.peak_flops_per_iteration, threads, seconds);
}

const char* last_gemm_bf16_path() { return last_path.load(std::memory_order_relaxed); }

const char* gemm_bf16_kernel_name() { return table_for(active_isa(), bf16_tables()).name; }

template void gemm_bf16<float>(int64_t, int64_t, int64_t, float, StridedMatrix<const bf16>, StridedMatrix<const bf16>,
                               float, StridedMatrix<float>, const GemmEpilogue<float>&, int);
template void gemm_bf16<bf16>(int64_t, int64_t, int64_t, float, StridedMatrix<const bf16>, StridedMatrix<const bf16>,
                              float, StridedMatrix<bf16>, const GemmEpilogue<bf16>&, int);
template void gemm_bf16<float>(int64_t, int64_t, int64_t, float, StridedMatrix<const bf16>, const Bf16PanelWriter&,
                               float, StridedMatrix<float>, const GemmEpilogue<float>&, int);
template void gemm_bf16<bf16>(int64_t, int64_t, int64_t, float, StridedMatrix<const bf16>, const Bf16PanelWriter&,
                              float, StridedMatrix<bf16>, const GemmEpilogue<bf16>&, int);
template void gemm_bf16_batched<float>(int64_t, const int64_t*, const int64_t*, const int64_t*, int64_t, int64_t,
                                       int64_t, float, StridedMatrix<const bf16>, StridedMatrix<const bf16>, float,
                                       StridedMatrix<float>, const GemmEpilogue<float>&);
template void gemm_bf16_batched<bf16>(int64_t, const int64_t*, const int64_t*, const int64_t*, int64_t, int64_t,
                                      int64_t, float, StridedMatrix<const bf16>, StridedMatrix<const bf16>, float,
                                      StridedMatrix<bf16>, const GemmEpilogue<bf16>&);

}  // namespace deepkern::cpu
