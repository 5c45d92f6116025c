// LSTM layer: the input projection of all steps is one GEMM; each step adds the recurrent GEMM
// h_{t-1} @ W_hh^T into its gate rows and one fused pointwise pass applies the activations and the
// cell update (gates are written once, already activated, for backward). Backward walks the steps
// in reverse with one fused pointwise pass and one GEMM (dG_t @ W_hh) per step, then gets the
// weight and input gradients of all steps from three large GEMMs over T * B rows.
#include "cpu/lstm/lstm.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <new>
#include <cstdint>
#include <cstring>

#include "core/cpu_features.h"
#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {
namespace {

// e^x for float with a polynomial the compiler vectorizes (Cephes expf: x = n ln2 + r,
// |r| <= ln2 / 2, degree-6 polynomial, 2^n through the exponent bits; about 1 ulp), clamped to
// float's range. double (the gradient-check path) calls std::exp.
inline float exp_of(float x) {
  x = std::min(std::max(x, -87.3f), 88.7f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}
inline double exp_of(double x) { return std::exp(x); }

template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}
template <class T>
inline T tanh_of(T x) {  // 2 sigmoid(2x) - 1
  return T(2) / (T(1) + exp_of(T(-2) * x)) - T(1);
}

// One row of cell_forward; kAdd: add the recurrent product r first (a separate instantiation, so
// the batched path's loop carries no per-element test).
template <bool kAdd, class T>
[[gnu::always_inline]] inline void cell_row(int64_t H, int64_t units, T* __restrict g, const T* __restrict r,
                                            int64_t rb, const T* cp, T* __restrict c, T* __restrict h,
                                            T* __restrict y) {
#pragma omp simd
  for (int64_t j = 0; j < units; ++j) {
    T pi = g[j], pf = g[H + j], pg = g[2 * H + j], po = g[3 * H + j];
    if constexpr (kAdd) {
      pi += r[j];
      pf += r[rb + j];
      pg += r[2 * rb + j];
      po += r[3 * rb + j];
    }
    const T i = sigmoid(pi), f = sigmoid(pf), gg = tanh_of(pg), o = sigmoid(po);
    const T cn = (cp ? f * cp[j] : T(0)) + i * gg;
    const T hn = o * tanh_of(cn);
    g[j] = i;
    g[H + j] = f;
    g[2 * H + j] = gg;
    g[3 * H + j] = o;
    c[j] = cn;
    h[j] = hn;
    if (y) y[j] = hn;
  }
}

// One step's gates of `rows` batch rows: pre-activations in, activations (i, f, g, o) out; the new
// cell and hidden states (the hidden state also into y unless y is null). c_prev null means zero.
// Covers `units` hidden units from the given pointers (all H, or one thread's share at batch 1);
// rows are 4H (gates) and H (states) apart. `recurrent`, when given (batch 1: rows == 1), holds
// the recurrent product of these units, gate blocks `recurrent_block` apart, added to the gates.
template <class T>
DEEPKERN_ISA_CLONES void cell_forward(int64_t rows, int64_t H, int64_t units, T* __restrict gates,
                                      const T* __restrict recurrent, int64_t recurrent_block, const T* c_prev,
                                      T* __restrict c, T* __restrict h, T* __restrict y) {
  for (int64_t b = 0; b < rows; ++b) {
    T* g = gates + b * 4 * H;
    const T* cp = c_prev ? c_prev + b * H : nullptr;
    T* yb = y ? y + b * H : nullptr;
    if (recurrent)
      cell_row<true>(H, units, g, recurrent, recurrent_block, cp, c + b * H, h + b * H, yb);
    else
      cell_row<false>(H, units, g, recurrent, recurrent_block, cp, c + b * H, h + b * H, yb);
  }
}

// One step backward for `rows` batch rows: dh is the full gradient of h_t, dc comes in as the
// gradient of c_t from later steps and leaves as the gradient of c_{t-1}; dgates receives the
// gradient of the gate pre-activations.
template <class T>
DEEPKERN_ISA_CLONES void cell_backward(int64_t rows, int64_t H, const T* __restrict gates,
                                       const T* __restrict c, const T* c_prev, const T* __restrict dh,
                                       T* __restrict dc, T* __restrict dgates) {
  for (int64_t b = 0; b < rows; ++b) {
    const T* g = gates + b * 4 * H;
    const T* cp = c_prev ? c_prev + b * H : nullptr;
    T* dg = dgates + b * 4 * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
      const T tc = tanh_of(c[b * H + j]);
      const T dhj = dh[b * H + j];
      const T dct = dc[b * H + j] + dhj * o * (T(1) - tc * tc);
      dg[j] = dct * gg * i * (T(1) - i);
      dg[H + j] = (cp ? dct * cp[j] : T(0)) * f * (T(1) - f);
      dg[2 * H + j] = dct * i * (T(1) - gg * gg);
      dg[3 * H + j] = dhj * tc * o * (T(1) - o);
      dc[b * H + j] = dct * f;
    }
  }
}

