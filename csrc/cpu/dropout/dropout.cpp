// Dropout: picks the active ISA's kernels (kernels.h) and splits the elements over threads.
//
// How work is split: n elements are cut into one contiguous range per thread at multiples of 64
// elements (a Philox block is 4 elements, and 64 one-byte mask entries fill a cache line), so
// every thread starts on a block and no mask line is written by two threads. Fewer threads run
// when a thread would get fewer than kMinPerThread elements.
#include "cpu/dropout/dropout.h"

#include <algorithm>
#include <cstdint>

#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/dropout/kernels.h"
#include "cpu/dropout/philox.h"

namespace deepkern::cpu {
namespace {

// The forward computes 10 Philox rounds per 4 elements (~2 ns per element on one thread, scalar;
// ~0.3 ns vectorized): a thread start (~1 us) pays off from a few thousand elements. The backward
// only streams memory, as relu_backward (activation.cpp).
constexpr int64_t kMinPerThreadForward = int64_t(1) << 13;
constexpr int64_t kMinPerThreadBackward = int64_t(1) << 15;
constexpr int64_t kCut = 64;  // range boundaries are multiples of this many elements

template <class T>
const DropoutKernels<T>& kernels() {
  return dispatch(IsaFamily::dropout,
                  IsaTables{generic::dropout_kernels, avx2::dropout_kernels, avx512::dropout_kernels})
      .of<T>();
}

// Runs body(begin, end) on [0, n) cut into one range per thread (see the top of the file).
template <class Body>
void split(int64_t n, int64_t min_per_thread, Body&& body) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::clamp<int64_t>(n / min_per_thread, 1, num_threads()));
  const auto cut = [&](int k) { return k == threads ? n : n / threads * k / kCut * kCut; };
  run_on_threads(threads, [&](int t) {
    const int64_t begin = cut(t), end = cut(t + 1);
    if (end > begin) body(begin, end);
  });
}

}  // namespace

template <class T>
void dropout(const T* x, T* y, std::uint8_t* mask, int64_t n, double p, std::uint64_t seed, std::uint64_t offset) {
  const auto kernel = kernels<T>().forward;
  const philox::DropoutParams d = philox::dropout_params(p, seed, offset);
  const T scale = philox::dropout_scale<T>(p);
  split(n, kMinPerThreadForward, [&](int64_t b, int64_t e) { kernel(d, x, y, mask, b, e, scale); });
}

template <class T>
void dropout_backward(const T* grad, const std::uint8_t* mask, T* out, int64_t n, double p) {
  const auto kernel = kernels<T>().backward;
  const T scale = philox::dropout_scale<T>(p);
  split(n, kMinPerThreadBackward, [&](int64_t b, int64_t e) { kernel(grad + b, mask + b, out + b, e - b, scale); });
}

template void dropout<float>(const float*, float*, std::uint8_t*, int64_t, double, std::uint64_t, std::uint64_t);
template void dropout<double>(const double*, double*, std::uint8_t*, int64_t, double, std::uint64_t, std::uint64_t);
template void dropout_backward<float>(const float*, const std::uint8_t*, float*, int64_t, double);
template void dropout_backward<double>(const double*, const std::uint8_t*, double*, int64_t, double);

}  // namespace deepkern::cpu
