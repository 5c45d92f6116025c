// Softmax family: picks the active ISA's row kernels (kernels.h) and walks the rows over threads.
//
// Rows: with inner == 1 every row is contiguous and the kernels run on the arrays themselves. With
// inner > 1 the rows of one outer index are interleaved (element c of row j at c * inner + j); a
// thread copies kLanes of them at a time (whole cache lines of every class) into contiguous scratch
// rows, runs the kernels there and copies the written rows back, so the kernels only ever see
// contiguous rows and the memory is still read line by line.
//
// Threads take contiguous ranges of (outer index, block of lanes) units; fewer threads run when a
// thread would get fewer than kMinPerThread elements (a thread start costs about as much as
// exponentials of ~10K floats).
#include "cpu/softmax/softmax.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/isa_dispatch.h"
#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/softmax/kernels.h"

namespace deepkern::cpu {
namespace {

constexpr int64_t kMinPerThread = int64_t(1) << 14;
constexpr int64_t kLanes = 16;  // strided rows copied at a time: a cache line of floats

struct SoftmaxScratch {};
constexpr int kScratchSlots = 3;  // up to two inputs and one output

template <class T>
const SoftmaxKernels<T>& kernels() {
  return dispatch(IsaFamily::softmax,
                  IsaTables{generic::softmax_kernels, avx2::softmax_kernels, avx512::softmax_kernels})
      .template of<T>();
}

// Calls row(i, in, out) for every row i = o * inner + j of `shape`, with in[k] the row of ins[k]
// and out the row of `out` (nullptr when out is), each contiguous: the arrays' own rows when
// inner == 1, else scratch copies (written rows copied back). Rows are split over threads.
template <class T, size_t kIns, class Row>
void for_rows(const SoftmaxShape& shape, const std::array<const T*, kIns>& ins, T* out, Row&& row) {
  static_assert(kIns < kScratchSlots);
  const int64_t length = shape.length, inner = shape.inner;
  if (shape.outer <= 0 || inner <= 0) return;
  const int64_t lanes = inner == 1 ? 1 : kLanes;
  const int64_t blocks = (inner + lanes - 1) / lanes;
  const int64_t units = shape.outer * blocks;
  const int64_t elements = shape.outer * inner * std::max<int64_t>(length, 1);
  const int threads =
      static_cast<int>(std::clamp<int64_t>(elements / kMinPerThread, 1, std::min<int64_t>(num_threads(), units)));
  run_on_threads(threads, [&](int t) {
    std::array<const T*, kIns> rows{};
    for (int64_t u = units * t / threads, end = units * (t + 1) / threads; u < end; ++u) {
      const int64_t o = u / blocks, j0 = u % blocks * lanes, width = std::min(lanes, inner - j0);
      const int64_t base = o * length * inner + j0;
      if (inner == 1) {
        for (size_t k = 0; k < kIns; ++k) rows[k] = ins[k] + base;
        row(o, rows, out ? out + base : nullptr);
        continue;
      }
      // Copies: scratch row jj holds lane j0 + jj.
      std::array<T*, kIns> copies{};
      for (size_t k = 0; k < kIns; ++k) {
        copies[k] = thread_scratch<SoftmaxScratch, kScratchSlots, T>(static_cast<int>(k), width * length);
        for (int64_t c = 0; c < length; ++c)
          for (int64_t jj = 0; jj < width; ++jj) copies[k][jj * length + c] = ins[k][base + c * inner + jj];
      }
      T* written = out ? thread_scratch<SoftmaxScratch, kScratchSlots, T>(kScratchSlots - 1, width * length) : nullptr;
      for (int64_t jj = 0; jj < width; ++jj) {
        for (size_t k = 0; k < kIns; ++k) rows[k] = copies[k] + jj * length;
        row(o * inner + j0 + jj, rows, written ? written + jj * length : nullptr);
      }
      if (out)
        for (int64_t c = 0; c < length; ++c)
          for (int64_t jj = 0; jj < width; ++jj) out[base + c * inner + jj] = written[jj * length + c];
    }
  });
}

}  // namespace

template <class T>
void softmax(const T* x, T* out, SoftmaxShape shape, bool log) {
  const auto kernel = log ? kernels<T>().log_softmax : kernels<T>().softmax;
  const int64_t n = shape.length;
  for_rows<T, 1>(shape, {x}, out, [&](int64_t, const std::array<const T*, 1>& in, T* o) { kernel(in[0], o, n); });
}

template <class T>
void softmax_backward(const T* grad, const T* y, T* out, SoftmaxShape shape, bool log) {
  const auto kernel = log ? kernels<T>().log_softmax_backward : kernels<T>().softmax_backward;
  const int64_t n = shape.length;
  for_rows<T, 2>(shape, {grad, y}, out,
                 [&](int64_t, const std::array<const T*, 2>& in, T* o) { kernel(in[0], in[1], o, n); });
}

template <class T>
void cross_entropy_forward(const T* x, const int64_t* target, const T* weight, T* loss, T* stats, SoftmaxShape shape,
                           CrossEntropyOptions options) {
  const SoftmaxKernels<T>& k = kernels<T>();
  const int64_t classes = shape.length;
  const T eps = static_cast<T>(options.label_smoothing);
  for_rows<T, 1>(shape, {x}, nullptr, [&](int64_t i, const std::array<const T*, 1>& in, T*) {
    const int64_t t = target[i];
    T* st = stats + 3 * i;
    if (t == options.ignore_index) {
      loss[i] = st[0] = st[1] = st[2] = T(0);
      return;
    }
    const T* row = in[0];
    const RowStats<T> rs = k.stats(row, classes);
    const T wt = weight ? weight[t] : T(1);
    T l = (T(1) - eps) * wt * ((rs.max - row[t]) + rs.log_sum);
    if (eps != T(0)) l += eps / T(classes) * k.smoothing_sum(row, weight, classes, rs);
    loss[i] = l;
    st[0] = rs.max;
    st[1] = rs.log_sum;
    st[2] = wt;
  });
}

template <class T>
void cross_entropy_backward(const T* grad, int64_t grad_count, const T* x, const int64_t* target, const T* weight,
                            const T* stats, T* out, SoftmaxShape shape, CrossEntropyOptions options) {
  const auto kernel = kernels<T>().cross_entropy_grad;
  const int64_t classes = shape.length;
  const T eps = static_cast<T>(options.label_smoothing);
  double weight_sum = static_cast<double>(classes);
  if (weight) {
    weight_sum = 0;
    for (int64_t c = 0; c < classes; ++c) weight_sum += weight[c];
  }
  for_rows<T, 1>(shape, {x}, out, [&](int64_t i, const std::array<const T*, 1>& in, T* o) {
    const int64_t t = target[i];
    if (t == options.ignore_index) {
      std::fill(o, o + classes, T(0));
      return;
    }
    const T g = grad[grad_count == 1 ? 0 : i];
    const T* st = stats + 3 * i;
    // total: the sum over classes of the target weights. The smoothing terms only where there is
    // smoothing, as in the forward: without it only the target's weight enters (another class's
    // infinite or NaN weight times 0 would make the row NaN).
    const bool smoothing = eps != T(0);
    const T smooth = eps / T(classes);
    const T total = (T(1) - eps) * st[2] + (smoothing ? smooth * static_cast<T>(weight_sum) : T(0));
    kernel(in[0], smoothing ? weight : nullptr, o, classes, RowStats<T>{st[0], st[1]}, g * total,
           smoothing ? g * smooth : T(0));
    o[t] -= g * ((T(1) - eps) * st[2]);
  });
}

template void softmax<float>(const float*, float*, SoftmaxShape, bool);
template void softmax<double>(const double*, double*, SoftmaxShape, bool);
template void softmax_backward<float>(const float*, const float*, float*, SoftmaxShape, bool);
template void softmax_backward<double>(const double*, const double*, double*, SoftmaxShape, bool);
template void cross_entropy_forward<float>(const float*, const int64_t*, const float*, float*, float*, SoftmaxShape,
                                           CrossEntropyOptions);
template void cross_entropy_forward<double>(const double*, const int64_t*, const double*, double*, double*,
                                            SoftmaxShape, CrossEntropyOptions);
template void cross_entropy_backward<float>(const float*, int64_t, const float*, const int64_t*, const float*,
                                            const float*, float*, SoftmaxShape, CrossEntropyOptions);
template void cross_entropy_backward<double>(const double*, int64_t, const double*, const int64_t*, const double*,
                                             const double*, double*, SoftmaxShape, CrossEntropyOptions);

}  // namespace deepkern::cpu
