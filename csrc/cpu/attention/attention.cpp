// Attention family: the blocked forward and backward of attention.h on the project's GEMM (one
// thread per call: the blocks are already spread over threads) and the active ISA's row kernels.
//
// Forward (FlashAttention-2): a thread takes blocks of kBlockQ queries of one problem (round
// robin) and walks the key blocks (kBlockK keys; causal: only those a query of the block sees):
// S = scale Q K^T (GEMM), the online softmax per row (running max m and sum l; the output rows
// rescaled when m grows), dropout on the block, O += P V (GEMM); at the end O /= l and
// lse = m + log l. Only the kBlockQ x kBlockK block of scores is in memory, in the thread's scratch.
//
// Backward: a thread takes whole problems (so dq, dk and dv are sums in one fixed order, whatever
// the thread count): D = rowsum(dO * O), then for each key block and each query block that sees
// it: P = exp(S - lse) recomputed (rows whose lse is too large to hold log l take their max and sum
// again, see row_shifts), dV += (P Z)^T dO, dP = (dO V^T) Z, dS = P (dP - D),
// dQ += scale dS K, dK += scale dS^T Q, with Z dropout's factors regenerated from Philox; when the
// mask's gradient is asked, dS is also added into its matrix (summed over broadcast rows or keys).
#include "cpu/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/isa_dispatch.h"
#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/attention/kernels.h"
#include "cpu/dropout/philox.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {
namespace {

constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 256;
// The backward's key blocks: smaller, so a causal mask skips more of the blocks it hides.
constexpr int64_t kBackwardBlockK = 128;
// Below this many multiply-adds per thread, fewer threads run (a thread start costs ~10 us).
constexpr int64_t kMinMacsPerThread = int64_t(1) << 18;
// |lse| beyond which its rounding (a 64th of float's epsilon relative) is no longer small beside
// log l: the backward takes such a row's max and sum again (row_shifts).
constexpr double kExactLse = 64;

struct AttentionScratch;  // this family's thread_scratch tag
enum Slot { kScores, kScoreGrads, kDropped, kRowStats, kSlots };

template <class T>
T* scratch(Slot slot, int64_t count) {
  return thread_scratch<AttentionScratch, kSlots, T>(slot, count);
}

template <class T>
const AttentionKernels<T>& kernels() {
  return dispatch(IsaFamily::attention,
                  IsaTables{generic::attention_kernels, avx2::attention_kernels, avx512::attention_kernels})
      .template of<T>();
}

// A row-major matrix (leading dimension ld) and its transpose, as GEMM operands.
template <class T>
StridedMatrix<const T> rows_of(const T* p, int64_t ld) {
  return {p, ld, 1};
}
template <class T>
StridedMatrix<const T> transposed(const T* p, int64_t ld) {
  return {p, 1, ld};
}

// c (m x n, leading dimension ldc) = alpha a b + beta c, on the calling thread.
template <class T>
void product(int64_t m, int64_t n, int64_t k, T alpha, StridedMatrix<const T> a, StridedMatrix<const T> b, T beta, T* c,
             int64_t ldc) {
  gemm<T>(m, n, k, alpha, a, b, beta, StridedMatrix<T>{c, ldc, 1}, GemmEpilogue<T>{}, 1);
}

// One problem's operands and the call's per-row rules (mask, causal limit, dropout stream).
template <class T>
struct Problem {
  const AttentionInputs<T>& in;
  const AttentionShape& shape;
  const AttentionOptions& options;
  int64_t n;
  philox::DropoutParams dropout;
  T keep_scale;

