// The softmax kernels (softmax.h): one kernel template over the op and the number of threads that
// share a row (kGroup):
//   kGroup = 1     a thread per row, for inner > 1: adjacent threads take adjacent rows, whose
//                  elements are adjacent in memory (coalesced loads with no reduction at all);
//   kGroup = 32    a warp per row, for contiguous rows of up to kWarpRowLimit elements;
//   kGroup = block a block per row, for longer contiguous rows.
// Each row is read once for its statistics: every thread keeps an online (max, sum of exp(x -
// max)) over its elements, rescaling its sum when the max grows, and the group combines the pairs
// (warp shuffles, then shared memory across the block's warps); a second pass writes the outputs.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "cuda/softmax/softmax.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBlockGroup = kThreads;  // kGroup value of the block-per-row kernels
constexpr std::int64_t kWarpRowLimit = 1024;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;
constexpr unsigned kFullMask = 0xffffffffu;

enum class Op { softmax, log_softmax, softmax_backward, log_softmax_backward, ce_forward, ce_backward };

__device__ __forceinline__ float exp_of(float v) { return expf(v); }
__device__ __forceinline__ double exp_of(double v) { return exp(v); }
__device__ __forceinline__ float log_of(float v) { return logf(v); }
__device__ __forceinline__ double log_of(double v) { return log(v); }

template <class T>
constexpr T kNegInf = -__builtin_huge_val();

// A running max m and sum s of exp(x - m).
template <class T>
struct MaxSum {
  T m, s;
};

// Adds x. A new max rescales the sum; 1 + (x - x) is NaN for x = +inf, as exp(x - max) is on the
// CPU, so a row holding +inf is NaN on both devices. NaN x makes s NaN; -inf while the max is
// still -inf adds nothing (-inf - -inf would be NaN).
template <class T>
__device__ __forceinline__ void add(MaxSum<T>& a, T x) {
  if (x > a.m) {
    a.s = a.s * exp_of(a.m - x) + (T(1) + (x - x));
    a.m = x;
  } else {
    const T d = x - a.m;
    a.s += d == d ? exp_of(d) : (x == x ? T(0) : x);
  }
}

template <class T>
__device__ __forceinline__ MaxSum<T> combine(MaxSum<T> a, MaxSum<T> b) {
  const T m = a.m > b.m ? a.m : b.m;
  const T sa = a.m == m ? a.s : a.s * exp_of(a.m - m);  // equal maxima (-inf included) keep their sum
  const T sb = b.m == m ? b.s : b.s * exp_of(b.m - m);
  return {m, sa + sb};
}

template <class T>
__device__ __forceinline__ T sum_of(T a, T b) {
  return a + b;
}

template <class T>
__device__ __forceinline__ T shuffle_xor(T v, int offset) {
  return __shfl_xor_sync(kFullMask, v, offset);
}
template <class T>
__device__ __forceinline__ MaxSum<T> shuffle_xor(MaxSum<T> v, int offset) {
  return {shuffle_xor(v.m, offset), shuffle_xor(v.s, offset)};
}

// v combined over the kGroup threads of a row; every one of them gets the result. `shared` holds
// kWarps values (used by the block groups only; every thread of the block must call).
template <int kGroup, class V, class Combine>
__device__ __forceinline__ V group_reduce(V v, Combine combine_fn, V* shared) {
  if constexpr (kGroup > 1) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = combine_fn(v, shuffle_xor(v, offset));
  }
  if constexpr (kGroup == kBlockGroup) {
    __syncthreads();  // the previous reduction's readers are done with `shared`
    if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
    __syncthreads();
    v = shared[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v = combine_fn(v, shared[w]);
  }
  return v;
}

// Everything a kernel may need; each op reads its own fields.
template <class T>
struct Args {
  const T* x;     // x, or the saved output y (softmax backward)
  const T* grad;  // softmax backward: the gradient; cross-entropy backward: the per-sample factors
  std::int64_t grad_count;
  const std::int64_t* target;
  const T* weight;  // null: all 1
  T* out;
  T* loss;
  T* stats;  // cross-entropy: written by the forward, read by the backward
  std::int64_t rows, length, inner, ignore_index;
  T eps;
  std::int64_t* bad;
};

// Whether target t is ignore_index or a class; records a bad one (the row is then skipped).
template <class T>
__device__ __forceinline__ bool target_ok(const Args<T>& a, std::int64_t t) {
  if (t == a.ignore_index || (t >= 0 && t < a.length)) return true;
  a.bad[1] = t;  // any of the bad targets will do
  a.bad[0] = 1;
  return false;
}