// Runs fn(row0, rows) over the batch, split over threads when the step is big enough to pay.
template <class Fn>
void over_batch(int64_t batch, int64_t hidden, Fn fn) {
  const int threads = batch * hidden < (int64_t(1) << 12)
                          ? 1
                          : static_cast<int>(std::min<int64_t>(num_threads(), batch));
  run_on_threads(threads, [&](int t) {
    const int64_t b0 = batch * t / threads, b1 = batch * (t + 1) / threads;
    if (b1 > b0) fn(b0, b1 - b0);
  });
}

// Index of the step processed s-th.
int64_t step_at(const LstmShape& s, int64_t order) { return s.reverse ? s.steps - 1 - order : order; }

struct LstmScratch;  // this family's thread_scratch tag
// Slots: W_hh laid out for the step products; W_ih packed (inference); gate rows (an inference
// chunk, or backward's gate gradients); the rolling cell rows of inference; a team thread's W_hh rows.
enum LstmSlot { kRecurrentSlot, kInputSlot, kGateSlot, kCellSlot, kTeamSlot, kSlotCount };

template <class T>
T* scratch(LstmSlot slot, int64_t count) {
  return thread_scratch<LstmScratch, kSlotCount, T>(slot, count);
}

// Inference: bytes of gate pre-activations projected per chunk of steps. Measured on the 2-core
// AVX-512 machine (T=50 B=64 I=H=512, 2 threads): 1 MB chunks 57 ms, 4 MB 50 ms, 16 MB 70 ms; the
// one-GEMM projection of the cached path 52 ms.
constexpr int64_t kGateChunkBytes = int64_t(4) << 20;
// Batch 1: the smallest hidden size whose steps run on a team of threads (forward_batch1_team).
constexpr int64_t kTeamMinHidden = 64;

// The recurrent product C (B x n) = A (B x k) @ W (+ C) of every step, with W packed once per call
// into this thread's scratch (re-packing W in every step's GEMM cost more than the product at
// small B; kept scratch costs no page faults on repeated calls). At B == 1 the packed GEMV reads
// it as one sequential stream, on one thread below kParallelGemv multiply-adds (a thread hand-off
// per step costs more than it saves there).
template <class T>
class StepProduct {
 public:
  StepProduct(int64_t batch, int64_t k, int64_t n, StridedMatrix<const T> w)
      : batch_(batch), k_(k), packed_(pack_b_matrix(k, n, w, scratch<T>(kRecurrentSlot, packed_b_size<T>(k, n)))) {}
  void operator()(const T* a, T beta, T* c) const {
    const int threads = batch_ == 1 && k_ * packed_.n < kParallelGemv ? 1 : 0;
    gemm_prepacked<T>(batch_, T(1), {a, k_, 1}, packed_, beta, {c, packed_.n, 1}, {}, threads);
  }

 private:
  static constexpr int64_t kParallelGemv = int64_t(1) << 18;
  int64_t batch_, k_;
  PackedB<T> packed_;
};

template <class T>
void copy_or_zero(const T* src, int64_t count, T* dst) {
  if (src)
    std::copy(src, src + count, dst);
  else
    std::fill(dst, dst + count, T(0));
}

