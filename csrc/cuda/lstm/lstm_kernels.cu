// The recurrent layers' own kernels (lstm_kernels.h). The per-step passes are one kernel template
// over the cell (CellKind), one thread per (batch row, hidden unit): it reads the unit's gate sums,
// applies cell_math.h's activations and unit updates as the CPU cell kernels do and writes
// everything the step produces, so a step is one launch after its GEMM.
// The persistent forward keeps the recurrence in one launch: block p owns hidden units
// [p * units, (p + 1) * units), holds their 4 * units rows of W_hh in shared memory for the whole
// sequence and, per step, copies h_{t-1} (B x H, written by every block the step before) into
// shared memory, computes its units' gate sums h_{t-1} W_hh^T + pre + bias and cell updates, and
// meets the other blocks at a grid barrier. h_t goes to a new address every step (h_rows is T rows
// deep), so no block can hold a stale copy of it in its L1 cache; c is read only by the thread that
// wrote it.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cpu/lstm/cell_math.h"
#include "cuda/launch.h"
#include "cuda/lstm/grid_barrier.h"
#include "cuda/lstm/lstm_kernels.h"

namespace deepkern::cuda {
namespace {

using lstm_math::sigmoid;
using lstm_math::tanh_of;

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 65535;
// The persistent kernel's limits: hidden units and batch rows (its shared memory holds B rows of
// h), threads per block.
constexpr std::int64_t kPersistentMaxHidden = 256, kPersistentMaxBatch = 64;
constexpr int kPersistentThreads = 1024;

unsigned grid_for(std::int64_t work, int threads) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((work + threads - 1) / threads, 1, kMaxBlocks));
}

// The cell update of one (row, unit) from its four gate sums without bias: writes c, h, y (when
// not null) and the activated gates at act[0], act[H], act[2H], act[3H] (when not null).
__device__ __forceinline__ void cell_element(const float (&sum)[4], const float* bias, std::int64_t j, std::int64_t H,
                                             const float* c_prev, float* act, float* c, float* h, float* y) {
  float s[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) s[q] = bias ? sum[q] + bias[q * H + j] : sum[q];
  const float i = sigmoid(s[0]), f = sigmoid(s[1]), g = tanh_of(s[2]), o = sigmoid(s[3]);
  const float cn = (c_prev ? f * *c_prev : 0.0f) + i * g;
  const float hn = o * tanh_of(cn);
  if (act) {
    act[0] = i;
    act[H] = f;
    act[2 * H] = g;
    act[3 * H] = o;
  }
  *c = cn;
  *h = hn;
  if (y) *y = hn;
}

// The forward update of unit j of batch row b (element e = b * H + j) of cell K.
template <CellKind K>
__device__ __forceinline__ void forward_unit(const CellForward& p, std::int64_t b, std::int64_t j, std::int64_t e) {
  const std::int64_t H = p.hidden, at = b * pre_width(K, H) + j;
  const float* pre = p.pre + at;
  float out = 0.0f;
  if constexpr (K == CellKind::lstm) {
    const float sum[4] = {pre[0], pre[H], pre[2 * H], pre[3 * H]};
    cell_element(sum, p.bias, j, H, p.c_prev ? p.c_prev + e : nullptr, p.act ? p.act + at : nullptr, p.c + e, p.h + e,
                 p.y ? p.y + e : nullptr);
    return;
  } else if constexpr (K == CellKind::gru) {
    float ih[3], hh[3];
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      ih[q] = p.bias ? pre[q * H] + p.bias[q * H + j] : pre[q * H];
      const float w = p.hh ? p.hh[b * 3 * H + q * H + j] : 0.0f;
      hh[q] = p.bias_hh ? w + p.bias_hh[q * H + j] : w;
    }
    const float r = sigmoid(ih[0] + hh[0]), z = sigmoid(ih[1] + hh[1]);
    const float n = lstm_math::gru_candidate(ih[2], r, hh[2]);
    if (p.act) {
      float* act = p.act + at;
      act[0] = r;
      act[H] = z;
      act[2 * H] = n;
      act[3 * H] = hh[2];
    }
    out = lstm_math::gru_output(n, z, p.h_prev ? p.h_prev[e] : 0.0f);
  } else {
    out = lstm_math::rnn_activation<K == CellKind::rnn_relu>(p.bias ? pre[0] + p.bias[j] : pre[0]);
  }
  p.h[e] = out;
  if (p.y) p.y[e] = out;
}

