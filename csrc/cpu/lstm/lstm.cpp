// A recurrent layer (LSTM, GRU, Elman RNN) on a team of threads, each owning a share of the hidden
// units (forward_team, backward_team). Forward: the input projection a chunk of steps at a time as
// one GEMM per thread; each step adds the recurrent GEMM h_{t-1} @ W_hh^T into its gate rows (the
// GRU: into rows of its own, since r scales W_hn h) and one fused pass applies the activations and
// the state update (gates are written once, already activated, for backward). Backward walks the
// steps in reverse with one fused pass and one GEMM (dG_t @ W_hh) per step, then gets the weight and
// input gradients of all steps from large GEMMs over T * B rows. The fused passes are the active
// ISA's cell kernels (cell_kernels.cpp); the cells differ only in the policies below (LstmCell, ...).
// One code for every layer type T: its GEMMs are Arith<T>'s (the bfloat16 GEMM for bf16), its sums,
// cell states and state gradients of Acc<T>.
#include "cpu/lstm/lstm.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <utility>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/gemm/gemm.h"
#include "cpu/gemm_bf16/gemm_bf16.h"
#include "cpu/lstm/cell_kernels.h"
#include "cpu/lstm/cell_layout.h"

namespace deepkern::cpu {
namespace {

template <class T>
const CellKernels<T>& dispatched_kernels() {
  return dispatch(IsaFamily::lstm, IsaTables{generic::cell_kernels, avx2::cell_kernels, avx512::cell_kernels}).of<T>();
}

// The GEMMs of a layer of T, all with alpha 1 and C of A = Acc<T> (the driver's sums): B packed
// once for a layer (pack: W's columns in `groups` groups of n, as pack_b_groups), products with it
// on the calling thread (multiply), and plain products on all threads (gemm).
template <class T>
struct Arith {
  using A = T;
  using Packed = PackedB<T>;
  static int64_t packed_size(int64_t k, int64_t n) { return packed_b_size<T>(k, n); }
  static Packed pack(int64_t k, int64_t n, int groups, int64_t offset, StridedMatrix<const T> b, T* panels) {
    return pack_b_groups<T>(k, n, groups, offset, b, panels);
  }
  static void multiply(int64_t m, StridedMatrix<const T> a, const Packed& b, A beta, StridedMatrix<A> c,
                       const GemmEpilogue<A>& epilogue, PanelOrder order) {
    gemm_prepacked<T>(m, T(1), a, b, beta, c, epilogue, 1, order);
  }
  static void gemm(int64_t m, int64_t n, int64_t k, StridedMatrix<const T> a, StridedMatrix<const T> b, A beta,
                   StridedMatrix<A> c) {
    cpu::gemm<T>(m, n, k, T(1), a, b, beta, c, {});
  }
};

// bf16: the bfloat16 GEMM with float32 C.
template <>
struct Arith<bf16> {
  using A = float;
  using Packed = PackedBf16B;
  static int64_t packed_size(int64_t k, int64_t n) { return packed_bf16_b_size(k, n); }
  static Packed pack(int64_t k, int64_t n, int groups, int64_t offset, StridedMatrix<const bf16> b, bf16* panels) {
    return pack_bf16_b_groups(k, n, groups, offset, b, panels);
  }
  static void multiply(int64_t m, StridedMatrix<const bf16> a, const Packed& b, A beta, StridedMatrix<A> c,
                       const GemmEpilogue<A>& epilogue, PanelOrder) {
    gemm_bf16_prepacked(m, 1.0f, a, b, beta, c, epilogue);
  }
  static void gemm(int64_t m, int64_t n, int64_t k, StridedMatrix<const bf16> a, StridedMatrix<const bf16> b, A beta,
                   StridedMatrix<A> c) {
    gemm_bf16<float>(m, n, k, 1.0f, a, b, beta, c, {});
  }
};

// The policies of the cells: their layouts (cell_layout.h) and their cell kernels.
using cell_layout::Segment;

struct LstmCell : cell_layout::Lstm {
  template <class T>
  static auto kernels(const CellKernels<T>& k) {
    return std::pair{k.lstm_forward, k.lstm_backward};
  }
};

struct GruCell : cell_layout::Gru {
  template <class T>
  static auto kernels(const CellKernels<T>& k) {
    return std::pair{k.gru_forward, k.gru_backward};
  }
};

template <bool kRelu>
struct RnnCell : cell_layout::Rnn {
  template <class T>
  static auto kernels(const CellKernels<T>& k) {
    return kRelu ? std::pair{k.rnn_relu_forward, k.rnn_relu_backward}
                 : std::pair{k.rnn_tanh_forward, k.rnn_tanh_backward};
  }
};

// Index of the step processed s-th.
int64_t step_at(const LstmShape& s, int64_t order) { return s.reverse ? s.steps - 1 - order : order; }

// Rows running at step t: rows [0, running) (all B without batch_sizes).
int64_t running(const LstmShape& s, int64_t t) { return s.batch_sizes ? s.batch_sizes[t] : s.batch; }

struct LstmScratch;  // this family's thread_scratch tag
// Slots: backward's gate gradients; the rolling cell rows of the LSTM's inference (and backward's
// bias sums); a team thread's packed weights; its gate rows in the forward; the states of a layer
// whose type is not Acc<T> (c0 widened; backward's dh and dc); an output computed in Acc<T> before
// it is rounded.
enum LstmSlot { kGateSlot, kCellSlot, kTeamSlot, kPreSlot, kStateSlot, kOutSlot, kSlotCount };

template <class T>
T* scratch(LstmSlot slot, int64_t count) {
  return thread_scratch<LstmScratch, kSlotCount, T>(slot, count);
}

// Forward: bytes of gate pre-activations projected per chunk of steps (all threads together).
// Measured on the 2-core AVX-512 machine, 2 threads, inference, T=50 B=64 I=H=512: 1, 2 and 4 MB
// chunks 46.8-46.9 ms, 8 MB 51.8 ms; T=35 B=20 H=650: 1 MB 18.1 ms, 2-4 MB 17.6-17.7 ms.
// bfloat16 (the same float32 pre-activations for half the GEMM time: their trips to L3 weigh more)
// 1 MB, measured at 1 thread, inference (CPU time, loaded machine), 4 MB against 1 MB: T=100 B=32
// I=H=256 9.2-9.6 / 8.0-8.2 ms, T=50 B=64 I=H=512 29.8 / 27.5 ms, T=200 B=8 H=512 9.0-9.4 / 8.5-8.8
// ms (512 and 256 KB within 2% of 1 MB).
template <class T>
constexpr int64_t kGateChunkBytes = int64_t(std::is_same_v<T, bf16> ? 1 : 4) << 20;
// Teams: hidden units per thread at least (when they split units), and recurrent multiply-adds per
// step from which more than one thread pays (batch 1 at H = 64).
constexpr int64_t kTeamMinUnits = 32;
constexpr int64_t kTeamMinStepMacs = int64_t(1) << 14;
// Batch rows per thread, and W_hh bytes at most, for a team to split rows rather than units.
// Measured (2 threads, forward / forward+backward): T=100 B=64 H=64 units 2.46 / 9.5 ms, rows 1.97
// / 6.9; B=128 H=128 14.2 / 53.3 against 13.3 / 46.6; B=32 H=256 (16 rows each) 12.1 / 40.4
// against 12.3 / 38.7; B=64 H=512 (4 MB) 46.0 / 150.4 against 47.5 / 150.2.
constexpr int64_t kRowSplitRows = 32;
constexpr int64_t kRowSplitWeightBytes = int64_t(1) << 20;

// Runs body(id, threads, guarded) on a team of `team` threads (one parallel region) whose bodies
// meet at `#pragma omp barrier`s. Work wrapped in guarded(work) is skipped once any thread has
// failed (out of memory), while every thread keeps meeting the barriers; the first error is
// re-thrown after the region.
template <class Body>
void run_team(int team, Body&& body) {
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_lock;
  auto guarded = [&](auto&& work) {
    if (failed.load(std::memory_order_relaxed)) return;
    try {
      work();
    } catch (...) {
      std::lock_guard<std::mutex> guard(error_lock);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
#pragma omp parallel num_threads(team)
  body(omp_get_thread_num(), omp_get_num_threads(), guarded);
  if (error) std::rethrow_exception(error);
}

// How a team splits a layer: `unit_groups` groups of threads own the hidden units (they meet at a
// barrier every step, since each step reads all of h_{t-1}), `row_groups` groups own batch rows
// (rows never read each other's states, so those need no barrier). team_layout picks it.
struct TeamLayout {
  int row_groups = 1, unit_groups = 1;
  bool barrier() const { return unit_groups > 1; }
};

// Thread `id`'s block of a layout: batch rows [row0, row0 + rows), hidden units [unit0, unit0 + units).
struct TeamBlock {
  int64_t row0, rows, unit0, units;
  TeamBlock(const LstmShape& s, TeamLayout layout, int id) {
    const auto part = [](int64_t total, int parts, int index, int64_t& first, int64_t& count) {
      const int64_t share = (total + parts - 1) / parts;
      first = std::min(total, index * share);
      count = std::min(total, first + share) - first;
    };
    part(s.batch, layout.row_groups, id / layout.unit_groups, row0, rows);
    part(s.hidden, layout.unit_groups, id % layout.unit_groups, unit0, units);
  }
  bool empty() const { return rows == 0 || units == 0; }
  // This block's rows running at step t: its rows [0, live).
  int64_t live(const LstmShape& s, int64_t t) const { return std::clamp<int64_t>(running(s, t) - row0, 0, rows); }
};

// The layout of a team of `threads` (from team_threads): hidden units split while every thread
// keeps kTeamMinUnits of them, and batch rows otherwise (small H, or kRowSplitRows rows per thread
// with a W_hh that fits a core's L2: then every thread reads all of it from its own cache and no
// step needs a barrier).
template <class Cell, class T>
TeamLayout team_layout(const LstmShape& s, int threads) {
  TeamLayout layout;
  if (threads <= 1) return layout;
  const bool rows_pay = s.batch >= kRowSplitRows * threads &&
                        Cell::kGates * s.hidden * s.hidden * int64_t(sizeof(T)) <= kRowSplitWeightBytes;
  if (!rows_pay && s.hidden >= kTeamMinUnits * threads)
    layout.unit_groups = threads;
  else
    layout.row_groups = static_cast<int>(std::min<int64_t>(threads, s.batch));
  return layout;
}

// Threads for forward_team and backward_team: all of them when a step has enough multiply-adds to
// pay for a barrier or a thread start, and there is a unit or row block for each.
template <class Cell>
int team_threads(const LstmShape& s) {
  if (s.batch * Cell::kGates * s.hidden * s.hidden < kTeamMinStepMacs) return 1;
  const int64_t blocks = std::max(s.hidden / kTeamMinUnits, s.batch);
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, num_threads()));
}

// Alternate directions over W's panels from step to step (see PanelOrder).
inline PanelOrder order_of_step(int64_t order) { return order % 2 ? PanelOrder::descending : PanelOrder::ascending; }

template <class T>
void copy_or_zero(const T* src, int64_t count, T* dst) {
  if (src)
    std::copy(src, src + count, dst);
  else
    std::fill(dst, dst + count, T{});
}

// Where a layer of T works on an output of Acc<T>: the output itself when the types agree, else a
// buffer of the calling thread (`slot`, `count` elements) that finish() rounds into the output once.
template <class T>
struct AccOutput {
  using A = Acc<T>;
  T* out;
  int64_t count;
  A* data;
  AccOutput(T* out_, int64_t count_, LstmSlot slot) : out(out_), count(count_) {
    if constexpr (std::is_same_v<T, A>)
      data = out;
    else
      data = scratch<A>(slot, count);
  }
  void finish() const {
    if constexpr (!std::is_same_v<T, A>) convert_or_zero(data, count, out);
  }
};

// An input state of T (or null) as Acc<T>: itself when the types agree, else widened into `buffer`.
template <class T>
const Acc<T>* widened(const T* src, int64_t count, Acc<T>* buffer) {
  if constexpr (std::is_same_v<T, Acc<T>>) {
    return src;
  } else {
    if (!src) return nullptr;
    convert_or_zero(src, count, buffer);
    return buffer;
  }
}

// Rows [from, to) of a block of n units (rows H apart) at dst keep the state at src (null: zeros).
template <class T>
void keep_rows(const T* src, T* dst, int64_t from, int64_t to, int64_t n, int64_t H) {
  for (int64_t b = from; b < to; ++b) copy_or_zero(src ? src + b * H : nullptr, n, dst + b * H);
}

// The states step `order` reads and writes: h_{t-1} from hidden rows (the cache, or y), c_{t-1}
// and c_t (LSTM) in the cache or, for inference, in two rolling rows (neither: no cell state).
template <class T, class A = Acc<T>>
struct StepStates {
  const LstmShape& s;
  int64_t state;  // B * H
  const T* h0;
  const A* c0;
  const T* hidden_rows;
  A *cells, *rolling;
  int64_t t = 0;
  const T* h_prev = nullptr;
  const A* c_prev = nullptr;
  A* c_t = nullptr;

