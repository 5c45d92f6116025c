// One recurrent layer over a sequence on the GPU, LSTM, GRU or Elman RNN: the contracts of the
// CPU's cpu/lstm/lstm.h (PyTorch's layouts; the same caches, so either device's backward takes
// either device's forward), in float32. Plain C++ (no CUDA headers beyond the stream type), so the
// binding includes it. Compiled, not yet run on a GPU.
//
// Design (lstm.cu, kernels in lstm_kernels.cu). One driver for the three cells, which differ only
// in their layouts (cpu/lstm/cell_layout.h, shared with the CPU driver) and their fused cell
// kernels; the persistent forward is the LSTM's alone:
// - forward, per-step path: the input projection of all steps, x (T*B, I) @ W_ih^T, as ONE GEMM
//   through cuda/gemm (into the gates cache, or a workspace for inference); then per step the
//   recurrent GEMM h_{t-1} @ W_hh^T added into that step's gate sums, followed by ONE fused
//   pointwise kernel (bias, sigmoid/tanh of cpu/lstm/cell_math.h, c and h update; writes the
//   activated gates over the sums, c_t, h_t and y_t);
// - forward, persistent path (H <= 256, B <= 64, the grid co-resident): the same projection GEMM,
//   then every step in one launch, W_hh held in shared memory across steps and a grid barrier
//   (grid_barrier.h) between steps; falls back to the per-step path when the blocks would not all
//   be resident (checked with cudaOccupancyMaxActiveBlocksPerMultiprocessor at launch);
// - backward: per step (latest first) a fused pointwise kernel for the gate gradients dG_t and dc,
//   then the recurrent GEMM dh = dG_t @ W_hh; at the end the gradients of all steps as single
//   large GEMMs (grad_x = dG @ W_ih, grad_w_ih = dG^T @ x, grad_w_hh = dG^T @ h_{t-1}) and one
//   column sum for the bias.
// - the GRU: r scales W_hn h + b_hn, so each step's recurrent GEMM goes into rows of its own
//   (B, 3H) rather than onto the gate sums, and the cell kernel adds b_hh and reads both; its
//   backward adds dG_t's recurrent blocks @ W_hh to the part of dh the cell kernel leaves (z dh),
//   and the weight GEMMs take dG's blocks by segment (r, z and r * dn for W_hh; r, z and dn for
//   W_ih). The Elman RNN is the LSTM's path with one gate block and no cell state.
// Everything is queued on the stream passed in; nothing synchronizes with the host. The GEMMs run
// in `precision` (fp32, or tf32 on the tensor cores); the persistent kernel computes in FP32.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "cpu/lstm/lstm.h"
#include "cuda/gemm/gemm.h"

namespace deepkern::cuda {

using cpu::LstmShape;

// The cells of the per-step path (the template argument of its kernels).
enum class CellKind : std::uint8_t { lstm, gru, rnn_tanh, rnn_relu };

// The forward's two ways through the steps. automatic: persistent where plan_persistent_lstm
// allows it, else per_step. set_lstm_path forces one for tests and benchmarks (process-wide); a
// forced persistent path that cannot run throws std::invalid_argument saying why.
enum class LstmPath : std::uint8_t { automatic, per_step, persistent };
void set_lstm_path(LstmPath path);
LstmPath lstm_path();
// The path the last lstm_forward took (automatic before any call, and after one without a step).
LstmPath last_lstm_path();
const char* lstm_path_name(LstmPath path);  // "automatic", "per_step", "persistent"

// Bytes of device workspace the forward of a cell needs (`cached`: the cache arrays are given;
// the barrier counter, the gate sums unless the cache holds them, two rows of c for the LSTM's
// inference, the GRU's recurrent rows) and its backward (the gate gradients of all steps and their
// column sums). Each array in it is 256-byte aligned.
std::size_t forward_workspace_bytes(CellKind kind, const LstmShape& s, bool cached);
std::size_t backward_workspace_bytes(CellKind kind, const LstmShape& s);

// The arrays of cpu::lstm_forward, float32, C-contiguous on the current device; workspace holds
// forward_workspace_bytes (256-byte aligned). max_blocks > 0 caps the persistent kernel's grid.
void lstm_forward(const LstmShape& s, GemmPrecision precision, const float* x, const float* h0, const float* c0,
                  const float* w_ih, const float* w_hh, const float* bias, float* y, float* h_last, float* c_last,
                  float* gates, float* cells, float* hidden, void* workspace, cudaStream_t stream, int max_blocks = 0);

// The arrays of cpu::lstm_backward, float32, C-contiguous on the current device; workspace holds
// backward_workspace_bytes.
void lstm_backward(const LstmShape& s, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                   const float* grad_c_last, const float* x, const float* h0, const float* c0, const float* w_ih,
                   const float* w_hh, const float* gates, const float* cells, const float* hidden, float* grad_x,
                   float* grad_h0, float* grad_c0, float* grad_w_ih, float* grad_w_hh, float* grad_bias,
                   void* workspace, cudaStream_t stream);

// The arrays of cpu::gru_forward and cpu::gru_backward (float32, C-contiguous on the current
// device; the per-step path), with the workspaces of forward_ and backward_workspace_bytes.
void gru_forward(const LstmShape& s, GemmPrecision precision, const float* x, const float* h0, const float* w_ih,
                 const float* w_hh, const float* b_ih, const float* b_hh, float* y, float* h_last, float* gates,
                 float* hidden, void* workspace, cudaStream_t stream);
void gru_backward(const LstmShape& s, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                  const float* x, const float* h0, const float* w_ih, const float* w_hh, const float* gates,
                  const float* hidden, float* grad_x, float* grad_h0, float* grad_w_ih, float* grad_w_hh,
                  float* grad_b_ih, float* grad_b_hh, void* workspace, cudaStream_t stream);

// The arrays of cpu::rnn_forward and cpu::rnn_backward (float32, C-contiguous on the current
// device; the per-step path), with the workspaces of forward_ and backward_workspace_bytes.
void rnn_forward(const LstmShape& s, bool relu, GemmPrecision precision, const float* x, const float* h0,
                 const float* w_ih, const float* w_hh, const float* bias, float* y, float* h_last, float* hidden,
                 void* workspace, cudaStream_t stream);
void rnn_backward(const LstmShape& s, bool relu, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                  const float* x, const float* h0, const float* w_ih, const float* w_hh, const float* hidden,
                  float* grad_x, float* grad_h0, float* grad_w_ih, float* grad_w_hh, float* grad_bias, void* workspace,
                  cudaStream_t stream);

}  // namespace deepkern::cuda