// The states step `order` reads and writes: h_{t-1} from hidden rows (the cache, or y), c_{t-1}
// and c_t in the cache or, for inference (cells null), in two rolling rows.
template <class T>
struct StepStates {
  const LstmShape& s;
  int64_t state;  // B * H
  const T *h0, *c0;
  const T* hidden_rows;
  T *cells, *rolling;
  int64_t t = 0;
  const T* h_prev = nullptr;
  const T* c_prev = nullptr;
  T* c_t = nullptr;

  void at(int64_t order) {
    t = step_at(s, order);
    const int64_t prev = order == 0 ? 0 : step_at(s, order - 1);
    h_prev = order == 0 ? h0 : hidden_rows + prev * state;
    c_prev = order == 0 ? c0 : cells ? cells + prev * state : rolling + ((order - 1) & 1) * state;
    c_t = cells ? cells + t * state : rolling + (order & 1) * state;
  }
  // h_last, c_last: the states after the last step (call after at(s.steps - 1)).
  void copy_last(T* h_last, T* c_last) const {
    std::copy(hidden_rows + t * state, hidden_rows + (t + 1) * state, h_last);
    std::copy(c_t, c_t + state, c_last);
  }
};

// Batch 1 on a team of threads: the sequence's steps run inside one parallel region. Thread t owns
// hidden units [j0, j1): it keeps its rows of W_hh (four gate blocks of j1 - j0 rows, packed for
// one GEMV) in its own scratch, so they stay in its core's L2, and each step runs
// its part of the recurrent GEMV, the cell update of its units (which adds the product to the
// gates), then one barrier (every thread reads all of h_{t-1}). A step then streams 1/team of
// W_hh per core and costs one barrier instead of a thread hand-off per product. gate_rows (T, 4H)
// hold the input projection; cells null (inference) keeps c in two rolling rows and h only in y.
template <class T>
void forward_batch1_team(const LstmShape& s, int team, const T* h0, const T* c0, const T* w_hh,
                         T* gate_rows, T* cells, T* hidden_rows, T* y, T* h_last, T* c_last) {
  const int64_t H = s.hidden, G = 4 * H;
  const bool keep = cells != nullptr;
  T* rolling = keep ? nullptr : scratch<T>(kCellSlot, 2 * H);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(team)
  {
    const int threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t share = (H + threads - 1) / threads;
    const int64_t j0 = std::min(H, id * share), n = std::min(H, j0 + share) - j0;
    // This thread's columns of W_hh^T, gate blocks i, f, g, o packed one after another, each
    // padded to whole panels (`block` columns): together one packed B of 4 * block columns, whose
    // product (gate blocks `block` apart) follows the panels in the same scratch.
    PackedB<T> slice;
    T* product = nullptr;
    try {
      const int64_t block_size = packed_b_size<T>(H, std::max<int64_t>(n, 1)), block = block_size / H;
      T* panels = scratch<T>(kTeamSlot, 4 * block_size + 4 * block);
      for (int q = 0; q < 4; ++q)
        slice = pack_b_matrix<T>(H, n, {w_hh + (q * H + j0) * H, 1, H}, panels + q * block_size);
      slice.panels = panels;
      slice.n = 4 * block;
      product = panels + 4 * block_size;
      T probe_out = 0;
      const T probe = 1;  // the GEMV's own scratch is allocated here, not inside the step loop
      gemm<T>(1, 1, 1, T(1), {&probe, 1, 1}, {&probe, 1, 1}, T(0), {&probe_out, 1, 1}, {}, 1);
    } catch (...) {
      failed = true;
    }
#pragma omp barrier
    if (!failed) {
      StepStates<T> st{s, H, h0, c0, hidden_rows, cells, rolling};
      for (int64_t order = 0; order < s.steps; ++order) {
        st.at(order);
        if (n > 0) {
          if (st.h_prev) gemm_prepacked<T>(1, T(1), {st.h_prev, H, 1}, slice, T(0), {product, slice.n, 1}, {}, 1);
          cell_forward(int64_t(1), H, n, gate_rows + st.t * G + j0, st.h_prev ? product : nullptr, slice.n / 4,
                       st.c_prev ? st.c_prev + j0 : nullptr, st.c_t + j0, hidden_rows + st.t * H + j0,
                       keep ? y + st.t * H + j0 : nullptr);
        }
#pragma omp barrier
      }
    }
  }
  if (failed) throw std::bad_alloc();
  StepStates<T> st{s, H, h0, c0, hidden_rows, cells, rolling};
  st.at(s.steps - 1);
  st.copy_last(h_last, c_last);
}