// The backward of unit j of batch row b (element e = b * H + j) of cell K.
template <CellKind K>
__device__ __forceinline__ void backward_unit(const CellBackward& p, std::int64_t b, std::int64_t j, std::int64_t e) {
  const std::int64_t H = p.hidden;
  const float d = p.dh[e] + (p.grad_y ? p.grad_y[e] : 0.0f);
  if constexpr (K == CellKind::lstm) {
    const std::int64_t at = b * 4 * H + j;
    const float* g = p.act + at;
    const float i = g[0], f = g[H], gg = g[2 * H], o = g[3 * H];
    const float tc = tanh_of(p.c[e]);
    const float dct = p.dc[e] + d * o * (1.0f - tc * tc);
    float* dg = p.dgates + at;
    dg[0] = dct * gg * i * (1.0f - i);
    dg[H] = (p.c_prev ? dct * p.c_prev[e] : 0.0f) * f * (1.0f - f);
    dg[2 * H] = dct * i * (1.0f - gg * gg);
    dg[3 * H] = d * tc * o * (1.0f - o);
    p.dc[e] = dct * f;
  } else if constexpr (K == CellKind::gru) {
    const std::int64_t at = b * 4 * H + j;
    const float* g = p.act + at;
    const auto u = lstm_math::gru_unit_grad(g[0], g[H], g[2 * H], g[3 * H], p.h_prev ? p.h_prev[e] : 0.0f, d);
    float* dg = p.dgates + at;
    dg[0] = u.r;
    dg[H] = u.z;
    dg[2 * H] = u.hh_n;
    dg[3 * H] = u.ih_n;
    p.dh[e] = u.h_prev;
  } else {
    p.dgates[e] = lstm_math::rnn_activation_grad<K == CellKind::rnn_relu>(p.h[e], d);
  }
}

// One thread per (row, unit), grid-stride. Not __restrict__: act may be pre, and the GRU's dh is
// read and written by the same thread.
template <CellKind K>
__global__ void __launch_bounds__(kThreads) cell_forward_kernel(CellForward p) {
  const std::int64_t n = p.batch * p.hidden, stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const std::int64_t b = e / p.hidden;
    forward_unit<K>(p, b, e - b * p.hidden, e);
  }
}

template <CellKind K>
__global__ void __launch_bounds__(kThreads) cell_backward_kernel(CellBackward p) {
  const std::int64_t n = p.batch * p.hidden, stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const std::int64_t b = e / p.hidden;
    backward_unit<K>(p, b, e - b * p.hidden, e);
  }
}

// The launch names of the cell kernels.
const char* kernel_name(CellKind kind, bool backward) {
  switch (kind) {
    case CellKind::lstm: return backward ? "lstm_cell_backward" : "lstm_cell_forward";
    case CellKind::gru: return backward ? "gru_cell_backward" : "gru_cell_forward";
    case CellKind::rnn_tanh: return backward ? "rnn_tanh_cell_backward" : "rnn_tanh_cell_forward";
    default: return backward ? "rnn_relu_cell_backward" : "rnn_relu_cell_forward";
  }
}