template <Op kOp, int kGroup, class T>
__global__ void __launch_bounds__(kThreads) softmax_kernel(const Args<T> a) {
  __shared__ MaxSum<T> pair_shared[kWarps];
  __shared__ T sum_shared[kWarps];
  constexpr int kRowsPerBlock = kThreads / kGroup;
  const int lane = kGroup == 1 ? 0 : static_cast<int>(threadIdx.x) % kGroup;
  const std::int64_t n = a.length, stride = a.inner;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kGroup;
  for (std::int64_t r = first; r < a.rows; r += static_cast<std::int64_t>(gridDim.x) * kRowsPerBlock) {
    const std::int64_t base = (r / stride) * n * stride + r % stride;  // element c at base + c * stride
    const T* x = a.x + base;
    if constexpr (kOp == Op::softmax_backward || kOp == Op::log_softmax_backward) {
      const T* g = a.grad + base;
      T partial = 0;
      for (std::int64_t c = lane; c < n; c += kGroup)
        partial += kOp == Op::softmax_backward ? g[c * stride] * x[c * stride] : g[c * stride];
      const T total = group_reduce<kGroup>(partial, sum_of<T>, sum_shared);
      for (std::int64_t c = lane; c < n; c += kGroup) {
        const T y = x[c * stride], gc = g[c * stride];
        a.out[base + c * stride] = kOp == Op::softmax_backward ? y * (gc - total) : gc - exp_of(y) * total;
      }
      continue;
    }
    std::int64_t t = 0;
    if constexpr (kOp == Op::ce_forward || kOp == Op::ce_backward) {
      t = a.target[r];
      if (!target_ok(a, t)) {
        if constexpr (kOp == Op::ce_forward)
          if (lane == 0) a.loss[r] = T(__builtin_nan(""));
        continue;
      }
      if (t == a.ignore_index) {
        if constexpr (kOp == Op::ce_forward) {
          if (lane == 0) a.loss[r] = a.stats[3 * r] = a.stats[3 * r + 1] = a.stats[3 * r + 2] = T(0);
        } else {
          for (std::int64_t c = lane; c < n; c += kGroup) a.out[base + c * stride] = T(0);
        }
        continue;
      }
    }
    if constexpr (kOp == Op::ce_backward) {
      const T* st = a.stats + 3 * r;
      const T m = st[0], log_sum = st[1], wt = st[2];
      const T g = a.grad[a.grad_count == 1 ? 0 : r];
      const T smooth = a.eps / T(n);
      T weight_sum = T(n);
      if (a.weight != nullptr && a.eps != T(0)) {
        T partial = 0;
        for (std::int64_t c = lane; c < n; c += kGroup) partial += a.weight[c];
        weight_sum = group_reduce<kGroup>(partial, sum_of<T>, sum_shared);
      }
      const T scale = g * ((T(1) - a.eps) * wt + smooth * weight_sum), shift = g * smooth;
      const T hit = g * ((T(1) - a.eps) * wt);
      for (std::int64_t c = lane; c < n; c += kGroup) {
        const T wc = a.weight != nullptr ? a.weight[c] : T(1);
        const T v = scale * exp_of((x[c * stride] - m) - log_sum) - shift * wc;
        a.out[base + c * stride] = c == t ? v - hit : v;
      }
      continue;
    }
    // softmax, log_softmax, cross-entropy forward: the row's statistics, read once.
    MaxSum<T> own{kNegInf<T>, T(0)};
    for (std::int64_t c = lane; c < n; c += kGroup) add(own, x[c * stride]);
    const MaxSum<T> row = group_reduce<kGroup>(own, combine<T>, pair_shared);
    if constexpr (kOp == Op::softmax) {
      const T inv = T(1) / row.s;
      for (std::int64_t c = lane; c < n; c += kGroup) a.out[base + c * stride] = exp_of(x[c * stride] - row.m) * inv;
    } else if constexpr (kOp == Op::log_softmax) {
      const T log_sum = log_of(row.s);
      for (std::int64_t c = lane; c < n; c += kGroup) a.out[base + c * stride] = (x[c * stride] - row.m) - log_sum;
    } else if constexpr (kOp == Op::ce_forward) {
      const T log_sum = log_of(row.s);
      const T wt = a.weight != nullptr ? a.weight[t] : T(1);
      T smoothing = 0;
      if (a.eps != T(0)) {
        T partial = 0;
        for (std::int64_t c = lane; c < n; c += kGroup) {
          const T wc = a.weight != nullptr ? a.weight[c] : T(1);
          partial += wc * ((row.m - x[c * stride]) + log_sum);
        }
        smoothing = a.eps / T(n) * group_reduce<kGroup>(partial, sum_of<T>, sum_shared);
      }
      if (lane == 0) {
        a.loss[r] = (T(1) - a.eps) * wt * ((row.m - x[t * stride]) + log_sum) + smoothing;
        a.stats[3 * r] = row.m;
        a.stats[3 * r + 1] = log_sum;
        a.stats[3 * r + 2] = wt;
      }
    }
  }
}