  void at(int64_t order) {
    t = step_at(s, order);
    const int64_t prev = order == 0 ? 0 : step_at(s, order - 1);
    h_prev = order == 0 ? h0 : hidden_rows + prev * state;
    if (!cells && !rolling) return;
    c_prev = order == 0 ? c0 : cells ? cells + prev * state : rolling + ((order - 1) & 1) * state;
    c_t = cells ? cells + t * state : rolling + (order & 1) * state;
  }
  // h_last, c_last: the states after the last step (call after at(s.steps - 1)).
  void copy_last(T* h_last, T* c_last) const {
    std::copy(hidden_rows + t * state, hidden_rows + (t + 1) * state, h_last);
    if (c_last) convert_or_zero(c_t, state, c_last);
  }
};

// The forward runs on a team of threads, the whole sequence inside one parallel region. Each thread
// owns a TeamBlock: batch rows [r0, r0 + rows) and hidden units [j0, j0 + n). It packs, into its own
// scratch, its kGates * n columns of W_ih^T and of W_hh^T (n from each gate block), so its share of W_hh
// stays in its core's cache from step to step. Per chunk of steps it projects its rows of the
// inputs onto its own gate columns, bias included (no other thread reads them, so no barrier); per
// step it adds h_{t-1} @ its W_hh share into that step's pre-activations (a GEMV at batch 1),
// applies the cell update to its block and, when the units are split, meets the others at one
// barrier (the next step reads all of h_t). A step costs at most one barrier instead of a thread
// hand-off per GEMM and per pointwise pass, and its gates never leave the core that uses them.
// bias is added to the input projection, bias_hh (the GRU's b_hh) to W_hh h_{t-1} in its own rows.
template <class Cell, class T, class A = Acc<T>>
void forward_team(const LstmShape& s, int team, const T* x, const T* h0, const A* c0, const T* w_ih, const T* w_hh,
                  const T* bias, const T* bias_hh, T* y, A* gates, A* cells, T* hidden, T* h_last, T* c_last) {
  using Gemm = Arith<T>;
  constexpr int gate_blocks = Cell::kGates;
  const int64_t B = s.batch, I = s.input, H = s.hidden, G = gate_blocks * H, state = B * H;
  const bool keep = hidden != nullptr;
  const auto cell_forward = Cell::kernels(dispatched_kernels<T>()).first;
  const int64_t chunk = std::clamp<int64_t>(kGateChunkBytes<T> / int64_t(sizeof(A) * B * G), 1, s.steps);
  // Inference keeps c in two rolling rows and h only in y.
  A* rolling = keep || !Cell::kCell ? nullptr : scratch<A>(kCellSlot, 2 * state);
  T* hidden_rows = keep ? hidden : y;
  run_team(team, [&](int id, int threads, auto& guarded) {
    const TeamLayout layout = team_layout<Cell, T>(s, threads);
    const TeamBlock block(s, layout, id);
    const int64_t r0 = block.row0, rows = block.rows, j0 = block.unit0, n = block.units, cols = gate_blocks * n;
    typename Gemm::Packed w_ih_share, w_hh_share;
    A* pre_rows = nullptr;  // this thread's gate pre-activations of the projected chunk
    A* hh_rows = nullptr;   // kOwnRecurrence: W_hh h_{t-1} + bias_hh of this thread's block
    GemmEpilogue<A> with_bias, with_bias_hh;
    StepStates<T> st{s, state, h0, c0, hidden_rows, cells, rolling};
    int64_t first = 0;  // the first step (in memory order) of the projected chunk
    guarded([&] {
      if (block.empty()) return;
      const int64_t ih_size = Gemm::packed_size(I, cols), hh_size = Gemm::packed_size(H, cols);
      const int64_t own = Cell::kOwnRecurrence ? rows * cols + cols : 0;
      T* mem = scratch<T>(kTeamSlot, ih_size + hh_size);
      w_ih_share = Gemm::pack(I, n, gate_blocks, H * I, {w_ih + j0 * I, 1, I}, mem);
      w_hh_share = Gemm::pack(H, n, gate_blocks, H * H, {w_hh + j0 * H, 1, H}, mem + ih_size);
      pre_rows = scratch<A>(kPreSlot, chunk * rows * cols + cols + own);
      // This thread's columns of a bias, at `share`: the epilogue that adds them.
      const auto bias_share = [&](const T* full, A* share, GemmEpilogue<A>& epilogue) {
        if (!full) return;
        for (int q = 0; q < gate_blocks; ++q) convert_or_zero(full + q * H + j0, n, share + q * n);
        epilogue.bias = share;
        epilogue.bias_axis = BiasAxis::cols;
      };
      bias_share(bias, pre_rows + chunk * rows * cols, with_bias);
      if (Cell::kOwnRecurrence) {
        hh_rows = pre_rows + chunk * rows * cols + cols;
        bias_share(bias_hh, hh_rows + rows * cols, with_bias_hh);
      }
    });
    for (int64_t order = 0; order < s.steps; ++order) {
      guarded([&] {
        if (block.empty()) return;
        st.at(order);
        if (order % chunk == 0) {  // own running rows of each step: one GEMM when they are all B of all
          const int64_t count = std::min(chunk, s.steps - order);
          first = s.reverse ? st.t - count + 1 : st.t;
          const bool whole = rows == B && running(s, first + count - 1) == B;
          for (int64_t step = 0; step < (whole ? 1 : count); ++step) {
            const int64_t m = whole ? count * B : block.live(s, first + step);
            if (m)
              Gemm::multiply(m, {x + ((first + step) * B + r0) * I, I, 1}, w_ih_share, A(0),
                             {pre_rows + step * rows * cols, cols, 1}, with_bias, PanelOrder::ascending);
          }
        }
        A* pre = pre_rows + (st.t - first) * rows * cols;
        const int64_t at = st.t * state + r0 * H + j0;  // this block's first element of a step's states
        const int64_t from = r0 * H + j0;               // and of a state
        A* recurrence = Cell::kOwnRecurrence ? hh_rows : pre;
        const int64_t live = block.live(s, st.t);
        if (st.h_prev && live)
          Gemm::multiply(live, {st.h_prev + r0 * H, H, 1}, w_hh_share, A(Cell::kOwnRecurrence ? 0 : 1),
                         {recurrence, cols, 1}, with_bias_hh, order_of_step(order));
        else if (Cell::kOwnRecurrence)  // W_hh h_{-1} = 0: bias_hh alone
          for (int64_t b = 0; b < live; ++b) copy_or_zero(with_bias_hh.bias, cols, hh_rows + b * cols);
        cell_forward({.rows = live,
                      .units = n,
                      .H = H,
                      .pre = pre,
                      .pre_block = n,
                      .hh = hh_rows,
                      .act = keep && Cell::kAct ? gates + (st.t * B + r0) * Cell::kAct * H + j0 : nullptr,
                      .h_prev = st.h_prev ? st.h_prev + from : nullptr,
                      .c_prev = st.c_prev ? st.c_prev + from : nullptr,
                      .c = st.c_t ? st.c_t + from : nullptr,
                      .h = hidden_rows + at,
                      .y = keep ? y + at : nullptr});
        if (live < rows) {  // rows past their end (in reverse: not started yet) keep their states
          const T* h_prev = st.h_prev ? st.h_prev + from : nullptr;
          keep_rows(h_prev, hidden_rows + at, live, rows, n, H);
          if (keep) keep_rows(h_prev, y + at, live, rows, n, H);
          if (st.c_t) keep_rows(st.c_prev ? st.c_prev + from : nullptr, st.c_t + from, live, rows, n, H);
        }
      });
      if (layout.barrier()) {
#pragma omp barrier
      }
    }
  });
  StepStates<T> st{s, state, h0, c0, hidden_rows, cells, rolling};
  st.at(s.steps - 1);
  st.copy_last(h_last, c_last);
}

// Backpropagation through the steps on a team of threads (the counterpart of forward_team, with the
// same TeamBlocks): each thread packs W_hh's columns of its units (kGates * H x n). Per step, latest
// first, it runs the cell backward of its block on dh + grad_y (writing its part of dG_t, of dc and
// of dh, the gradient of h_{t-1} that bypasses W_hh), meets the others at one barrier when the units
// are split (its rows of dG_t are then whole), and adds its rows of dG_t times its W_hh columns into
// its block of dh: the next step reads only its own block of dh, so that needs no barrier. dh and
// dc enter as the gradients of the final states and leave as those of h0 and c0.
template <class Cell, class T, class A = Acc<T>>
void backward_team(const LstmShape& s, int team, const T* grad_y, const T* h0, const A* c0, const T* w_hh,
                   const A* gates, const A* cells, const T* hidden, A* dh, A* dc, T* dgates) {
  using Gemm = Arith<T>;
  const int64_t B = s.batch, H = s.hidden, G = Cell::kGates * H, Gd = Cell::kGrad * H, state = B * H;
  const auto cell_backward = Cell::kernels(dispatched_kernels<T>()).second;
  run_team(team, [&](int id, int threads, auto& guarded) {
    const TeamLayout layout = team_layout<Cell, T>(s, threads);
    const TeamBlock block(s, layout, id);
    const int64_t r0 = block.row0, rows = block.rows, j0 = block.unit0, n = block.units;
    typename Gemm::Packed w_hh_share;
    guarded([&] {
      if (!block.empty())
        w_hh_share = Gemm::pack(G, n, 1, 0, {w_hh + j0, H, 1}, scratch<T>(kTeamSlot, Gemm::packed_size(G, n)));
    });
    for (int64_t order = s.steps - 1; order >= 0; --order) {
      const int64_t t = step_at(s, order);
      T* dg_t = dgates + (t * B + r0) * Gd;  // this block's rows of dG_t
      const int64_t at = r0 * H + j0;        // this block's first element of a state
      const int64_t live = block.live(s, t);
      guarded([&] {
        if (block.empty()) return;
        for (int64_t b = live; b < rows; ++b)  // rows not running: no gate gradient, dh and dc kept
          for (int64_t q = 0; q < Cell::kGrad; ++q) std::fill_n(dg_t + b * Gd + q * H + j0, n, T{});
        const int64_t prev = order == 0 ? 0 : step_at(s, order - 1) * state;
        const T* h_prev = order == 0 ? h0 : hidden + prev;
        const A* c_prev = order == 0 ? c0 : Cell::kCell ? cells + prev : nullptr;
        cell_backward({.rows = live,
                       .units = n,
                       .H = H,
                       .act = Cell::kAct ? gates + (t * B + r0) * Cell::kAct * H + j0 : nullptr,
                       .h = hidden + t * state + at,
                       .h_prev = h_prev ? h_prev + at : nullptr,
                       .c = Cell::kCell ? cells + t * state + at : nullptr,
                       .c_prev = c_prev ? c_prev + at : nullptr,
                       .grad_y = grad_y ? grad_y + t * state + at : nullptr,
                       .dh = dh + at,
                       .dc = Cell::kCell ? dc + at : nullptr,
                       .dgates = dg_t + j0});
      });
      if (layout.barrier()) {
#pragma omp barrier
      }
      guarded([&] {
        if (!block.empty() && live)
          Gemm::multiply(live, {dg_t, Gd, 1}, w_hh_share, A(1), {dh + at, H, 1}, {}, order_of_step(order));
      });
    }
  });
}

// The layer of a cell: forward_team over the steps (sizes of 0 pass the states through).
template <class Cell, class T, class A = Acc<T>>
void layer_forward(const LstmShape& s, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                   const T* bias, const T* bias_hh, T* y, T* h_last, T* c_last, A* gates, A* cells, T* hidden) {
  const int64_t state = s.batch * s.hidden;
  if (s.steps == 0 || s.batch == 0 || s.hidden == 0) {  // no gate: the states pass through (or are empty)
    copy_or_zero(h0, state, h_last);
    if (c_last) copy_or_zero(c0, state, c_last);
    return;
  }
  const A* c0_acc = widened(c0, state, scratch<A>(kStateSlot, state));
  forward_team<Cell>(s, team_threads<Cell>(s), x, h0, c0_acc, w_ih, w_hh, bias, bias_hh, y, gates, cells, hidden,
                     h_last, c_last);
}

// Backpropagation through time for layer_forward: backward_team, then the input and weight
// gradients of all steps at once from dG, one GEMM per Segment, each output rounded to T once.
// grad_b_ih takes the bias gradients of the W_ih x segments, grad_b_hh (null when they are the
// same) those of W_hh h.
template <class Cell, class T, class A = Acc<T>>
void layer_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* grad_c_last, const T* x,
                    const T* h0, const T* c0, const T* w_ih, const T* w_hh, const A* gates, const A* cells,
                    const T* hidden, T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_b_ih,
                    T* grad_b_hh) {
  using Gemm = Arith<T>;
  const int64_t B = s.batch, I = s.input, H = s.hidden, G = Cell::kGates * H, Gd = Cell::kGrad * H, state = B * H,
                rows = s.steps * B;
  if (rows == 0 || H == 0) {  // no gate: no gradient reaches x or the weights
    copy_or_zero(grad_h_last, state, grad_h0);
    if (grad_c0) copy_or_zero(grad_c_last, state, grad_c0);
    std::fill(grad_x, grad_x + rows * I, T{});
    std::fill(grad_w_ih, grad_w_ih + G * I, T{});
    std::fill(grad_w_hh, grad_w_hh + G * H, T{});
    std::fill(grad_b_ih, grad_b_ih + G, T{});
    if (grad_b_hh) std::fill(grad_b_hh, grad_b_hh + G, T{});
    return;
  }
  // dh and dc of the step being processed, in Acc<T>: they enter as the final states' gradients
  // and leave as those of h0 and c0 (grad_h0 and grad_c0 themselves when T is Acc<T>).
  A *dh, *dc;
  const A* c0_acc;
  if constexpr (std::is_same_v<T, A>) {
    dh = grad_h0, dc = grad_c0, c0_acc = c0;
  } else {
    A* const work = scratch<A>(kStateSlot, 3 * state);
    dh = work, dc = grad_c0 ? work + state : nullptr, c0_acc = widened(c0, state, work + 2 * state);
  }
  convert_or_zero(grad_h_last, state, dh);
  if (dc) convert_or_zero(grad_c_last, state, dc);
  T* const dgates = scratch<T>(kGateSlot, rows * Gd);  // kept for the next call: no page faults
  backward_team<Cell>(s, team_threads<Cell>(s), grad_y, h0, c0_acc, w_hh, gates, cells, hidden, dh, dc, dgates);
  if constexpr (!std::is_same_v<T, A>) {
    convert_or_zero(dh, state, grad_h0);
    if (dc) convert_or_zero(dc, state, grad_c0);
  }
  const T* dg = dgates;
  // All steps at once: grad_x = dG_ih @ w_ih, grad_w_ih = dG_ih^T @ x.
  const AccOutput<T> gx(grad_x, rows * I, kOutSlot);
  bool first_segment = true;
  for (const Segment& g : Cell::kIh) {
    Gemm::gemm(rows, I, g.blocks * H, {dg + g.col * H, Gd, 1}, {w_ih + g.row * H * I, I, 1}, A(first_segment ? 0 : 1),
               {gx.data, I, 1});
    first_segment = false;
  }
  gx.finish();
  const AccOutput<T> gwi(grad_w_ih, G * I, kOutSlot);
  for (const Segment& g : Cell::kIh)
    Gemm::gemm(g.blocks * H, I, rows, {dg + g.col * H, 1, Gd}, {x, I, 1}, A(0), {gwi.data + g.row * H * I, I, 1});
  gwi.finish();
  // grad_w_hh = sum over steps of dG_hh,t^T @ h_{t-1}: the steps whose h_{t-1} is a stored hidden
  // state form one contiguous range, paired with hidden states one step away; the first step
  // processed pairs with h0.
  const int64_t first = step_at(s, 0);
  const int64_t dg_from = s.reverse ? 0 : 1, h_from = s.reverse ? 1 : 0;
  const AccOutput<T> gwh(grad_w_hh, G * H, kOutSlot);
  for (const Segment& g : Cell::kHh) {
    A* out = gwh.data + g.row * H * H;
    Gemm::gemm(g.blocks * H, H, (s.steps - 1) * B, {dg + dg_from * B * Gd + g.col * H, 1, Gd},
               {hidden + h_from * state, H, 1}, A(0), {out, H, 1});
    if (h0) Gemm::gemm(g.blocks * H, H, B, {dg + first * B * Gd + g.col * H, 1, Gd}, {h0, H, 1}, A(1), {out, H, 1});
  }
  gwh.finish();
  // The bias gradients: dG's column sums, gathered by segment.
  A* const sums = scratch<A>(kCellSlot, Gd);
  std::fill(sums, sums + Gd, A(0));
  for (int64_t r = 0; r < rows; ++r) {
    const Lane<T>* row = lanes(dg + r * Gd);
#pragma omp simd
    for (int64_t j = 0; j < Gd; ++j) sums[j] += widen<T>(row[j]);
  }
  const auto gather = [&](const auto& segments, T* out) {
    for (const Segment& g : segments) convert_or_zero(sums + g.col * H, g.blocks * H, out + g.row * H);
  };
  gather(Cell::kIh, grad_b_ih);
  if (grad_b_hh) gather(Cell::kHh, grad_b_hh);
}

}  // namespace

