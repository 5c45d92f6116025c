// One recurrent layer over a sequence on the CPU, forward and backpropagation through time, built
// on the blocked GEMM: the LSTM (PyTorch's layout: gates i, f, g, o; w_ih (4H, I), w_hh (4H, H)),
// the GRU (gates r, z, n; w_ih (3H, I), w_hh (3H, H)) and the Elman RNN (w_ih (H, I), w_hh (H, H)).
// LstmShape describes a layer of any of them.
//
// T is float, double or bf16. A bf16 layer takes bf16 inputs, weights and states and writes bf16
// outputs and gradients; its GEMMs run on the bfloat16 GEMM (gemm_bf16.h) with float32 sums, and
// the gate math, the cell state and the gradients of the states and of the weights stay float32
// (Acc<T>) until each output is rounded once. The caches (gates, cells) are of Acc<T>.
#pragma once
#include <cstdint>

#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::cpu {

// Variable lengths (batch_sizes not null): batch_sizes[t] (T of them, non-increasing, the first B,
// all >= 1) is the count of rows still running at step t, the batch sorted by decreasing length.
// Step t computes rows < batch_sizes[t] only; the others keep their state: past its end a row's
// states (h, c, y and the cached hidden and cells) repeat its last ones and, in reverse, before it
// joins they are h0 and c0 (zeros when null), so a row joins at its last step from h0/c0 and
// h_last/c_last hold each row's own final states. x's rows past a row's end are never read by the
// forward; backward's weight gradients multiply them by zero gate gradients (keep them finite), and
// its grad_x there is zero. batch_sizes null: every step runs all B rows.
struct LstmShape {
  int64_t steps, batch, input, hidden;   // T, B, I, H
  bool reverse;                          // process t = T-1 down to 0
  const int64_t* batch_sizes = nullptr;  // (T) rows running at each step, or null: B
};

// x (T, B, I); h0, c0 (B, H) or null (zeros); w_ih (4H, I); w_hh (4H, H); bias (4H) = b_ih + b_hh
// or null. Writes y (T, B, H), h_last and c_last (B, H: the states after the last step processed)
// and the cache backward needs: gates (T, B, 4H) after their activations, cells (T, B, H) and
// hidden (T, B, H), the cell and hidden state after each step. All C-contiguous. gates, cells
// and hidden all null: inference (no cache kept, no memory of size T used beyond x and y). Any of
// T, B, I and H may be 0: without a step (or without a state) h_last and c_last are h0 and c0.
template <class T>
void lstm_forward(const LstmShape& s, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* bias,
                  T* y, T* h_last, T* c_last, Acc<T>* gates, Acc<T>* cells, T* hidden);

// Backpropagation through time from the forward's cache. grad_y (T, B, H), grad_h_last and
// grad_c_last (B, H) may be null (zero). Writes grad_x (T, B, I), grad_h0 and grad_c0 (B, H),
// grad_w_ih (4H, I), grad_w_hh (4H, H) and grad_bias (4H): the gradient of each of b_ih and b_hh.
// Without a gate (T, B or H is 0) grad_h0 and grad_c0 are grad_h_last and grad_c_last, the others
// zeros.
template <class T>
void lstm_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* grad_c_last, const T* x,
                   const T* h0, const T* c0, const T* w_ih, const T* w_hh, const Acc<T>* gates, const Acc<T>* cells,
                   const T* hidden, T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias);

// The GRU (torch.nn.GRU): r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise, n = tanh(W_in x +
// b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h. x (T, B, I); h0 (B, H) or null (zeros); w_ih
// (3H, I), w_hh (3H, H); b_ih and b_hh (3H) or null. Writes y (T, B, H), h_last (B, H) and, unless
// both are null (inference), the cache: gates (T, B, 4H: r, z, n and W_hn h + b_hn of each step)
// and hidden (T, B, H). Sizes of 0 as for the LSTM.
template <class T>
void gru_forward(const LstmShape& s, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih,
                 const T* b_hh, T* y, T* h_last, Acc<T>* gates, T* hidden);

// Backpropagation through time for gru_forward, from its cache. grad_y (T, B, H) and grad_h_last
// (B, H) may be null (zero). Writes grad_x (T, B, I), grad_h0 (B, H), grad_w_ih (3H, I), grad_w_hh
// (3H, H), grad_b_ih and grad_b_hh (3H).
template <class T>
void gru_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* x, const T* h0, const T* w_ih,
                  const T* w_hh, const Acc<T>* gates, const T* hidden, T* grad_x, T* grad_h0, T* grad_w_ih,
                  T* grad_w_hh, T* grad_b_ih, T* grad_b_hh);

// The Elman RNN (torch.nn.RNN): h' = tanh (or, with relu, max(0, .)) of W_ih x + W_hh h + bias.
// x (T, B, I); h0 (B, H) or null; w_ih (H, I), w_hh (H, H), bias (H) = b_ih + b_hh or null. Writes
// y (T, B, H), h_last (B, H) and, unless null (inference), hidden (T, B, H), the cache.
template <class T>
void rnn_forward(const LstmShape& s, bool relu, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* bias,
                 T* y, T* h_last, T* hidden);

// Backpropagation through time for rnn_forward. grad_y and grad_h_last may be null (zero). Writes
// grad_x (T, B, I), grad_h0 (B, H), grad_w_ih (H, I), grad_w_hh (H, H) and grad_bias (H), the
// gradient of each of b_ih and b_hh.
template <class T>
void rnn_backward(const LstmShape& s, bool relu, const T* grad_y, const T* grad_h_last, const T* x, const T* h0,
                  const T* w_ih, const T* w_hh, const T* hidden, T* grad_x, T* grad_h0, T* grad_w_ih, T* grad_w_hh,
                  T* grad_bias);

}  // namespace deepkern::cpu
