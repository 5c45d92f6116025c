// The LSTM layer's host side on the GPU (lstm.h): which path the forward takes, the GEMMs, and
// the per-step launches of lstm_kernels.cu, all queued on one stream.
#include "cuda/lstm/lstm.h"

#include <atomic>
#include <stdexcept>
#include <string>

#include "cuda/check.h"
#include "cuda/lstm/lstm_kernels.h"

namespace deepkern::cuda {
namespace {

std::atomic<LstmPath> chosen{LstmPath::automatic};
std::atomic<LstmPath> last{LstmPath::automatic};

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
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync(lstm state)");
  else
    check(cudaMemsetAsync(dst, 0, bytes, stream), "cudaMemsetAsync(lstm state)");
}

std::size_t floats(std::int64_t count) { return static_cast<std::size_t>(count) * sizeof(float); }
constexpr std::size_t kCounterBytes = 256;  // the barrier counter, then 256-byte aligned arrays

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

std::size_t lstm_forward_workspace_bytes(const LstmShape& s, bool cached) {
  const std::int64_t state = s.batch * s.hidden;
  return kCounterBytes + (cached ? 0 : floats(s.steps * 4 * state + 2 * state));
}

std::size_t lstm_backward_workspace_bytes(const LstmShape& s) { return floats(s.steps * s.batch * 4 * s.hidden); }

void lstm_forward(const LstmShape& s, GemmPrecision precision, const float* x, const float* h0, const float* c0,
                  const float* w_ih, const float* w_hh, const float* bias, float* y, float* h_last, float* c_last,
                  float* gates, float* cells, float* hidden, void* workspace, cudaStream_t stream, int max_blocks) {
  const std::int64_t B = s.batch, I = s.input, H = s.hidden, G = 4 * H, state = B * H;
  const LstmPath want = chosen.load();
  if (s.steps == 0 || B == 0 || H == 0) {  // no gate: the states pass through (or are empty)
    copy_or_zero(h0, state, h_last, stream);
    copy_or_zero(c0, state, c_last, stream);
    last.store(LstmPath::automatic);
    return;
  }
  PersistentPlan plan;
  if (want != LstmPath::per_step) plan = plan_persistent_lstm(B, H, max_blocks);
  if (want == LstmPath::persistent && plan.blocks == 0)
    throw std::invalid_argument("lstm_forward: the persistent path cannot take B = " + std::to_string(B) +
                                ", H = " + std::to_string(H) +
                                ": it needs H <= 256, B <= 64 and all its blocks resident on the device at once");
  // Inference keeps the gate sums and two rolling rows of c in the workspace, h only in y.
  const bool keep = gates != nullptr;
  auto* counter = static_cast<unsigned int*>(workspace);
  float* rows = reinterpret_cast<float*>(static_cast<char*>(workspace) + kCounterBytes);
  float* pre = keep ? gates : rows;
  float* c_rows = keep ? cells : rows + s.steps * B * G;
  float* h_rows = keep ? hidden : y;
  // All steps' input projections: pre (T*B, 4H) = x (T*B, I) @ W_ih^T.
  if (I == 0)
    check(cudaMemsetAsync(pre, 0, floats(s.steps * B * G), stream), "cudaMemsetAsync(lstm gate sums)");
  else
    matmul(precision, s.steps * B, G, I, {x, I, 1}, {w_ih, 1, I}, pre, G, 0.0f, stream);
  if (plan.blocks > 0) {
    const PersistentLstm p{
        s.steps, B, H, s.reverse, !keep, pre, h0, c0, w_hh, bias, y, c_rows, h_rows, keep ? gates : nullptr, counter};
    lstm_persistent_forward(p, plan, stream);
    last.store(LstmPath::persistent);
  } else {
    for (std::int64_t order = 0; order < s.steps; ++order) {
      const std::int64_t t = step_at(s, order), prev = order == 0 ? 0 : step_at(s, order - 1);
      float* pre_t = pre + t * B * G;
      const float* h_prev = order == 0 ? h0 : h_rows + prev * state;
      const float* c_prev = order == 0 ? c0 : c_rows + (keep ? prev : (order - 1) % 2) * state;
      if (h_prev) matmul(precision, B, G, H, {h_prev, H, 1}, {w_hh, 1, H}, pre_t, G, 1.0f, stream);
      lstm_cell_forward(B, H, pre_t, bias, c_prev, keep ? pre_t : nullptr, c_rows + (keep ? t : order % 2) * state,
                        h_rows + t * state, keep ? y + t * state : nullptr, stream);
    }
    last.store(LstmPath::per_step);
  }
  const std::int64_t final_order = s.steps - 1, t_last = step_at(s, final_order);
  copy_or_zero(h_rows + t_last * state, state, h_last, stream);
  copy_or_zero(c_rows + (keep ? t_last : final_order % 2) * state, state, c_last, stream);
}

void lstm_backward(const LstmShape& s, GemmPrecision precision, const float* grad_y, const float* grad_h_last,
                   const float* grad_c_last, const float* x, const float* h0, const float* c0, const float* w_ih,
                   const float* w_hh, const float* gates, const float* cells, const float* hidden, float* grad_x,
                   float* grad_h0, float* grad_c0, float* grad_w_ih, float* grad_w_hh, float* grad_bias,
                   void* workspace, cudaStream_t stream) {
  const std::int64_t B = s.batch, I = s.input, H = s.hidden, G = 4 * H, state = B * H, rows = s.steps * B;
  float* dh = grad_h0;  // dh and dc of the step being processed
  float* dc = grad_c0;
  copy_or_zero(grad_h_last, state, dh, stream);
  copy_or_zero(grad_c_last, state, dc, stream);
  if (rows == 0 || H == 0) {  // no gate: no gradient reaches x or the weights
    copy_or_zero(nullptr, rows * I, grad_x, stream);
    copy_or_zero(nullptr, G * I, grad_w_ih, stream);
    copy_or_zero(nullptr, G * H, grad_w_hh, stream);
    copy_or_zero(nullptr, G, grad_bias, stream);
    return;
  }
  auto* dg = static_cast<float*>(workspace);  // dG (T*B, 4H): the gate sums' gradients
  for (std::int64_t order = s.steps - 1; order >= 0; --order) {
    const std::int64_t t = step_at(s, order);
    const float* c_prev = order == 0 ? c0 : cells + step_at(s, order - 1) * state;
    float* dg_t = dg + t * B * G;
    lstm_cell_backward(B, H, gates + t * B * G, cells + t * state, c_prev, grad_y ? grad_y + t * state : nullptr, dh,
                       dc, dg_t, stream);
    matmul(precision, B, H, G, {dg_t, G, 1}, {w_hh, H, 1}, dh, H, 0.0f, stream);  // dh = dG_t @ W_hh
  }
  // All steps at once: grad_x = dG @ W_ih, grad_w_ih = dG^T @ x.
  matmul(precision, rows, I, G, {dg, G, 1}, {w_ih, I, 1}, grad_x, I, 0.0f, stream);
  matmul(precision, G, I, rows, {dg, 1, G}, {x, I, 1}, grad_w_ih, I, 0.0f, stream);
  // grad_w_hh = sum over steps of dG_t^T @ h_{t-1}: the steps whose h_{t-1} is a stored hidden state
  // form one contiguous range, paired with hidden states one step away; the first step processed
  // pairs with h0.
  const std::int64_t dg_from = s.reverse ? 0 : 1, h_from = s.reverse ? 1 : 0;
  matmul(precision, G, H, (s.steps - 1) * B, {dg + dg_from * B * G, 1, G}, {hidden + h_from * state, H, 1}, grad_w_hh,
         H, 0.0f, stream);
  if (h0) matmul(precision, G, H, B, {dg + step_at(s, 0) * B * G, 1, G}, {h0, H, 1}, grad_w_hh, H, 1.0f, stream);
  column_sums(rows, G, dg, grad_bias, stream);
}

}  // namespace deepkern::cuda