template <class T>
void lstm_forward(const LstmShape& s, const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh, const T* bias,
                  T* y, T* h_last, T* c_last, Acc<T>* gates, Acc<T>* cells, T* hidden) {
  layer_forward<LstmCell>(s, x, h0, c0, w_ih, w_hh, bias, static_cast<const T*>(nullptr), y, h_last, c_last, gates,
                          cells, hidden);
}

template <class T>
void lstm_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* grad_c_last, const T* x,
                   const T* h0, const T* c0, const T* w_ih, const T* w_hh, const Acc<T>* gates, const Acc<T>* cells,
                   const T* hidden, T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_bias) {
  layer_backward<LstmCell>(s, grad_y, grad_h_last, grad_c_last, x, h0, c0, w_ih, w_hh, gates, cells, hidden, grad_x,
                           grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, static_cast<T*>(nullptr));
}

template <class T>
void gru_forward(const LstmShape& s, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih,
                 const T* b_hh, T* y, T* h_last, Acc<T>* gates, T* hidden) {
  layer_forward<GruCell>(s, x, h0, static_cast<const T*>(nullptr), w_ih, w_hh, b_ih, b_hh, y, h_last,
                         static_cast<T*>(nullptr), gates, static_cast<Acc<T>*>(nullptr), hidden);
}

