// One LSTM layer over a sequence on the CPU (PyTorch's layout: gates i, f, g, o; w_ih (4H, I),
// w_hh (4H, H)), forward and backpropagation through time, built on the blocked GEMM.
#pragma once
#include <cstdint>

namespace deepkern::cpu {

struct LstmShape {
  int64_t steps, batch, input, hidden;  // T, B, I, H
  bool reverse;                         // process t = T-1 down to 0
};

// x (T, B, I); h0, c0 (B, H) or null (zeros); w_ih (4H, I); w_hh (4H, H); bias (4H) = b_ih + b_hh
// or null. Writes y (T, B, H), h_last and c_last (B, H: the states after the last step processed)
// and the cache backward needs: gates (T, B, 4H) after their activations, cells (T, B, H) and
// hidden (T, B, H), the cell and hidden state after each step. All C-contiguous. gates, cells
// and hidden all null: inference (no cache kept, no memory of size T used beyond x and y). Any of
// T, B, I and H may be 0: without a step (or without a state) h_last and c_last are h0 and c0.
template <class T>
void lstm_forward(const LstmShape& s, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* bias,
                  T* y, T* h_last, T* c_last, T* gates, T* cells, T* hidden);

// Backpropagation through time from the forward's cache. grad_y (T, B, H), grad_h_last and
// grad_c_last (B, H) may be null (zero). Writes grad_x (T, B, I), grad_h0 and grad_c0 (B, H),
// grad_w_ih (4H, I), grad_w_hh (4H, H) and grad_bias (4H): the gradient of each of b_ih and b_hh.
// Without a gate (T, B or H is 0) grad_h0 and grad_c0 are grad_h_last and grad_c_last, the others
// zeros.
template <class T>
void lstm_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* grad_c_last, const T* x,
                   const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* gates, const T* cells,
                   const T* hidden, T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias);

}  // namespace deepkern::cpu
