// The recurrent layers' host side on the GPU (lstm.h): one driver for the LSTM, the GRU and the
// Elman RNN (their layouts from cpu/lstm/cell_layout.h, their kernels from lstm_kernels.cu), the
// LSTM forward's choice of path, the GEMMs and the per-step launches, all queued on one stream.
#include "cuda/lstm/lstm.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include "cpu/lstm/cell_layout.h"
#include "cuda/check.h"
#include "cuda/lstm/lstm_kernels.h"

namespace deepkern::cuda {
namespace {

using cell_layout::Segment;

std::atomic<LstmPath> chosen{LstmPath::automatic};
std::atomic<LstmPath> last{LstmPath::automatic};

// The cells: their layouts and the kind their kernels are instantiated for.
struct LstmCell : cell_layout::Lstm {
  static constexpr CellKind kKind = CellKind::lstm;
};
struct GruCell : cell_layout::Gru {
  static constexpr CellKind kKind = CellKind::gru;
};
template <bool kRelu>
struct RnnCell : cell_layout::Rnn {
  static constexpr CellKind kKind = kRelu ? CellKind::rnn_relu : CellKind::rnn_tanh;
};

// Calls run(cell) with the RNN's cell of that nonlinearity.
template <class Run>
void with_rnn_cell(bool relu, Run&& run) {
  relu ? run(RnnCell<true>{}) : run(RnnCell<false>{});
}

// Index of the step processed `order`-th.
std::int64_t step_at(const LstmShape& s, std::int64_t order) { return s.reverse ? s.steps - 1 - order : order; }

// An operand of a GEMM: its first element and element strides.
struct Operand {
  const float* data;
  std::int64_t row_stride, col_stride;
};

// c (m x n, rows c_row apart) = a @ b + beta * c, float32 data in `precision`.
void matmul(GemmPrecision precision, std::int64_t m, std::int64_t n, std::int64_t k, Operand a, Operand b, float* c,
            std::int64_t c_row, float beta, cudaStream_t stream) {
  GemmProblem p;
  p.m = m, p.n = n, p.k = k;
  p.precision = precision;
  p.a.data = a.data, p.a.row_stride = a.row_stride, p.a.col_stride = a.col_stride;
  p.b.data = b.data, p.b.row_stride = b.row_stride, p.b.col_stride = b.col_stride;
  p.c = c, p.c_row_stride = c_row, p.c_col_stride = 1;
  p.beta = beta;
  gemm(p, stream);
}

// dst = src (count floats), or zeros when src is null.
void copy_or_zero(const float* src, std::int64_t count, float* dst, cudaStream_t stream) {
  const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  if (bytes == 0) return;
  if (src)
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync(recurrent state)");
  else
    check(cudaMemsetAsync(dst, 0, bytes, stream), "cudaMemsetAsync(recurrent state)");
}

// Bytes of `count` floats rounded up to 256 (each workspace array starts 256-byte aligned).
std::size_t aligned_floats(std::int64_t count) {
  return (static_cast<std::size_t>(count) * sizeof(float) + 255) / 256 * 256;
}
constexpr std::size_t kCounterBytes = 256;  // the barrier counter, then 256-byte aligned arrays

// The forward workspace of a cell, carved from `base` (null: only its size counted in `bytes`):
// the barrier counter, the gate sums of all steps (unless the cache holds them), the LSTM's two
// rolling rows of c (inference) and the GRU's recurrent rows.
template <class Cell>
struct ForwardWorkspace {
  unsigned int* counter = nullptr;
  float *pre = nullptr, *c_rows = nullptr, *hh = nullptr;
  std::size_t bytes = kCounterBytes;

