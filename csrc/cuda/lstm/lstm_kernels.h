// The recurrent layers' own GPU kernels (lstm_kernels.cu): the fused per-step cell passes of the
// LSTM, the GRU and the Elman RNN, the bias gradient and the LSTM's persistent forward. lstm.cu
// strings them together with the GEMMs. float32, contiguous arrays on the current device; gate
// blocks in PyTorch's order (LSTM i, f, g, o; GRU r, z, n); every launcher queues its work on
// `stream` and returns at once. The per-element math is cpu/lstm/cell_math.h's, as on the CPU.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/lstm/lstm.h"

namespace deepkern::cuda {

// Floats per row of a step's gate sums `pre` and of the cached activations: 4H for the LSTM (i,
// f, g, o) and the GRU (r, z, n, W_hn h + b_hn: its 3H gate sums leave room for the fourth block
// of the cache they are overwritten with), H for the RNN.
__host__ __device__ constexpr std::int64_t pre_width(CellKind kind, std::int64_t hidden) {
  return kind == CellKind::lstm || kind == CellKind::gru ? 4 * hidden : hidden;
}

// One forward step of `batch` rows and `hidden` units. pre (batch, pre_width) holds the gate sums
// x W_ih^T (LSTM, RNN: + h_{t-1} W_hh^T); bias (kGates * H, or null) is added to them. GRU: hh
// (batch, 3H; null: zero) holds h_{t-1} W_hh^T, bias_hh (3H, or null) is added to it, h_prev
// (null: zero) is h_{t-1}. LSTM: c_prev (null: zero) and c, the cell states. Writes h (batch, H),
// y (a copy of h, when not null) and, when act is not null, the cached activations (batch,
// pre_width; act may be pre itself).
struct CellForward {
  std::int64_t batch, hidden;
  const float *pre, *bias, *hh, *bias_hh, *h_prev, *c_prev;
  float *act, *c, *h, *y;
};
void cell_forward(CellKind kind, const CellForward& step, cudaStream_t stream);

// One backward step: the gradient of h_t is dh + grad_y (grad_y may be null); dgates (batch,
// kGrad * H: LSTM i, f, g, o; GRU r, z, n as seen from W_hh, n; RNN its one gate) receives the
// gradients of the gate sums. LSTM: act (batch, 4H), c and c_prev (null: zero); dc enters as the
// gradient of c_t and leaves as that of c_{t-1}; dh is only read. GRU: act (batch, 4H), h_prev
// (null: zero); dh leaves as the part of the gradient of h_{t-1} that does not go through W_hh.
// RNN: h (h_t); dh is only read.
struct CellBackward {
  std::int64_t batch, hidden;
  const float *act, *h, *h_prev, *c, *c_prev, *grad_y;
  float *dh, *dc, *dgates;
};
void cell_backward(CellKind kind, const CellBackward& step, cudaStream_t stream);

// out[j] = sum over r of a[r * cols + j] (rows, cols); summed in a fixed order (deterministic).
void column_sums(std::int64_t rows, std::int64_t cols, const float* a, float* out, cudaStream_t stream);

// The persistent forward: every step of the recurrence in one launch, `blocks` blocks each holding
// its share of W_hh's rows in shared memory and meeting at a grid barrier (grid_barrier.h) after
// each step. Takes `pre` (T, B, 4H) = x W_ih^T, and the arrays of the per-step path: h0, c0 (null:
// zeros), w_hh (4H, H), bias (4H or null), y (T, B, H), c_rows (T, B, H: each step's c; or, when
// `rolling`, two rows of (B, H) used in turn), h_rows (T, B, H: each step's h, may be y), act
// (T, B, 4H or null: the activated gates; may be pre). `counter` is one zeroed unsigned int.
struct PersistentLstm {
  std::int64_t steps, batch, hidden;
  bool reverse, rolling;
  const float *pre, *h0, *c0, *w_hh, *bias;
  float *y, *c_rows, *h_rows, *act;
  unsigned int* counter;
};

// Blocks the persistent kernel runs on for this shape on the current device (each holding `units`
// hidden units), or 0 when it cannot: H or B too large, its shared memory more than a block may
// have, or the blocks not all resident at once (cudaOccupancyMaxActiveBlocksPerMultiprocessor).
// max_blocks > 0 caps the count (tests).
struct PersistentPlan {
  int blocks = 0, threads = 0;
  std::int64_t units = 0;
  std::size_t shared_bytes = 0;
};
PersistentPlan plan_persistent_lstm(std::int64_t batch, std::int64_t hidden, int max_blocks);
void lstm_persistent_forward(const PersistentLstm& problem, const PersistentPlan& plan, cudaStream_t stream);

}  // namespace deepkern::cuda
