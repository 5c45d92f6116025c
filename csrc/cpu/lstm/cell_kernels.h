// The pointwise passes of one step of the recurrent cells (LSTM, GRU, Elman RNN; lstm.cpp runs
// them per thread block inside its teams), as one table per ISA: cell_kernels.cpp is compiled
// once per ISA and vectorizes them for it.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

// One thread's block of one step: `rows` batch rows and `units` hidden units (of H), vectorized
// along the units. Every pointer is at the block's first element; states have rows H apart; the
// cached activations `act` rows kCache * H apart, blocks H apart. A null optional state is zero.
template <class T>
struct ForwardStep {
  int64_t rows, units, H;
  const T* pre;       // gate pre-activations of the input (and, but for the GRU, the recurrence)
  int64_t pre_block;  // gate blocks pre_block apart, rows gates * pre_block apart
  const T* hh;        // GRU: W_hh h_{t-1} + b_hh, laid out as pre
  T* act;             // the cache backward reads (null: inference)
  const T* h_prev;    // GRU
  const T* c_prev;    // LSTM
  T* c;               // LSTM: c_t
  T* h;               // h_t
  T* y;               // a second copy of h_t, written when act (or, for the RNN, y) is not null
};

// One step backward: the gradient of h_t is dh + grad_y (grad_y may be null); dgates (rows
// width * H apart) receives the gradients of the gate pre-activations. dh leaves as the part of
// the gradient of h_{t-1} that does not go through W_hh (zero but for the GRU); dc (LSTM) enters
// as the gradient of c_t from later steps and leaves as that of c_{t-1}.
template <class T>
struct BackwardStep {
  int64_t rows, units, H;
  const T* act;     // the forward's cache (LSTM, GRU)
  const T* h;       // RNN: h_t
  const T* h_prev;  // GRU
  const T* c;       // LSTM: c_t
  const T* c_prev;  // LSTM
  const T* grad_y;
  T* dh;
  T* dc;
  T* dgates;
};

// LSTM: gate blocks i, f, g, o; act i, f, g, o (4H). GRU: gate blocks r, z, n; act r, z, n and
// W_hn h + b_hn (4H); dgates r, z, n as seen from W_hh (r * the n pre-activation's), n (4H).
// RNN: one gate block, h = tanh or relu of it, no act; dgates its gradient (H).
template <class T>
struct CellKernels {
  void (*lstm_forward)(const ForwardStep<T>&);
  void (*lstm_backward)(const BackwardStep<T>&);
  void (*gru_forward)(const ForwardStep<T>&);
  void (*gru_backward)(const BackwardStep<T>&);
  void (*rnn_tanh_forward)(const ForwardStep<T>&);
  void (*rnn_tanh_backward)(const BackwardStep<T>&);
  void (*rnn_relu_forward)(const ForwardStep<T>&);
  void (*rnn_relu_backward)(const BackwardStep<T>&);
};

DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<CellKernels>, cell_kernels)

}  // namespace deepkern::cpu