template <Op kOp, int kGroup, class T>
void run_group(const Args<T>& a, cudaStream_t stream) {
  constexpr std::int64_t kRowsPerBlock = kThreads / kGroup;
  const auto blocks = static_cast<unsigned>(std::min((a.rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxBlocks));
  launch("softmax_kernel", softmax_kernel<kOp, kGroup, T>, dim3(blocks), dim3(kThreads), 0, stream, a);
}

// The kernel for the row layout: a thread per row when rows are interleaved (inner > 1), a warp
// per short contiguous row, a block per long one.
template <Op kOp, class T>
void run(Args<T> a, const SoftmaxShape& shape, cudaStream_t stream) {
  if (shape.outer < 0 || shape.length < 0 || shape.inner < 0)
    throw std::invalid_argument("softmax: negative size (" + std::to_string(shape.outer) + ", " +
                                std::to_string(shape.length) + ", " + std::to_string(shape.inner) + ")");
  a.rows = shape.outer * shape.inner;
  a.length = shape.length;
  a.inner = shape.inner;
  if (a.rows == 0) return;
  if (shape.inner > 1)
    run_group<kOp, 1>(a, stream);
  else if (shape.length <= kWarpRowLimit)
    run_group<kOp, 32>(a, stream);
  else
    run_group<kOp, kBlockGroup>(a, stream);
}

}  // namespace

template <class T>
void launch_softmax(const T* x, T* out, SoftmaxShape shape, bool log, cudaStream_t stream) {
  Args<T> a{};
  a.x = x;
  a.out = out;
  if (log)
    run<Op::log_softmax>(a, shape, stream);
  else
    run<Op::softmax>(a, shape, stream);
}

template <class T>
void launch_softmax_backward(const T* grad, const T* y, T* out, SoftmaxShape shape, bool log, cudaStream_t stream) {
  Args<T> a{};
  a.x = y;
  a.grad = grad;
  a.out = out;
  if (log)
    run<Op::log_softmax_backward>(a, shape, stream);
  else
    run<Op::softmax_backward>(a, shape, stream);
}

template <class T>
void launch_cross_entropy_forward(const T* x, const std::int64_t* target, const T* weight, T* loss, T* stats,
                                  SoftmaxShape shape, CrossEntropyArgs args, cudaStream_t stream) {
  Args<T> a{};
  a.x = x;
  a.target = target;
  a.weight = weight;
  a.loss = loss;
  a.stats = stats;
  a.ignore_index = args.ignore_index;
  a.eps = static_cast<T>(args.label_smoothing);
  a.bad = args.bad;
  run<Op::ce_forward>(a, shape, stream);
}

template <class T>
void launch_cross_entropy_backward(const T* grad, std::int64_t grad_count, const T* x, const std::int64_t* target,
                                   const T* weight, const T* stats, T* out, SoftmaxShape shape, CrossEntropyArgs args,
                                   cudaStream_t stream) {
  Args<T> a{};
  a.x = x;
  a.grad = grad;
  a.grad_count = grad_count;
  a.target = target;
  a.weight = weight;
  a.stats = const_cast<T*>(stats);  // read only by the backward
  a.out = out;
  a.ignore_index = args.ignore_index;
  a.eps = static_cast<T>(args.label_smoothing);
  a.bad = args.bad;
  run<Op::ce_backward>(a, shape, stream);
}

#define DK_SOFTMAX_INSTANTIATE(T)                                                                                 \
  template void launch_softmax<T>(const T*, T*, SoftmaxShape, bool, cudaStream_t);                                \
  template void launch_softmax_backward<T>(const T*, const T*, T*, SoftmaxShape, bool, cudaStream_t);             \
  template void launch_cross_entropy_forward<T>(const T*, const std::int64_t*, const T*, T*, T*, SoftmaxShape,    \
                                                CrossEntropyArgs, cudaStream_t);                                  \
  template void launch_cross_entropy_backward<T>(const T*, std::int64_t, const T*, const std::int64_t*, const T*, \
                                                 const T*, T*, SoftmaxShape, CrossEntropyArgs, cudaStream_t);
DK_SOFTMAX_INSTANTIATE(float)
DK_SOFTMAX_INSTANTIATE(double)
#undef DK_SOFTMAX_INSTANTIATE

}  // namespace deepkern::cuda
