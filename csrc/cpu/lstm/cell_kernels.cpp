// The recurrent cell kernels of cell_kernels.h, compiled once per ISA (a per-ISA source). Each row of
// a block is one vectorized pass over its units: the activations (cell_math.h, shared with the GPU),
// the state update and every store of the step happen in that one pass. The math runs in A = Acc<T>
// (float for a bf16 layer): hidden states and gate gradients are widened on load and narrowed on
// store (both the identity for float and double).
#include <cstdint>

#include "cpu/lstm/cell_kernels.h"
#include "cpu/lstm/cell_math.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

using lstm_math::gru_candidate;
using lstm_math::gru_output;
using lstm_math::gru_unit_grad;
using lstm_math::rnn_activation;
using lstm_math::rnn_activation_grad;
using lstm_math::sigmoid;
using lstm_math::tanh_of;

// One row of lstm_forward. kKeep: also store the activations to `act` (gate blocks H apart) and
// h to y, for backward (a separate instantiation: inference's loop stores no more than it needs).
template <bool kKeep, class T, class A = Acc<T>>
[[gnu::always_inline]] inline void lstm_row(int64_t units, const A* __restrict pre, int64_t pb, A* __restrict act,
                                            int64_t H, const A* cp, A* __restrict c, Lane<T>* __restrict h,
                                            Lane<T>* __restrict y) {
#pragma omp simd
  for (int64_t j = 0; j < units; ++j) {
    const A i = sigmoid(pre[j]), f = sigmoid(pre[pb + j]), gg = tanh_of(pre[2 * pb + j]), o = sigmoid(pre[3 * pb + j]);
    const A cn = (cp ? f * cp[j] : A(0)) + i * gg;
    const Lane<T> hn = narrow<T>(o * tanh_of(cn));
    if constexpr (kKeep) {
      act[j] = i;
      act[H + j] = f;
      act[2 * H + j] = gg;
      act[3 * H + j] = o;
      y[j] = hn;
    }
    c[j] = cn;
    h[j] = hn;
  }
}

template <class T>
void lstm_forward(const ForwardStep<T>& s) {
  using A = Acc<T>;
  const int64_t H = s.H, pb = s.pre_block;
  for (int64_t b = 0; b < s.rows; ++b) {
    const A* pre = s.pre + b * 4 * pb;
    const A* cp = s.c_prev ? s.c_prev + b * H : nullptr;
    if (s.act)
      lstm_row<true, T>(s.units, pre, pb, s.act + b * 4 * H, H, cp, s.c + b * H, lanes(s.h + b * H),
                        lanes(s.y + b * H));
    else
      lstm_row<false, T>(s.units, pre, pb, s.act, H, cp, s.c + b * H, lanes(s.h + b * H), lanes(s.y));
  }
}

template <class T>
void lstm_backward(const BackwardStep<T>& s) {
  using A = Acc<T>;
  const int64_t H = s.H;
  for (int64_t b = 0; b < s.rows; ++b) {
    const A* __restrict g = s.act + b * 4 * H;
    const A* __restrict c = s.c + b * H;
    const A* cp = s.c_prev ? s.c_prev + b * H : nullptr;
    const Lane<T>* dy = s.grad_y ? lanes(s.grad_y + b * H) : nullptr;
    A* __restrict dh = s.dh + b * H;
    A* __restrict dc = s.dc + b * H;
    Lane<T>* __restrict dg = lanes(s.dgates + b * 4 * H);
#pragma omp simd
    for (int64_t j = 0; j < s.units; ++j) {
      const A i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
      const A tc = tanh_of(c[j]);
      const A dhj = dh[j] + (dy ? widen<T>(dy[j]) : A(0));
      const A dct = dc[j] + dhj * o * (A(1) - tc * tc);
      dg[j] = narrow<T>(dct * gg * i * (A(1) - i));
      dg[H + j] = narrow<T>((cp ? dct * cp[j] : A(0)) * f * (A(1) - f));
      dg[2 * H + j] = narrow<T>(dct * i * (A(1) - gg * gg));
      dg[3 * H + j] = narrow<T>(dhj * tc * o * (A(1) - o));
      dc[j] = dct * f;
      dh[j] = A(0);
    }
  }
}