template <class T>
void gru_backward(const LstmShape& s, const T* grad_y, const T* grad_h_last, const T* x, const T* h0, const T* w_ih,
                  const T* w_hh, const Acc<T>* gates, const T* hidden, T* grad_x, T* grad_h0, T* grad_w_ih,
                  T* grad_w_hh, T* grad_b_ih, T* grad_b_hh) {
  const T* none = nullptr;
  layer_backward<GruCell>(s, grad_y, grad_h_last, none, x, h0, none, w_ih, w_hh, gates,
                          static_cast<const Acc<T>*>(nullptr), hidden, grad_x, grad_h0, static_cast<T*>(nullptr),
                          grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh);
}

template <class T>
void rnn_forward(const LstmShape& s, bool relu, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* bias,
                 T* y, T* h_last, T* hidden) {
  const auto run = [&](auto cell) {
    Acc<T>* none = nullptr;
    layer_forward<decltype(cell)>(s, x, h0, static_cast<const T*>(nullptr), w_ih, w_hh, bias,
                                  static_cast<const T*>(nullptr), y, h_last, static_cast<T*>(nullptr), none, none,
                                  hidden);
  };
  relu ? run(RnnCell<true>{}) : run(RnnCell<false>{});
}

template <class T>
void rnn_backward(const LstmShape& s, bool relu, const T* grad_y, const T* grad_h_last, const T* x, const T* h0,
                  const T* w_ih, const T* w_hh, const T* hidden, T* grad_x, T* grad_h0, T* grad_w_ih, T* grad_w_hh,
                  T* grad_bias) {
  const T* none = nullptr;
  const Acc<T>* no_cache = nullptr;
  const auto run = [&](auto cell) {
    layer_backward<decltype(cell)>(s, grad_y, grad_h_last, none, x, h0, none, w_ih, w_hh, no_cache, no_cache, hidden,
                                   grad_x, grad_h0, static_cast<T*>(nullptr), grad_w_ih, grad_w_hh, grad_bias,
                                   static_cast<T*>(nullptr));
  };
  relu ? run(RnnCell<true>{}) : run(RnnCell<false>{});
}

