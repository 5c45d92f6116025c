// The LSTM's own GPU kernels (lstm_kernels.cu): the fused per-step cell passes, the bias gradient
// and the persistent forward. lstm.cu strings them together with the GEMMs. float32, contiguous
// arrays on the current device; gate blocks i, f, g, o (PyTorch's order); every launcher queues
// its work on `stream` and returns at once. The per-element math is cpu/lstm/cell_math.h's, as on
// the CPU.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

// One forward step of `batch` rows and `hidden` units: `pre` (batch, 4H) holds the gate sums
// x W_ih^T + h W_hh^T; adds bias (4H, or null), applies the activations and the cell update and
// writes c and h (batch, H; c_prev null means zero), y (null: not written) and, when `act` is not
// null, the activated gates (batch, 4H; act may be pre itself).
void lstm_cell_forward(std::int64_t batch, std::int64_t hidden, const float* pre, const float* bias,
                       const float* c_prev, float* act, float* c, float* h, float* y, cudaStream_t stream);

// One backward step from the activated gates (batch, 4H) and the cells c, c_prev (batch, H; c_prev
// null means zero): the gradient of h_t is dh + grad_y (grad_y may be null); dc enters as the
// gradient of c_t and leaves as that of c_{t-1}; dgates (batch, 4H) receives the gradient of the
// gate sums. dh is only read.
void lstm_cell_backward(std::int64_t batch, std::int64_t hidden, const float* gates, const float* c,
                        const float* c_prev, const float* grad_y, const float* dh, float* dc, float* dgates,
                        cudaStream_t stream);

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