  const T* q() const { return in.q + n * shape.l * shape.e; }
  const T* k() const { return in.k + in.k_offsets[n]; }
  const T* v() const { return in.v + in.v_offsets[n]; }
  // Row i's mask from key j0 on (null: no mask).
  const T* mask(int64_t i, int64_t j0) const {
    return in.mask ? in.mask + in.mask_offsets[n] + i * in.mask_row_stride + j0 * in.mask_col_stride : nullptr;
  }
  // How many of the `cols` keys from j0 on row i sees.
  int64_t valid(int64_t i, int64_t j0, int64_t cols) const {
    return options.causal ? std::clamp<int64_t>(i + 1 - j0, 0, cols) : cols;
  }
  bool drops() const { return options.dropout_p > 0; }
  // Dropout's factors on row i's scores from key j0 on.
  void drop(const AttentionKernels<T>& kern, T* row, int64_t i, int64_t j0, int64_t cols) const {
    const auto first = static_cast<std::uint64_t>((n * shape.l + i) * shape.s + j0);
    kern.dropout(row, cols, first, dropout, keep_scale);
  }
  // The GEMM's alpha for the scores: no keys' dimensions give scores of 0 whatever the scale.
  T alpha() const { return shape.e ? static_cast<T>(options.scale) : T(0); }
};

template <class T>
Problem<T> problem(const AttentionInputs<T>& in, const AttentionShape& shape, const AttentionOptions& options,
                   int64_t n) {
  return {in,
          shape,
          options,
          n,
          philox::dropout_params(options.dropout_p, options.seed, options.offset),
          philox::dropout_scale<T>(options.dropout_p)};
}

int threads_for(int64_t macs, int64_t units) {
  return static_cast<int>(
      std::clamp<int64_t>(macs / kMinMacsPerThread, 1, std::min<int64_t>(num_threads(), std::max<int64_t>(units, 1))));
}

// Rows [i0, i0 + rows) of one problem's forward: o rows written, lse rows written.
template <class T>
void forward_block(const AttentionKernels<T>& kern, const Problem<T>& p, int64_t i0, int64_t rows, T* o, T* lse) {
  const AttentionShape& sh = p.shape;
  T* scores = scratch<T>(kScores, kBlockQ * kBlockK);
  T* m = scratch<T>(kRowStats, 2 * kBlockQ);
  T* l = m + kBlockQ;
  std::fill(m, m + rows, -std::numeric_limits<T>::infinity());
  std::fill(l, l + rows, T(0));
  std::fill(o, o + rows * sh.ev, T(0));
  const int64_t key_end = p.options.causal ? std::min(sh.s, i0 + rows) : sh.s;
  for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
    const int64_t cols = std::min(kBlockK, key_end - j0);
    product<T>(rows, cols, sh.e, p.alpha(), rows_of(p.q() + i0 * sh.e, sh.e), transposed(p.k() + j0 * sh.e, sh.e), T(0),
               scores, kBlockK);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = i0 + r;
      T* row = scores + r * kBlockK;
      kern.online_softmax(row, cols, p.valid(i, j0, cols), p.mask(i, j0), p.in.mask_col_stride, m + r, l + r,
                          o + r * sh.ev, sh.ev);
      if (p.drops()) p.drop(kern, row, i, j0, cols);
    }
    product<T>(rows, sh.ev, cols, T(1), rows_of<T>(scores, kBlockK), rows_of(p.v() + j0 * sh.ev, sh.ev), T(1), o,
               sh.ev);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const bool seen = l[r] != 0;  // false: every key masked out (or no keys); NaN l stays NaN (lse too)
    const T inv = seen ? T(1) / l[r] : T(0);
    for (int64_t c = 0; c < sh.ev; ++c) o[r * sh.ev + c] *= inv;
    lse[r] = seen ? m[r] + std::log(l[r]) : -std::numeric_limits<T>::infinity();
  }
}

// Adds row i's score gradients ds (keys j0 .. j0 + cols) into one problem's mask gradient dm (its
// rows x cols matrix): a one-row matrix sums the queries, a one-column one the keys.
template <class T>
void add_mask_grad(const AttentionMaskGrad<T>& dm, int64_t i, int64_t j0, const T* ds, int64_t cols) {
  T* row = dm.d + (dm.rows == 1 ? 0 : i * dm.cols);
  if (dm.cols == 1) {
    T sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += ds[c];
    row[0] += sum;
  } else {
    for (int64_t c = 0; c < cols; ++c) row[j0 + c] += ds[c];
  }
}

