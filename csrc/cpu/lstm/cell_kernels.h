// The pointwise passes of one step of the recurrent cells (LSTM, GRU, Elman RNN; lstm.cpp runs
// them per thread block inside its teams), as one table per ISA: cell_kernels.cpp is compiled
// once per ISA and vectorizes them for it.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/isa_dispatch.h"
#include "core/vmath.h"
#include "cpu/cast/bf16_bits.h"
#include "cpu/lstm/lstm.h"

namespace deepkern::cpu {
namespace {  // each translation unit (each ISA's) keeps its own copies

// How the cell loops hold a value of T: T itself, or a bf16's bits (a uint16_t: the compiler
// vectorizes loads and stores of it, not of the struct).
template <class T>
using Lane = std::conditional_t<std::is_same_v<T, bf16>, uint16_t, T>;

template <class T>
Lane<T>* lanes(T* p) {
  return reinterpret_cast<Lane<T>*>(p);
}
template <class T>
const Lane<T>* lanes(const T* p) {
  return reinterpret_cast<const Lane<T>*>(p);
}

// x of a layer's type T as its accumulator type Acc<T> (exact).
template <class T>
inline Acc<T> widen(Lane<T> x) {
  if constexpr (std::is_same_v<T, bf16>)
    return bf16_bits_to_float(x);
  else
    return x;
}

// x of Acc<T> as T: bf16 rounded to nearest even (a NaN stays a NaN, made quiet).
template <class T>
inline Lane<T> narrow(Acc<T> x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return float_to_bf16_bits(x);
  } else {
    return x;
  }
}

// count values from src (null: zeros) into dst of another (or the same) type: widened or narrowed.
template <class S, class D>
void convert_or_zero(const S* src, int64_t count, D* dst) {
  const Lane<S>* from = lanes(src);
  Lane<D>* to = lanes(dst);
  for (int64_t i = 0; i < count; ++i) {
    if constexpr (std::is_same_v<S, D>)
      to[i] = from ? from[i] : Lane<D>{};
    else if constexpr (std::is_same_v<S, bf16>)
      to[i] = from ? widen<S>(from[i]) : D{};
    else
      to[i] = from ? narrow<D>(from[i]) : Lane<D>{};
  }
}

}  // namespace

// One thread's block of one step: `rows` batch rows and `units` hidden units (of H), vectorized
// along the units. Every pointer is at the block's first element; states have rows H apart; the
// cached activations `act` rows kCache * H apart, blocks H apart. A null optional state is zero.
// The hidden states are of the layer's type T; the sums, activations and cell states of A = Acc<T>.
template <class T>
struct ForwardStep {
  using A = Acc<T>;
  int64_t rows, units, H;
  const A* pre;       // gate pre-activations of the input (and, but for the GRU, the recurrence)
  int64_t pre_block;  // gate blocks pre_block apart, rows gates * pre_block apart
  const A* hh;        // GRU: W_hh h_{t-1} + b_hh, laid out as pre
  A* act;             // the cache backward reads (null: inference)
  const T* h_prev;    // GRU
  const A* c_prev;    // LSTM
  A* c;               // LSTM: c_t
  T* h;               // h_t
  T* y;               // a second copy of h_t, written when act (or, for the RNN, y) is not null
};

// One step backward: the gradient of h_t is dh + grad_y (grad_y may be null); dgates (rows
// width * H apart) receives the gradients of the gate pre-activations. dh leaves as the part of
// the gradient of h_{t-1} that does not go through W_hh (zero but for the GRU); dc (LSTM) enters
// as the gradient of c_t from later steps and leaves as that of c_{t-1}. dh and dc are of A (the
// gate gradients, the next GEMMs' operand, of T).
template <class T>
struct BackwardStep {
  using A = Acc<T>;
  int64_t rows, units, H;
  const A* act;     // the forward's cache (LSTM, GRU)
  const T* h;       // RNN: h_t
  const T* h_prev;  // GRU
  const A* c;       // LSTM: c_t
  const A* c_prev;  // LSTM
  const T* grad_y;
  A* dh;
  A* dc;
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

// One ISA's cell kernels for each layer type.
struct CellKernelTable {
  CellKernels<float> f32;
  CellKernels<double> f64;
  CellKernels<bf16> b16;

  template <class T>
  const CellKernels<T>& of() const {
    if constexpr (std::is_same_v<T, float>)
      return f32;
    else if constexpr (std::is_same_v<T, double>)
      return f64;
    else
      return b16;
  }
};

DEEPKERN_DECLARE_ISA_TABLES(CellKernelTable, cell_kernels)

}  // namespace deepkern::cpu