// Threads for forward_batch1_team: batch 1 with a W_hh worth sharing (H >= kTeamMinHidden) and
// the input projection of every step in one buffer (a cache, or a sequence within one chunk).
int batch1_team(const LstmShape& s, bool keep, int64_t chunk) {
  if (s.batch != 1 || s.hidden < kTeamMinHidden || !(keep || chunk >= s.steps)) return 0;
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), s.hidden / 16));
  return threads > 1 ? threads : 0;
}

}  // namespace

template <class T>
void lstm_forward(const LstmShape& s, const T* x, const T* h0, const T* c0, const T* w_ih,
                  const T* w_hh, const T* bias, T* y, T* h_last, T* c_last, T* gates, T* cells,
                  T* hidden) {
  const int64_t B = s.batch, H = s.hidden, G = 4 * H, state = B * H;
  if (s.steps == 0) {
    copy_or_zero(h0, state, h_last);
    copy_or_zero(c0, state, c_last);
    return;
  }
  GemmEpilogue<T> with_bias;
  with_bias.bias = bias;
  with_bias.bias_axis = bias ? BiasAxis::cols : BiasAxis::none;
  // Input projection: gates (steps x B x 4H) = x @ w_ih^T + bias. With a cache, all steps in one
  // GEMM; for inference, `chunk` steps at a time into scratch (w_ih packed once), so the gates
  // stay in cache for their step and nothing of size T is allocated.
  const bool keep = gates != nullptr;
  const int64_t chunk = keep ? s.steps
                             : std::clamp<int64_t>(kGateChunkBytes / int64_t(sizeof(T) * B * G), 1, s.steps);
  const int team = batch1_team(s, keep, chunk);
  T* gate_rows = keep ? gates : scratch<T>(kGateSlot, chunk * B * G);
  T* hidden_rows = keep ? hidden : y;
  PackedB<T> w_ih_packed;
  if (keep || team)
    gemm<T>(s.steps * B, G, s.input, T(1), {x, s.input, 1}, {w_ih, 1, s.input}, T(0), {gate_rows, G, 1}, with_bias);
  else
    w_ih_packed = pack_b_matrix<T>(s.input, G, {w_ih, 1, s.input}, scratch<T>(kInputSlot, packed_b_size<T>(s.input, G)));
  if (team)
    return forward_batch1_team(s, team, h0, c0, w_hh, gate_rows, cells, hidden_rows, y, h_last, c_last);
  StepStates<T> st{s, state, h0, c0, hidden_rows, cells,
                    keep ? nullptr : scratch<T>(kCellSlot, 2 * state)};  // inference: c_{t-1}, c_t
  int64_t first = 0;  // the first step (in memory order) of the projected chunk
  const StepProduct<T> recurrent(B, H, G, {w_hh, 1, H});  // h_{t-1} @ w_hh^T
  for (int64_t order = 0; order < s.steps; ++order) {
    st.at(order);
    const int64_t t = st.t;
    if (!keep && order % chunk == 0) {
      const int64_t n = std::min(chunk, s.steps - order);
      first = s.reverse ? t - n + 1 : t;
      gemm_prepacked<T>(n * B, T(1), {x + first * B * s.input, s.input, 1}, w_ih_packed, T(0),
                        {gate_rows, G, 1}, with_bias);
    }
    T* g_t = gate_rows + (t - first) * B * G;
    if (st.h_prev) recurrent(st.h_prev, T(1), g_t);
    over_batch(B, H, [&](int64_t b0, int64_t rows) {
      cell_forward(rows, H, H, g_t + b0 * G, static_cast<const T*>(nullptr), int64_t(0),
                   st.c_prev ? st.c_prev + b0 * H : nullptr, st.c_t + b0 * H, hidden_rows + t * state + b0 * H,
                   keep ? y + t * state + b0 * H : nullptr);
    });
  }
  st.copy_last(h_last, c_last);
}