#define DEEPKERN_RECURRENT_INSTANCES(T)                                                                               \
  template void lstm_forward<T>(const LstmShape&, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, \
                                T*, Acc<T>*, Acc<T>*, T*);                                                            \
  template void lstm_backward<T>(const LstmShape&, const T*, const T*, const T*, const T*, const T*, const T*,        \
                                 const T*, const T*, const Acc<T>*, const Acc<T>*, const T*, T*, T*, T*, T*, T*, T*); \
  template void gru_forward<T>(const LstmShape&, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                               Acc<T>*, T*);                                                                          \
  template void gru_backward<T>(const LstmShape&, const T*, const T*, const T*, const T*, const T*, const T*,         \
                                const Acc<T>*, const T*, T*, T*, T*, T*, T*, T*);                                     \
  template void rnn_forward<T>(const LstmShape&, bool, const T*, const T*, const T*, const T*, const T*, T*, T*, T*); \
  template void rnn_backward<T>(const LstmShape&, bool, const T*, const T*, const T*, const T*, const T*, const T*,   \
                                const T*, T*, T*, T*, T*, T*);
DEEPKERN_RECURRENT_INSTANCES(float)
DEEPKERN_RECURRENT_INSTANCES(double)
DEEPKERN_RECURRENT_INSTANCES(bf16)
#undef DEEPKERN_RECURRENT_INSTANCES

}  // namespace deepkern::cpu
