// The LSTM cell kernels of cell_kernels.h, compiled once per ISA (a per-ISA source). Each row of
// a block is one vectorized pass over its units: the activations (cell_math.h, shared with the GPU),
// the cell update and every store of the step happen in that one pass.
#include <cstdint>

#include "cpu/lstm/cell_kernels.h"
#include "cpu/lstm/cell_math.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

using lstm_math::sigmoid;
using lstm_math::tanh_of;

// One row of cell_forward. kKeep: also store the activations to `act` (gate blocks H apart) and
// h to y, for backward (a separate instantiation: inference's loop stores no more than it needs).
template <bool kKeep, class T>
[[gnu::always_inline]] inline void cell_row(int64_t units, const T* __restrict pre, int64_t pb, T* __restrict act,
                                            int64_t H, const T* cp, T* __restrict c, T* __restrict h, T* __restrict y) {
#pragma omp simd
  for (int64_t j = 0; j < units; ++j) {
    const T i = sigmoid(pre[j]), f = sigmoid(pre[pb + j]), gg = tanh_of(pre[2 * pb + j]), o = sigmoid(pre[3 * pb + j]);
    const T cn = (cp ? f * cp[j] : T(0)) + i * gg;
    const T hn = o * tanh_of(cn);
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
void cell_forward(int64_t rows, int64_t units, const T* __restrict pre, int64_t pre_block, T* __restrict act, int64_t H,
                  const T* c_prev, T* __restrict c, T* __restrict h, T* __restrict y) {
  for (int64_t b = 0; b < rows; ++b) {
    const T* pb = pre + b * 4 * pre_block;
    const T* cp = c_prev ? c_prev + b * H : nullptr;
    if (act)
      cell_row<true>(units, pb, pre_block, act + b * 4 * H, H, cp, c + b * H, h + b * H, y + b * H);
    else
      cell_row<false>(units, pb, pre_block, act, H, cp, c + b * H, h + b * H, y);
  }
}

template <class T>
void cell_backward(int64_t rows, int64_t H, int64_t units, const T* __restrict gates, const T* __restrict c,
                   const T* c_prev, const T* grad_y, const T* __restrict dh, T* __restrict dc, T* __restrict dgates) {
  for (int64_t b = 0; b < rows; ++b) {
    const T* g = gates + b * 4 * H;
    const T* cp = c_prev ? c_prev + b * H : nullptr;
    const T* dy = grad_y ? grad_y + b * H : nullptr;
    T* dg = dgates + b * 4 * H;
#pragma omp simd
    for (int64_t j = 0; j < units; ++j) {
      const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
      const T tc = tanh_of(c[b * H + j]);
      const T dhj = dh[b * H + j] + (dy ? dy[j] : T(0));
      const T dct = dc[b * H + j] + dhj * o * (T(1) - tc * tc);
      dg[j] = dct * gg * i * (T(1) - i);
      dg[H + j] = (cp ? dct * cp[j] : T(0)) * f * (T(1) - f);
      dg[2 * H + j] = dct * i * (T(1) - gg * gg);
      dg[3 * H + j] = dhj * tc * o * (T(1) - o);
      dc[b * H + j] = dct * f;
    }
  }
}

template <class T>
constexpr CellKernels<T> kernels_of = {.forward = &cell_forward<T>, .backward = &cell_backward<T>};

}  // namespace

const KernelsByType<CellKernels> cell_kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