template <class T>
void lstm_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* grad_c_last,
                   const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                   const T* gates, const T* cells, const T* hidden, T* grad_x, T* grad_h0,
                   T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  const int64_t B = s.batch, H = s.hidden, G = 4 * H, state = B * H, rows = s.steps * B;
  copy_or_zero(grad_h_last, state, grad_h0);  // dh and dc of the step being processed
  copy_or_zero(grad_c_last, state, grad_c0);
  if (s.steps == 0) {
    std::fill(grad_w_ih, grad_w_ih + G * s.input, T(0));
    std::fill(grad_w_hh, grad_w_hh + G * H, T(0));
    std::fill(grad_bias, grad_bias + G, T(0));
    return;
  }
  T* const dgates = scratch<T>(kGateSlot, rows * G);  // kept for the next call: no page faults
  const StepProduct<T> recurrent(B, G, H, {w_hh, H, 1});  // dG_t @ w_hh
  T* dh = grad_h0;
  T* dc = grad_c0;
  for (int64_t order = s.steps - 1; order >= 0; --order) {
    const int64_t t = step_at(s, order);
    const T* c_prev = order == 0 ? c0 : cells + step_at(s, order - 1) * state;
    if (grad_y)
      for (int64_t k = 0; k < state; ++k) dh[k] += grad_y[t * state + k];
    T* dg_t = dgates + t * B * G;
    over_batch(B, H, [&](int64_t b0, int64_t n) {
      cell_backward(n, H, gates + t * B * G + b0 * G, cells + t * state + b0 * H,
                    c_prev ? c_prev + b0 * H : nullptr, dh + b0 * H, dc + b0 * H, dg_t + b0 * G);
    });
    recurrent(dg_t, T(0), dh);  // gradient of h_{t-1}: dG_t (B x 4H) @ w_hh (4H x H)
  }
  const T* dg = dgates;
  // All steps at once: grad_x = dG @ w_ih, grad_w_ih = dG^T @ x.
  gemm<T>(rows, s.input, G, T(1), {dg, G, 1}, {w_ih, s.input, 1}, T(0), {grad_x, s.input, 1}, {});
  gemm<T>(G, s.input, rows, T(1), {dg, 1, G}, {x, s.input, 1}, T(0), {grad_w_ih, s.input, 1}, {});
  // grad_w_hh = sum over steps of dG_t^T @ h_{t-1}: the steps whose h_{t-1} is a stored hidden
  // state form one contiguous range, paired with hidden states one step away; the first step
  // processed pairs with h0.
  const int64_t first = step_at(s, 0);
  const int64_t dg_from = s.reverse ? 0 : 1, h_from = s.reverse ? 1 : 0;
  gemm<T>(G, H, (s.steps - 1) * B, T(1), {dg + dg_from * B * G, 1, G}, {hidden + h_from * state, H, 1},
          T(0), {grad_w_hh, H, 1}, {});
  if (h0) gemm<T>(G, H, B, T(1), {dg + first * B * G, 1, G}, {h0, H, 1}, T(1), {grad_w_hh, H, 1}, {});
  std::fill(grad_bias, grad_bias + G, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = dg + r * G;
#pragma omp simd
    for (int64_t j = 0; j < G; ++j) grad_bias[j] += row[j];
  }
}

template void lstm_forward<float>(const LstmShape&, const float*, const float*, const float*, const float*,
                                  const float*, const float*, float*, float*, float*, float*, float*, float*);
template void lstm_forward<double>(const LstmShape&, const double*, const double*, const double*,
                                   const double*, const double*, const double*, double*, double*, double*,
                                   double*, double*, double*);
template void lstm_backward<float>(const LstmShape&, const float*, const float*, const float*, const float*,
                                   const float*, const float*, const float*, const float*, const float*,
                                   const float*, const float*, float*, float*, float*, float*, float*, float*);
template void lstm_backward<double>(const LstmShape&, const double*, const double*, const double*,
                                    const double*, const double*, const double*, const double*, const double*,
                                    const double*, const double*, const double*, double*, double*, double*,
                                    double*, double*, double*);

}  // namespace deepkern::cpu