// GRU (PyTorch's): r = sigmoid(pre_r + hh_r), z = sigmoid(pre_z + hh_z), n = tanh(pre_n + r * hh_n),
// h = (1 - z) n + z h_prev.
template <class T>
void gru_forward(const ForwardStep<T>& s) {
  using A = Acc<T>;
  const int64_t H = s.H, pb = s.pre_block;
  for (int64_t b = 0; b < s.rows; ++b) {
    const A* __restrict pre = s.pre + b * 3 * pb;
    const A* __restrict hh = s.hh + b * 3 * pb;
    const Lane<T>* hp = s.h_prev ? lanes(s.h_prev + b * H) : nullptr;
    A* __restrict act = s.act ? s.act + b * 4 * H : nullptr;
    Lane<T>* __restrict h = lanes(s.h + b * H);
    Lane<T>* __restrict y = s.act ? lanes(s.y + b * H) : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < s.units; ++j) {
      const A r = sigmoid(pre[j] + hh[j]), z = sigmoid(pre[pb + j] + hh[pb + j]);
      const A hn = hh[2 * pb + j], n = gru_candidate(pre[2 * pb + j], r, hn);
      const Lane<T> out = narrow<T>(gru_output(n, z, hp ? widen<T>(hp[j]) : A(0)));
      if (act) {
        act[j] = r;
        act[H + j] = z;
        act[2 * H + j] = n;
        act[3 * H + j] = hn;
        y[j] = out;
      }
      h[j] = out;
    }
  }
}

template <class T>
void gru_backward(const BackwardStep<T>& s) {
  using A = Acc<T>;
  const int64_t H = s.H;
  for (int64_t b = 0; b < s.rows; ++b) {
    const A* __restrict g = s.act + b * 4 * H;
    const Lane<T>* hp = s.h_prev ? lanes(s.h_prev + b * H) : nullptr;
    const Lane<T>* dy = s.grad_y ? lanes(s.grad_y + b * H) : nullptr;
    A* __restrict dh = s.dh + b * H;
    Lane<T>* __restrict dg = lanes(s.dgates + b * 4 * H);
#pragma omp simd
    for (int64_t j = 0; j < s.units; ++j) {
      const A d = dh[j] + (dy ? widen<T>(dy[j]) : A(0));
      const auto u = gru_unit_grad(g[j], g[H + j], g[2 * H + j], g[3 * H + j], hp ? widen<T>(hp[j]) : A(0), d);
      dg[j] = narrow<T>(u.r);
      dg[H + j] = narrow<T>(u.z);
      dg[2 * H + j] = narrow<T>(u.hh_n);
      dg[3 * H + j] = narrow<T>(u.ih_n);
      dh[j] = u.h_prev;
    }
  }
}

// Elman RNN: h = tanh(pre) or max(pre, 0).
template <bool kRelu, class T>
void rnn_forward(const ForwardStep<T>& s) {
  for (int64_t b = 0; b < s.rows; ++b) {
    const Acc<T>* __restrict pre = s.pre + b * s.pre_block;
    Lane<T>* __restrict h = lanes(s.h + b * s.H);
    Lane<T>* __restrict y = s.y ? lanes(s.y + b * s.H) : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < s.units; ++j) {
      const Lane<T> out = narrow<T>(rnn_activation<kRelu>(pre[j]));
      if (y) y[j] = out;
      h[j] = out;
    }
  }
}

template <bool kRelu, class T>
void rnn_backward(const BackwardStep<T>& s) {
  using A = Acc<T>;
  const int64_t H = s.H;
  for (int64_t b = 0; b < s.rows; ++b) {
    const Lane<T>* __restrict h = lanes(s.h + b * H);
    const Lane<T>* dy = s.grad_y ? lanes(s.grad_y + b * H) : nullptr;
    A* __restrict dh = s.dh + b * H;
    Lane<T>* __restrict dg = lanes(s.dgates + b * H);
#pragma omp simd
    for (int64_t j = 0; j < s.units; ++j) {
      const A d = dh[j] + (dy ? widen<T>(dy[j]) : A(0));
      dg[j] = narrow<T>(rnn_activation_grad<kRelu>(widen<T>(h[j]), d));
      dh[j] = A(0);
    }
  }
}

template <class T>
constexpr CellKernels<T> kernels_of = {.lstm_forward = &lstm_forward<T>,
                                       .lstm_backward = &lstm_backward<T>,
                                       .gru_forward = &gru_forward<T>,
                                       .gru_backward = &gru_backward<T>,
                                       .rnn_tanh_forward = &rnn_forward<false, T>,
                                       .rnn_tanh_backward = &rnn_backward<false, T>,
                                       .rnn_relu_forward = &rnn_forward<true, T>,
                                       .rnn_relu_backward = &rnn_backward<true, T>};

}  // namespace

const CellKernelTable cell_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>, .b16 = kernels_of<bf16>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