// Calls run(std::integral_constant<CellKind, kind>{}): the cell kind as a compile-time constant.
template <class Run>
void with_kind(CellKind kind, Run&& run) {
  switch (kind) {
    case CellKind::lstm: return run(std::integral_constant<CellKind, CellKind::lstm>{});
    case CellKind::gru: return run(std::integral_constant<CellKind, CellKind::gru>{});
    case CellKind::rnn_tanh: return run(std::integral_constant<CellKind, CellKind::rnn_tanh>{});
    case CellKind::rnn_relu: return run(std::integral_constant<CellKind, CellKind::rnn_relu>{});
  }
  throw std::invalid_argument("recurrent cell kernels: unknown cell kind " + std::to_string(static_cast<int>(kind)));
}

// Block (32 columns x 8 row lanes): each thread sums every 8th row of its column, then lane 0 adds
// the 8 partial sums in order.
constexpr int kSumCols = 32, kSumLanes = 8;
__global__ void __launch_bounds__(kSumCols* kSumLanes)
    column_sums_kernel(std::int64_t rows, std::int64_t cols, const float* __restrict__ a, float* __restrict__ out) {
  __shared__ float partial[kSumLanes][kSumCols + 1];
  const int tx = threadIdx.x % kSumCols, ty = threadIdx.x / kSumCols;
  const std::int64_t col = std::int64_t(blockIdx.x) * kSumCols + tx;
  float sum = 0.0f;
  if (col < cols)
    for (std::int64_t r = ty; r < rows; r += kSumLanes) sum += a[r * cols + col];
  partial[ty][tx] = sum;
  __syncthreads();
  if (ty == 0 && col < cols) {
    float total = partial[0][tx];
#pragma unroll
    for (int l = 1; l < kSumLanes; ++l) total += partial[l][tx];
    out[col] = total;
  }
}

// Index of the step processed `order`-th.
__device__ __forceinline__ std::int64_t step_at(const PersistentLstm& p, std::int64_t order) {
  return p.reverse ? p.steps - 1 - order : order;
}

// Shared memory: W_hh's rows of the block's units, [4 * units][H + 1] (gate q's row of unit u at
// q * units + u), then h_{t-1}, [B][H + 1] (rows padded by one float: threads of different rows or
// units read different banks).
__global__ void __launch_bounds__(kPersistentThreads) persistent_kernel(PersistentLstm p, std::int64_t units) {
  const std::int64_t H = p.hidden, B = p.batch, pitch = H + 1, state = B * H;
  float* w = dynamic_shared_memory<float>();
  float* hs = w + 4 * units * pitch;
  const std::int64_t j0 = std::int64_t(blockIdx.x) * units, n = units < H - j0 ? units : H - j0;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (std::int64_t e = tid; e < 4 * n * H; e += nt) {
    const std::int64_t row = e / H, k = e - row * H, q = row / n, u = row - q * n;
    w[(q * units + u) * pitch + k] = p.w_hh[(q * H + j0 + u) * H + k];
  }
  for (std::int64_t order = 0; order < p.steps; ++order) {
    const std::int64_t t = step_at(p, order), prev = order == 0 ? 0 : step_at(p, order - 1);
    const float* h_prev = order == 0 ? p.h0 : p.h_rows + prev * state;
    for (std::int64_t e = tid; e < state; e += nt) {
      const std::int64_t b = e / H, k = e - b * H;
      hs[b * pitch + k] = h_prev ? h_prev[e] : 0.0f;
    }
    __syncthreads();
    const float* c_prev = order == 0 ? p.c0 : p.c_rows + (p.rolling ? (order - 1) % 2 : prev) * state;
    float* c_t = p.c_rows + (p.rolling ? order % 2 : t) * state;
    for (std::int64_t pair = tid; pair < B * n; pair += nt) {
      const std::int64_t b = pair / n, u = pair - b * n, j = j0 + u, e = b * H + j, at = (t * B + b) * 4 * H + j;
      const float* hb = hs + b * pitch;
      const float* wu = w + u * pitch;
      float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (std::int64_t k = 0; k < H; ++k) {
        const float hk = hb[k];
#pragma unroll
        for (int q = 0; q < 4; ++q) sum[q] = fmaf(hk, wu[q * units * pitch + k], sum[q]);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) sum[q] += p.pre[at + q * H];
      cell_element(sum, p.bias, j, H, c_prev ? c_prev + e : nullptr, p.act ? p.act + at : nullptr, c_t + e,
                   p.h_rows + t * state + e, p.y + t * state + e);
    }
    // The next step reads every block's h_t; after the last one nothing in the kernel does.
    if (order + 1 < p.steps) grid_barrier(p.counter, static_cast<unsigned int>(order + 1));
  }
}

}  // namespace