// The shifts of each row's probabilities P = exp((S - shift) - log_sum): lse and 0, or, where lse is
// so large that it no longer holds log l (every key under a large finite mask: lse = -1e9 + log l
// is -1e9 in float), the row's max m and log l computed again from its scores, as the forward did.
// `scores`: kBlockK elements of scratch.
template <class T>
void row_shifts(const AttentionKernels<T>& kern, const Problem<T>& p, const T* lse, T* shift, T* log_sum, T* scores) {
  const AttentionShape& sh = p.shape;
  for (int64_t i = 0; i < sh.l; ++i) {
    shift[i] = lse[i];
    log_sum[i] = 0;
    if (!(std::abs(lse[i]) > kExactLse) || std::isinf(lse[i])) continue;
    T m = -std::numeric_limits<T>::infinity(), l = 0;
    const int64_t key_end = p.options.causal ? std::min(sh.s, i + 1) : sh.s;
    for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
      const int64_t cols = std::min(kBlockK, key_end - j0);
      product<T>(1, cols, sh.e, p.alpha(), rows_of(p.q() + i * sh.e, sh.e), transposed(p.k() + j0 * sh.e, sh.e), T(0),
                 scores, kBlockK);
      kern.online_softmax(scores, cols, p.valid(i, j0, cols), p.mask(i, j0), p.in.mask_col_stride, &m, &l, nullptr, 0);
    }
    if (l != 0) {
      shift[i] = m;
      log_sum[i] = std::log(l);
    }
  }
}

// One problem's backward: dq (L, E), dk (S, E), dv (S, Ev) written, and its mask gradient dm (one
// matrix; dm.d null: not asked).
template <class T>
void backward_problem(const AttentionKernels<T>& kern, const Problem<T>& p, const T* o, const T* lse, const T* grad,
                      T* dq, T* dk, T* dv, const AttentionMaskGrad<T>& dm) {
  const AttentionShape& sh = p.shape;
  std::fill(dq, dq + sh.l * sh.e, T(0));
  std::fill(dk, dk + sh.s * sh.e, T(0));
  std::fill(dv, dv + sh.s * sh.ev, T(0));
  if (dm.d) std::fill(dm.d, dm.d + dm.rows * dm.cols, T(0));
  T* probs = scratch<T>(kScores, kBlockQ * kBackwardBlockK);
  T* dscores = scratch<T>(kScoreGrads, kBlockQ * kBackwardBlockK);
  T* dropped = p.drops() ? scratch<T>(kDropped, kBlockQ * kBackwardBlockK) : probs;
  T* d = scratch<T>(kRowStats, 3 * sh.l);
  T *shift = d + sh.l, *log_sum = shift + sh.l;
  row_shifts(kern, p, lse, shift, log_sum, probs);
  for (int64_t i = 0; i < sh.l; ++i) {
    T sum = 0;
    for (int64_t c = 0; c < sh.ev; ++c) sum += grad[i * sh.ev + c] * o[i * sh.ev + c];
    d[i] = sum;
  }
  const T alpha = p.alpha();
  for (int64_t j0 = 0; j0 < sh.s; j0 += kBackwardBlockK) {
    const int64_t cols = std::min(kBackwardBlockK, sh.s - j0);
    const T* kj = p.k() + j0 * sh.e;
    const T* vj = p.v() + j0 * sh.ev;
    for (int64_t i0 = p.options.causal ? j0 / kBlockQ * kBlockQ : 0; i0 < sh.l; i0 += kBlockQ) {
      const int64_t rows = std::min(kBlockQ, sh.l - i0);
      const T* qi = p.q() + i0 * sh.e;
      const T* gi = grad + i0 * sh.ev;
      product<T>(rows, cols, sh.e, alpha, rows_of(qi, sh.e), transposed(kj, sh.e), T(0), probs, kBackwardBlockK);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        kern.probabilities(probs + r * kBackwardBlockK, cols, p.valid(i, j0, cols), p.mask(i, j0), p.in.mask_col_stride,
                           shift[i], log_sum[i]);
        if (p.drops()) {
          std::memcpy(dropped + r * kBackwardBlockK, probs + r * kBackwardBlockK, sizeof(T) * cols);
          p.drop(kern, dropped + r * kBackwardBlockK, i, j0, cols);
        }
      }
      product<T>(cols, sh.ev, rows, T(1), transposed<T>(dropped, kBackwardBlockK), rows_of(gi, sh.ev), T(1),
                 dv + j0 * sh.ev, sh.ev);
      product<T>(rows, cols, sh.ev, T(1), rows_of(gi, sh.ev), transposed(vj, sh.ev), T(0), dscores, kBackwardBlockK);
      for (int64_t r = 0; r < rows; ++r) {
        T* row = dscores + r * kBackwardBlockK;
        if (p.drops()) p.drop(kern, row, i0 + r, j0, cols);
        kern.score_grad(probs + r * kBackwardBlockK, row, cols, d[i0 + r]);
        if (dm.d) add_mask_grad(dm, i0 + r, j0, row, cols);
      }
      product<T>(rows, sh.e, cols, alpha, rows_of<T>(dscores, kBackwardBlockK), rows_of(kj, sh.e), T(1), dq + i0 * sh.e,
                 sh.e);
      product<T>(cols, sh.e, rows, alpha, transposed<T>(dscores, kBackwardBlockK), rows_of(qi, sh.e), T(1),
                 dk + j0 * sh.e, sh.e);
    }
  }
}

}  // namespace

