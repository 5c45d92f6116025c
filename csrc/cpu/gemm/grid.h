// What the GEMM drivers (gemm.cpp, gemm_bf16.cpp) share: how they split C over threads, and a
// problem seen transposed.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/threading.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {

// The same product seen as C^T = B^T A^T (a driver's Problem: m, n, operands a, b, c, epilogue).
template <class Problem>
Problem transposed(const Problem& p) {
  Problem t = p;
  t.m = p.n;
  t.n = p.m;
  t.a = {p.b.data, p.b.col_stride, p.b.row_stride};
  t.b = {p.a.data, p.a.col_stride, p.a.row_stride};
  t.c = {p.c.data, p.c.col_stride, p.c.row_stride};
  if (p.epilogue.bias_axis == BiasAxis::rows) t.epilogue.bias_axis = BiasAxis::cols;
  if (p.epilogue.bias_axis == BiasAxis::cols) t.epilogue.bias_axis = BiasAxis::rows;
  return t;
}

// Whether C^T = B^T A^T pads C's mr x nr tiles by at least 1/8 less, for a transposed A (its columns
// contiguous, so packed through a transpose either way, while as B^T's panels it packs contiguous
// rows): a narrow C, as a weight gradient dW = dG^T X with few columns has.
template <class Problem>
bool pads_less_transposed(const Problem& p, int mr, int nr) {
  if (p.a.row_stride != 1 || p.a.col_stride == 1) return false;
  const auto up = [](int64_t x, int64_t to) { return (x + to - 1) / to * to; };
  return 8 * up(p.n, mr) * up(p.m, nr) <= 7 * up(p.m, mr) * up(p.n, nr);
}

// C split into rows x cols blocks of block_m x block_n elements (multiples of the register tile;
// the last row or column of blocks may be shorter or empty).
struct GemmGrid {
  int rows, cols;
  int64_t block_m, block_n;
};

// The grid of `threads` blocks (threads <= tiles of C) over an m x n x k problem with mr x nr
// tiles that minimises the busiest thread's estimated cycles (multiply-adds at full SIMD width
// plus packing both operands).
inline GemmGrid choose_gemm_grid(int64_t m, int64_t n, int64_t k, int mr, int nr, int threads) {
  const int64_t row_panels = (m + mr - 1) / mr, col_panels = (n + nr - 1) / nr;
  GemmGrid best{1, threads, 0, 0};
  double best_cost = 0;
  for (int grid_rows = 1; grid_rows <= threads; ++grid_rows) {
    if (threads % grid_rows) continue;
    const int grid_cols = threads / grid_rows;
    const int64_t block_m = (row_panels + grid_rows - 1) / grid_rows * mr;
    const int64_t block_n = (col_panels + grid_cols - 1) / grid_cols * nr;
    const double cost = double(block_m) * block_n * k / (2.0 * nr) + double(block_m + block_n) * k;
    if (grid_rows == 1 || cost < best_cost) {
      best_cost = cost;
      best = {grid_rows, grid_cols, block_m, block_n};
    }
  }
  return best;
}

// Below this many multiply-adds a problem runs on one thread (thread start-up would cost more).
constexpr int64_t kMinParallelMacs = int64_t(1) << 20;

// Runs run(P_i, threads) for i < batch, P_i = `base` with its a, b and c moved by a_offsets[i],
// b_offsets[i], c_offsets[i] elements: many small problems one thread per problem (that beats
// splitting each one), others one after another on every thread.
template <class Problem, class Run>
void run_batch(int64_t batch, const int64_t* a_offsets, const int64_t* b_offsets, const int64_t* c_offsets,
               const Problem& base, Run&& run) {
  auto problem = [&](int64_t i) {
    Problem P = base;
    P.a.data += a_offsets[i];
    P.b.data += b_offsets[i];
    P.c.data += c_offsets[i];
    return P;
  };
  const int threads = num_threads();
  if (batch > 1 && threads > 1 && base.m * base.n * base.k < 64 * kMinParallelMacs) {
    const int team = static_cast<int>(std::min<int64_t>(threads, batch));
    run_on_threads(team, [&](int t) {
      for (int64_t i = batch * t / team; i < batch * (t + 1) / team; ++i) run(problem(i), 1);
    });
  } else {
    for (int64_t i = 0; i < batch; ++i) run(problem(i), threads);
  }
}

// Runs block(m0, m1, n0, n1) for each non-empty block of `grid` over an m x n C, one per thread.
template <class Block>
void run_on_grid(int64_t m, int64_t n, const GemmGrid& grid, Block&& block) {
  run_on_threads(grid.rows * grid.cols, [&](int t) {
    const int64_t m0 = std::min(m, (t / grid.cols) * grid.block_m);
    const int64_t n0 = std::min(n, (t % grid.cols) * grid.block_n);
    const int64_t m1 = std::min(m, m0 + grid.block_m), n1 = std::min(n, n0 + grid.block_n);
    if (m0 < m1 && n0 < n1) block(m0, m1, n0, n1);
  });
}

}  // namespace deepkern::cpu