void cell_forward(CellKind kind, const CellForward& step, cudaStream_t stream) {
  if (step.batch * step.hidden == 0) return;
  with_kind(kind, [&](auto k) {
    launch(kernel_name(kind, false), cell_forward_kernel<decltype(k)::value>,
           dim3(grid_for(step.batch * step.hidden, kThreads)), dim3(kThreads), 0, stream, step);
  });
}

void cell_backward(CellKind kind, const CellBackward& step, cudaStream_t stream) {
  if (step.batch * step.hidden == 0) return;
  with_kind(kind, [&](auto k) {
    launch(kernel_name(kind, true), cell_backward_kernel<decltype(k)::value>,
           dim3(grid_for(step.batch * step.hidden, kThreads)), dim3(kThreads), 0, stream, step);
  });
}

void column_sums(std::int64_t rows, std::int64_t cols, const float* a, float* out, cudaStream_t stream) {
  if (cols == 0) return;
  launch("lstm_column_sums", column_sums_kernel, dim3(grid_for(cols, kSumCols)), dim3(kSumCols * kSumLanes), 0, stream,
         rows, cols, a, out);
}

PersistentPlan plan_persistent_lstm(std::int64_t batch, std::int64_t hidden, int max_blocks) {
  PersistentPlan none;
  if (batch < 1 || hidden < 1 || batch > kPersistentMaxBatch || hidden > kPersistentMaxHidden) return none;
  int device = 0, sms = 0, optin = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  // One block per multiprocessor at most: the fewest units per block that spreads H over them,
  // but a warp's worth of (row, unit) pairs per block at least (a block's threads are its pairs).
  const std::int64_t most = std::max(1, max_blocks > 0 ? std::min(max_blocks, sms) : sms);
  PersistentPlan plan;
  plan.units = std::min(hidden, std::max((hidden + most - 1) / most, (32 + batch - 1) / batch));
  plan.blocks = static_cast<int>((hidden + plan.units - 1) / plan.units);
  const std::int64_t pairs = batch * plan.units;
  plan.threads = static_cast<int>(std::min<std::int64_t>(kPersistentThreads, (pairs + 31) / 32 * 32));
  plan.shared_bytes = static_cast<std::size_t>((4 * plan.units + batch) * (hidden + 1)) * sizeof(float);
  if (plan.shared_bytes > static_cast<std::size_t>(optin)) return none;
  if (plan.shared_bytes > 48 * 1024)
    check(cudaFuncSetAttribute(persistent_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(plan.shared_bytes)),
          "cudaFuncSetAttribute(lstm persistent kernel)");
  int resident = 0;  // blocks of this size one multiprocessor holds at once
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, persistent_kernel, plan.threads, plan.shared_bytes),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  return std::int64_t(resident) * sms >= plan.blocks ? plan : none;
}

void lstm_persistent_forward(const PersistentLstm& problem, const PersistentPlan& plan, cudaStream_t stream) {
  if (plan.blocks < 1) throw std::invalid_argument("lstm_persistent_forward: no plan (plan_persistent_lstm gave 0)");
  if (problem.steps == 0) return;
  check(cudaMemsetAsync(problem.counter, 0, sizeof(unsigned int), stream), "cudaMemsetAsync(lstm barrier counter)");
  launch("lstm_persistent_forward", persistent_kernel, dim3(plan.blocks), dim3(plan.threads), plan.shared_bytes, stream,
         problem, plan.units);
}

}  // namespace deepkern::cuda