template <class T>
void attention_forward(const AttentionInputs<T>& in, AttentionShape shape, const AttentionOptions& options, T* o,
                       T* lse) {
  const AttentionKernels<T>& kern = kernels<T>();
  const int64_t blocks = (shape.l + kBlockQ - 1) / kBlockQ;
  const int64_t units = shape.n * blocks;
  if (units == 0) return;
  const int64_t macs = shape.n * shape.l * shape.s * (shape.e + shape.ev + 1);
  const int threads = threads_for(macs, units);
  run_on_threads(threads, [&](int t) {
    // Round robin: under a causal mask later query blocks cost more, so contiguous ranges would
    // leave the first threads idle.
    for (int64_t u = t; u < units; u += threads) {
      const int64_t n = u / blocks, i0 = u % blocks * kBlockQ;
      const int64_t rows = std::min(kBlockQ, shape.l - i0);
      const int64_t row0 = n * shape.l + i0;
      forward_block(kern, problem(in, shape, options, n), i0, rows, o + row0 * shape.ev, lse + row0);
    }
  });
}

template <class T>
void attention_backward(const AttentionInputs<T>& in, AttentionShape shape, const AttentionOptions& options, const T* o,
                        const T* lse, const T* grad, T* dq, T* dk, T* dv, AttentionMaskGrad<T> dmask) {
  const AttentionKernels<T>& kern = kernels<T>();
  if (shape.n == 0) return;
  const int64_t macs = shape.n * shape.l * shape.s * 2 * (shape.e + shape.ev + 1);
  const int threads = threads_for(macs, shape.n);
  run_on_threads(threads, [&](int t) {
    for (int64_t n = shape.n * t / threads, end = shape.n * (t + 1) / threads; n < end; ++n) {
      const int64_t rows = n * shape.l, keys = n * shape.s;
      const AttentionMaskGrad<T> dm{dmask.d ? dmask.d + n * dmask.rows * dmask.cols : nullptr, dmask.rows, dmask.cols};
      backward_problem(kern, problem(in, shape, options, n), o + rows * shape.ev, lse + rows, grad + rows * shape.ev,
                       dq + rows * shape.e, dk + keys * shape.e, dv + keys * shape.ev, dm);
    }
  });
}

template void attention_forward<float>(const AttentionInputs<float>&, AttentionShape, const AttentionOptions&, float*,
                                       float*);
template void attention_forward<double>(const AttentionInputs<double>&, AttentionShape, const AttentionOptions&,
                                        double*, double*);
template void attention_backward<float>(const AttentionInputs<float>&, AttentionShape, const AttentionOptions&,
                                        const float*, const float*, const float*, float*, float*, float*,
                                        AttentionMaskGrad<float>);
template void attention_backward<double>(const AttentionInputs<double>&, AttentionShape, const AttentionOptions&,
                                         const double*, const double*, const double*, double*, double*, double*,
                                         AttentionMaskGrad<double>);

}  // namespace deepkern::cpu
