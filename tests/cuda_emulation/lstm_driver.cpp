// csrc/cuda/lstm/ under the emulation: the cell kernels (LSTM, GRU, Elman RNN) and the bias sum on
// the caller's arrays, and the whole layers (the GEMMs through the dispatcher; the LSTM's per-step
// or persistent path forced, the persistent grid capped to max_blocks: one block is the only grid a
// barrier can span here, more run a single step, which needs no barrier).
// emulation-sources: csrc/cuda/lstm/lstm.cu csrc/cuda/lstm/lstm_kernels.cu
// emulation-sources: csrc/cuda/gemm/gemm.cu csrc/cuda/gemm/gemm_simt.cu csrc/cuda/gemm/gemm_mma.cu
#include <cstdint>
#include <vector>

#include "cuda/lstm/lstm.h"
#include "cuda/lstm/lstm_kernels.h"
#include "dk_emulation/driver.h"

namespace dkc = deepkern::cuda;

namespace {

const float* in(const void* p) { return static_cast<const float*>(p); }
float* out(void* p) { return static_cast<float*>(p); }

}  // namespace

DK_EMULATION_EXPORT int dk_lstm_cell_forward(std::int64_t batch, std::int64_t hidden, const void* pre, const void* bias,
                                             const void* c_prev, void* act, void* c, void* h, void* y) {
  return dk_emu::guarded([&] {
    dkc::CellForward step{batch, hidden, in(pre), in(bias), nullptr, nullptr, nullptr, in(c_prev)};
    step.act = out(act), step.c = out(c), step.h = out(h), step.y = out(y);
    dkc::cell_forward(dkc::CellKind::lstm, step, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_lstm_cell_backward(std::int64_t batch, std::int64_t hidden, const void* gates, const void* c,
                                              const void* c_prev, const void* grad_y, void* dh, void* dc,
                                              void* dgates) {
  return dk_emu::guarded([&] {
    const dkc::CellBackward step{batch,      hidden,     in(gates), nullptr, nullptr,    in(c),
                                 in(c_prev), in(grad_y), out(dh),   out(dc), out(dgates)};
    dkc::cell_backward(dkc::CellKind::lstm, step, nullptr);
  });
}

// kind: CellKind (1 gru, 2 rnn_tanh, 3 rnn_relu); the arrays a cell does not read may be null.
DK_EMULATION_EXPORT int dk_cell_forward(std::int64_t kind, std::int64_t batch, std::int64_t hidden, const void* pre,
                                        const void* bias, const void* hh, const void* bias_hh, const void* h_prev,
                                        void* act, void* h, void* y) {
  return dk_emu::guarded([&] {
    dkc::CellForward step{batch, hidden, in(pre), in(bias), in(hh), in(bias_hh), in(h_prev)};
    step.act = out(act), step.h = out(h), step.y = out(y);
    dkc::cell_forward(static_cast<dkc::CellKind>(kind), step, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_cell_backward(std::int64_t kind, std::int64_t batch, std::int64_t hidden, const void* act,
                                         const void* h, const void* h_prev, const void* grad_y, void* dh,
                                         void* dgates) {
  return dk_emu::guarded([&] {
    const dkc::CellBackward step{batch,   hidden,     in(act), in(h),   in(h_prev), nullptr,
                                 nullptr, in(grad_y), out(dh), nullptr, out(dgates)};
    dkc::cell_backward(static_cast<dkc::CellKind>(kind), step, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_lstm_column_sums(std::int64_t rows, std::int64_t cols, const void* a, void* sums) {
  return dk_emu::guarded([&] { dkc::column_sums(rows, cols, in(a), out(sums), nullptr); });
}

// path: LstmPath (0 automatic, 1 per_step, 2 persistent); max_blocks: the persistent grid's cap;
// precision: 0 fp32, 1 tf32. gates, cells and hidden all null: inference. The workspace is
// allocated here.
DK_EMULATION_EXPORT int dk_lstm_forward(std::int64_t steps, std::int64_t batch, std::int64_t input, std::int64_t hidden,
                                        std::int64_t reverse, std::int64_t path, std::int64_t max_blocks,
                                        std::int64_t precision, const void* x, const void* h0, const void* c0,
                                        const void* w_ih, const void* w_hh, const void* bias, void* y, void* h_last,
                                        void* c_last, void* gates, void* cells, void* hidden_rows) {
  return dk_emu::guarded([&] {
    const dkc::LstmShape s{steps, batch, input, hidden, reverse != 0};
    std::vector<float> workspace(dkc::forward_workspace_bytes(dkc::CellKind::lstm, s, gates != nullptr) /
                                 sizeof(float));
    dkc::set_lstm_path(static_cast<dkc::LstmPath>(path));
    dkc::lstm_forward(s, static_cast<dkc::GemmPrecision>(precision), in(x), in(h0), in(c0), in(w_ih), in(w_hh),
                      in(bias), out(y), out(h_last), out(c_last), out(gates), out(cells), out(hidden_rows),
                      workspace.data(), nullptr, static_cast<int>(max_blocks));
    dkc::set_lstm_path(dkc::LstmPath::automatic);
  });
}

// path[0] = the path the last dk_lstm_forward took (LstmPath).
DK_EMULATION_EXPORT int dk_lstm_last_path(std::int64_t* path) {
  return dk_emu::guarded([&] { path[0] = static_cast<std::int64_t>(dkc::last_lstm_path()); });
}

DK_EMULATION_EXPORT int dk_lstm_backward(std::int64_t steps, std::int64_t batch, std::int64_t input,
                                         std::int64_t hidden, std::int64_t reverse, std::int64_t precision,
                                         const void* grad_y, const void* grad_h_last, const void* grad_c_last,
                                         const void* x, const void* h0, const void* c0, const void* w_ih,
                                         const void* w_hh, const void* gates, const void* cells,
                                         const void* hidden_rows, void* grad_x, void* grad_h0, void* grad_c0,
                                         void* grad_w_ih, void* grad_w_hh, void* grad_bias) {
  return dk_emu::guarded([&] {
    const dkc::LstmShape s{steps, batch, input, hidden, reverse != 0};
    std::vector<float> workspace(dkc::backward_workspace_bytes(dkc::CellKind::lstm, s) / sizeof(float));
    dkc::lstm_backward(s, static_cast<dkc::GemmPrecision>(precision), in(grad_y), in(grad_h_last), in(grad_c_last),
                       in(x), in(h0), in(c0), in(w_ih), in(w_hh), in(gates), in(cells), in(hidden_rows), out(grad_x),
                       out(grad_h0), out(grad_c0), out(grad_w_ih), out(grad_w_hh), out(grad_bias), workspace.data(),
                       nullptr);
  });
}

// The GRU (kind 1) and the Elman RNN (2 tanh, 3 relu) layers; precision: 0 fp32, 1 tf32. The GRU
// caches gates and hidden (both null: inference), the RNN hidden; bias is the GRU's b_ih (bias_hh
// its b_hh), the RNN's b_ih + b_hh (bias_hh unused).
DK_EMULATION_EXPORT int dk_recurrent_forward(std::int64_t kind, std::int64_t steps, std::int64_t batch,
                                             std::int64_t input, std::int64_t hidden, std::int64_t reverse,
                                             std::int64_t precision, const void* x, const void* h0, const void* w_ih,
                                             const void* w_hh, const void* bias, const void* bias_hh, void* y,
                                             void* h_last, void* gates, void* hidden_rows) {
  return dk_emu::guarded([&] {
    const dkc::LstmShape s{steps, batch, input, hidden, reverse != 0};
    const auto k = static_cast<dkc::CellKind>(kind);
    const auto p = static_cast<dkc::GemmPrecision>(precision);
    std::vector<float> workspace(dkc::forward_workspace_bytes(k, s, hidden_rows != nullptr) / sizeof(float));
    if (k == dkc::CellKind::gru)
      dkc::gru_forward(s, p, in(x), in(h0), in(w_ih), in(w_hh), in(bias), in(bias_hh), out(y), out(h_last), out(gates),
                       out(hidden_rows), workspace.data(), nullptr);
    else
      dkc::rnn_forward(s, k == dkc::CellKind::rnn_relu, p, in(x), in(h0), in(w_ih), in(w_hh), in(bias), out(y),
                       out(h_last), out(hidden_rows), workspace.data(), nullptr);
  });
}

// Backward of dk_recurrent_forward: grad_bias is the GRU's grad_b_ih (grad_bias_hh its grad_b_hh),
// the RNN's one bias gradient (grad_bias_hh unused).
DK_EMULATION_EXPORT int dk_recurrent_backward(std::int64_t kind, std::int64_t steps, std::int64_t batch,
                                              std::int64_t input, std::int64_t hidden, std::int64_t reverse,
                                              std::int64_t precision, const void* grad_y, const void* grad_h_last,
                                              const void* x, const void* h0, const void* w_ih, const void* w_hh,
                                              const void* gates, const void* hidden_rows, void* grad_x, void* grad_h0,
                                              void* grad_w_ih, void* grad_w_hh, void* grad_bias, void* grad_bias_hh) {
  return dk_emu::guarded([&] {
    const dkc::LstmShape s{steps, batch, input, hidden, reverse != 0};
    const auto k = static_cast<dkc::CellKind>(kind);
    const auto p = static_cast<dkc::GemmPrecision>(precision);
    std::vector<float> workspace(dkc::backward_workspace_bytes(k, s) / sizeof(float));
    if (k == dkc::CellKind::gru)
      dkc::gru_backward(s, p, in(grad_y), in(grad_h_last), in(x), in(h0), in(w_ih), in(w_hh), in(gates),
                        in(hidden_rows), out(grad_x), out(grad_h0), out(grad_w_ih), out(grad_w_hh), out(grad_bias),
                        out(grad_bias_hh), workspace.data(), nullptr);
    else
      dkc::rnn_backward(s, k == dkc::CellKind::rnn_relu, p, in(grad_y), in(grad_h_last), in(x), in(h0), in(w_ih),
                        in(w_hh), in(hidden_rows), out(grad_x), out(grad_h0), out(grad_w_ih), out(grad_w_hh),
                        out(grad_bias), workspace.data(), nullptr);
  });
}