  ForwardWorkspace(const LstmShape& s, bool cached, void* base) {
    char* at = static_cast<char*>(base);
    const auto take = [&](std::int64_t count) {
      float* p = at ? reinterpret_cast<float*>(at + bytes) : nullptr;
      bytes += aligned_floats(count);
      return p;
    };
    counter = static_cast<unsigned int*>(base);
    const std::int64_t state = s.batch * s.hidden;
    if (!cached || Cell::kAct == 0) pre = take(s.steps * s.batch * pre_width(Cell::kKind, s.hidden));
    if (Cell::kCell && !cached) c_rows = take(2 * state);
    if (Cell::kOwnRecurrence) hh = take(s.batch * Cell::kGates * s.hidden);
  }
};

// The arrays of a forward (those a cell lacks are null): bias is added to the gate sums of the
// input, bias_hh (the GRU's b_hh) to those of the recurrence.
struct ForwardArrays {
  const float *x, *h0, *c0, *w_ih, *w_hh, *bias, *bias_hh;
  float *y, *h_last, *c_last, *gates, *cells, *hidden;
};

// Where a forward keeps its states: the gate sums `pre` (rows of pre_width), c (each step's in the
// cache, or two rolling rows) and h (the cache, or y).
struct ForwardRows {
  float *pre, *c, *h;
  bool keep;
  const float* h_prev(const LstmShape& s, std::int64_t order) const {
    return order == 0 ? nullptr : h + step_at(s, order - 1) * s.batch * s.hidden;
  }
  std::int64_t c_row(const LstmShape& s, std::int64_t order) const { return keep ? step_at(s, order) : order % 2; }
};

// The forward of cell `Cell`: states passed through without a gate; else the input projection of
// all steps as one GEMM, then the steps, by `persistent` (the LSTM's persistent kernel; it returns
// false when the per-step path is to run) or per step by the recurrent GEMM and one cell kernel;
// then the final states.
template <class Cell, class Persistent>
void layer_forward(const LstmShape& s, GemmPrecision precision, const ForwardArrays& a, void* workspace,
                   cudaStream_t stream, Persistent&& persistent) {
  const std::int64_t B = s.batch, I = s.input, H = s.hidden, G = Cell::kGates * H, state = B * H;
  const std::int64_t P = pre_width(Cell::kKind, H);
  if (s.steps == 0 || B == 0 || H == 0) {  // no gate: the states pass through (or are empty)
    copy_or_zero(a.h0, state, a.h_last, stream);
    if (Cell::kCell) copy_or_zero(a.c0, state, a.c_last, stream);
    return;
  }
  const bool keep = a.hidden != nullptr;
  const ForwardWorkspace<Cell> w(s, keep, workspace);
  const ForwardRows rows{w.pre ? w.pre : a.gates, keep ? a.cells : w.c_rows, keep ? a.hidden : a.y, keep};
  // All steps' input projections: pre (T*B, G of P) = x (T*B, I) @ W_ih^T.
  if (I == 0)
    check(cudaMemsetAsync(rows.pre, 0, static_cast<std::size_t>(s.steps * B * P) * sizeof(float), stream),
          "cudaMemsetAsync(recurrent gate sums)");
  else
    matmul(precision, s.steps * B, G, I, {a.x, I, 1}, {a.w_ih, 1, I}, rows.pre, P, 0.0f, stream);
  if (!persistent(rows, w.counter)) {
    for (std::int64_t order = 0; order < s.steps; ++order) {
      const std::int64_t t = step_at(s, order);
      float* pre_t = rows.pre + t * B * P;
      const float* h_prev = order == 0 ? a.h0 : rows.h_prev(s, order);
      const float* hh = nullptr;  // the GRU's W_hh h_{t-1} (null: zero)
      if (h_prev && Cell::kOwnRecurrence) {
        matmul(precision, B, G, H, {h_prev, H, 1}, {a.w_hh, 1, H}, w.hh, G, 0.0f, stream);
        hh = w.hh;
      } else if (h_prev) {
        matmul(precision, B, G, H, {h_prev, H, 1}, {a.w_hh, 1, H}, pre_t, P, 1.0f, stream);
      }
      CellForward step{B, H, pre_t, a.bias, hh, a.bias_hh, h_prev};
      if (Cell::kCell) {
        step.c_prev = order == 0 ? a.c0 : rows.c + rows.c_row(s, order - 1) * state;
        step.c = rows.c + rows.c_row(s, order) * state;
      }
      step.act = keep && Cell::kAct ? a.gates + t * B * P : nullptr;
      step.h = rows.h + t * state;
      step.y = keep ? a.y + t * state : nullptr;
      cell_forward(Cell::kKind, step, stream);
    }
  }
  const std::int64_t final_order = s.steps - 1;
  copy_or_zero(rows.h + step_at(s, final_order) * state, state, a.h_last, stream);
  if (Cell::kCell) copy_or_zero(rows.c + rows.c_row(s, final_order) * state, state, a.c_last, stream);
}

// The arrays of a backward (those a cell lacks are null): grad_b_hh null when it equals grad_b_ih.
struct BackwardArrays {
  const float *grad_y, *grad_h_last, *grad_c_last, *x, *h0, *c0, *w_ih, *w_hh, *gates, *cells, *hidden;
  float *grad_x, *grad_h0, *grad_c0, *grad_w_ih, *grad_w_hh, *grad_b_ih, *grad_b_hh;
};

// Backpropagation through time for layer_forward: per step (latest first) the cell kernel, then
// dh (+)= dG_t's recurrent blocks @ W_hh; then the input and weight gradients of all steps, one
// GEMM per Segment, and the bias gradients from dG's column sums, gathered by segment.
template <class Cell>
void layer_backward(const LstmShape& s, GemmPrecision precision, const BackwardArrays& a, void* workspace,
                    cudaStream_t stream) {
  const std::int64_t B = s.batch, I = s.input, H = s.hidden, G = Cell::kGates * H, Gd = Cell::kGrad * H, state = B * H,
                     rows = s.steps * B;
  float* dh = a.grad_h0;  // dh and dc of the step being processed
  float* dc = a.grad_c0;
  copy_or_zero(a.grad_h_last, state, dh, stream);
  if (Cell::kCell) copy_or_zero(a.grad_c_last, state, dc, stream);
  if (rows == 0 || H == 0) {  // no gate: no gradient reaches x or the weights
    copy_or_zero(nullptr, rows * I, a.grad_x, stream);
    copy_or_zero(nullptr, G * I, a.grad_w_ih, stream);
    copy_or_zero(nullptr, G * H, a.grad_w_hh, stream);
    copy_or_zero(nullptr, G, a.grad_b_ih, stream);
    if (a.grad_b_hh) copy_or_zero(nullptr, G, a.grad_b_hh, stream);
    return;
  }
  auto* dg = static_cast<float*>(workspace);  // dG (T*B, Gd): the gate sums' gradients
  float* sums = reinterpret_cast<float*>(static_cast<char*>(workspace) + aligned_floats(rows * Gd));
  for (std::int64_t order = s.steps - 1; order >= 0; --order) {
    const std::int64_t t = step_at(s, order), prev = order == 0 ? 0 : step_at(s, order - 1) * state;
    CellBackward step{B, H};
    step.act = Cell::kAct ? a.gates + t * B * Cell::kAct * H : nullptr;
    step.h = a.hidden + t * state;
    step.h_prev = order == 0 ? a.h0 : a.hidden + prev;
    if (Cell::kCell) {
      step.c = a.cells + t * state;
      step.c_prev = order == 0 ? a.c0 : a.cells + prev;
    }
    step.grad_y = a.grad_y ? a.grad_y + t * state : nullptr;
    step.dh = dh, step.dc = dc, step.dgates = dg + t * B * Gd;
    cell_backward(Cell::kKind, step, stream);
    matmul(precision, B, H, G, {step.dgates, Gd, 1}, {a.w_hh, H, 1}, dh, H, Cell::kOwnRecurrence ? 1.0f : 0.0f, stream);
  }
  // All steps at once: grad_x = dG_ih @ W_ih, grad_w_ih = dG_ih^T @ x, by segment.
  bool first_segment = true;
  for (const Segment& g : Cell::kIh) {
    const float* d = dg + g.col * H;
    matmul(precision, rows, I, g.blocks * H, {d, Gd, 1}, {a.w_ih + g.row * H * I, I, 1}, a.grad_x, I,
           first_segment ? 0.0f : 1.0f, stream);
    matmul(precision, g.blocks * H, I, rows, {d, 1, Gd}, {a.x, I, 1}, a.grad_w_ih + g.row * H * I, I, 0.0f, stream);
    first_segment = false;
  }
  // grad_w_hh = sum over steps of dG_hh,t^T @ h_{t-1}: the steps whose h_{t-1} is a stored hidden
  // state form one contiguous range, paired with hidden states one step away; the first step
  // processed pairs with h0.
  const std::int64_t dg_from = s.reverse ? 0 : 1, h_from = s.reverse ? 1 : 0;
  for (const Segment& g : Cell::kHh) {
    float* out = a.grad_w_hh + g.row * H * H;
    matmul(precision, g.blocks * H, H, (s.steps - 1) * B, {dg + dg_from * B * Gd + g.col * H, 1, Gd},
           {a.hidden + h_from * state, H, 1}, out, H, 0.0f, stream);
    if (a.h0)
      matmul(precision, g.blocks * H, H, B, {dg + step_at(s, 0) * B * Gd + g.col * H, 1, Gd}, {a.h0, H, 1}, out, H,
             1.0f, stream);
  }
  column_sums(rows, Gd, dg, sums, stream);
  const auto gather = [&](const auto& segments, float* out) {
    for (const Segment& g : segments) copy_or_zero(sums + g.col * H, g.blocks * H, out + g.row * H, stream);
  };
  gather(Cell::kIh, a.grad_b_ih);
  if (a.grad_b_hh) gather(Cell::kHh, a.grad_b_hh);
}

// No persistent kernel: the per-step path runs.
constexpr auto kPerStep = [](const ForwardRows&, unsigned int*) { return false; };

// Calls run(cell) with the cell of `kind`.
template <class Run>
auto with_cell(CellKind kind, Run&& run) {
  switch (kind) {
    case CellKind::lstm: return run(LstmCell{});
    case CellKind::gru: return run(GruCell{});
    case CellKind::rnn_tanh: return run(RnnCell<false>{});
    default: return run(RnnCell<true>{});
  }
}

}  // namespace

void set_lstm_path(LstmPath path) { chosen.store(path); }
LstmPath lstm_path() { return chosen.load(); }
LstmPath last_lstm_path() { return last.load(); }

const char* lstm_path_name(LstmPath path) {
  switch (path) {
    case LstmPath::per_step: return "per_step";
    case LstmPath::persistent: return "persistent";
    default: return "automatic";
  }
}

std::size_t forward_workspace_bytes(CellKind kind, const LstmShape& s, bool cached) {
  return with_cell(kind, [&](auto cell) { return ForwardWorkspace<decltype(cell)>(s, cached, nullptr).bytes; });
}

std::size_t backward_workspace_bytes(CellKind kind, const LstmShape& s) {
  return with_cell(kind, [&](auto cell) {
    const std::int64_t Gd = decltype(cell)::kGrad * s.hidden;
    return aligned_floats(s.steps * s.batch * Gd) + aligned_floats(Gd);
  });
}

void lstm_forward(const LstmShape& s, GemmPrecision precision, const float* x, const float* h0, const float* c0,
                  const float* w_ih, const float* w_hh, const float* bias, float* y, float* h_last, float* c_last,
                  float* gates, float* cells, float* hidden, void* workspace, cudaStream_t stream, int max_blocks) {
  const LstmPath want = chosen.load();
  PersistentPlan plan;
  if (want != LstmPath::per_step && s.steps > 0 && s.batch > 0 && s.hidden > 0)
    plan = plan_persistent_lstm(s.batch, s.hidden, max_blocks);
  if (want == LstmPath::persistent && plan.blocks == 0 && s.steps > 0 && s.batch > 0 && s.hidden > 0)
    throw std::invalid_argument("lstm_forward: the persistent path cannot take B = " + std::to_string(s.batch) +
                                ", H = " + std::to_string(s.hidden) +
                                ": it needs H <= 256, B <= 64 and all its blocks resident on the device at once");
  last.store(s.steps == 0 || s.batch == 0 || s.hidden == 0 ? LstmPath::automatic
             : plan.blocks > 0                             ? LstmPath::persistent
                                                           : LstmPath::per_step);
  const auto persistent = [&](const ForwardRows& rows, unsigned int* counter) {
    if (plan.blocks == 0) return false;
    const PersistentLstm p{s.steps, s.batch, s.hidden, s.reverse, !rows.keep, rows.pre, h0,
                           c0,      w_hh,    bias,     y,         rows.c,     rows.h,   rows.keep ? gates : nullptr,
                           counter};
    lstm_persistent_forward(p, plan, stream);
    return true;
  };
  layer_forward<LstmCell>(s, precision, {x, h0, c0, w_ih, w_hh, bias, nullptr, y, h_last, c_last, gates, cells, hidden},
                          workspace, stream, persistent);
}

void lstm_backward(const LstmShape& s, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                   const float* grad_c_last, const float* x, const float* h0, const float* c0, const float* w_ih,
                   const float* w_hh, const float* gates, const float* cells, const float* hidden, float* grad_x,
                   float* grad_h0, float* grad_c0, float* grad_w_ih, float* grad_w_hh, float* grad_bias,
                   void* workspace, cudaStream_t stream) {
  layer_backward<LstmCell>(s, precision,
                           {grad_y, grad_h_last, grad_c_last, x, h0, c0, w_ih, w_hh, gates, cells, hidden, grad_x,
                            grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, nullptr},
                           workspace, stream);
}

void gru_forward(const LstmShape& s, GemmPrecision precision, const float* x, const float* h0, const float* w_ih,
                 const float* w_hh, const float* b_ih, const float* b_hh, float* y, float* h_last, float* gates,
                 float* hidden, void* workspace, cudaStream_t stream) {
  layer_forward<GruCell>(s, precision,
                         {x, h0, nullptr, w_ih, w_hh, b_ih, b_hh, y, h_last, nullptr, gates, nullptr, hidden},
                         workspace, stream, kPerStep);
}

void gru_backward(const LstmShape& s, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                  const float* x, const float* h0, const float* w_ih, const float* w_hh, const float* gates,
                  const float* hidden, float* grad_x, float* grad_h0, float* grad_w_ih, float* grad_w_hh,
                  float* grad_b_ih, float* grad_b_hh, void* workspace, cudaStream_t stream) {
  layer_backward<GruCell>(s, precision,
                          {grad_y, grad_h_last, nullptr, x, h0, nullptr, w_ih, w_hh, gates, nullptr, hidden, grad_x,
                           grad_h0, nullptr, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh},
                          workspace, stream);
}

void rnn_forward(const LstmShape& s, bool relu, GemmPrecision precision, const float* x, const float* h0,
                 const float* w_ih, const float* w_hh, const float* bias, float* y, float* h_last, float* hidden,
                 void* workspace, cudaStream_t stream) {
  with_rnn_cell(relu, [&](auto cell) {
    layer_forward<decltype(cell)>(
        s, precision, {x, h0, nullptr, w_ih, w_hh, bias, nullptr, y, h_last, nullptr, nullptr, nullptr, hidden},
        workspace, stream, kPerStep);
  });
}

void rnn_backward(const LstmShape& s, bool relu, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                  const float* x, const float* h0, const float* w_ih, const float* w_hh, const float* hidden,
                  float* grad_x, float* grad_h0, float* grad_w_ih, float* grad_w_hh, float* grad_bias, void* workspace,
                  cudaStream_t stream) {
  with_rnn_cell(relu, [&](auto cell) {
    layer_backward<decltype(cell)>(s, precision,
                                   {grad_y, grad_h_last, nullptr, x, h0, nullptr, w_ih, w_hh, nullptr, nullptr, hidden,
                                    grad_x, grad_h0, nullptr, grad_w_ih, grad_w_hh, grad_bias, nullptr},
                                   workspace, stream);
  });
}

}  // namespace deepkern::cuda
