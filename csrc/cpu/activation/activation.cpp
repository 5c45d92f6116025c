// Activations: picks the active ISA's kernels (kernels.h) and splits the elements over threads.
//
// How work is split: n elements are cut into one contiguous range per thread, the cuts on 64-byte
// boundaries of `out` (no cache line written by two threads), so each thread streams its inputs
// and output once. Fewer threads run when a thread would get fewer than kMinPerThread elements:
// below that, starting a thread costs more than it saves (measured on the project's 2-core
// machine, see kMinPerThreadRelu).
#include "cpu/activation/activation.h"

#include <algorithm>
#include <cstdint>

#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/activation/kernels.h"

namespace deepkern::cpu {
namespace {

// relu moves 8 (backward 12) bytes per element and computes ~nothing; gelu computes 50-110
// vector operations per 16 floats. Whole _C calls, float32, in cache, 1 -> 2 threads: relu_backward
// 64K elements 4.4 -> 2.7 us, relu 32K 1.6 us on one thread (a thread start costs ~1 us); gelu
// 8K 2.6 -> 2.0 us, 4K 1.4 us on one thread.
constexpr int64_t kMinPerThreadRelu = int64_t(1) << 15;
constexpr int64_t kMinPerThreadGelu = int64_t(1) << 12;

template <class T>
const ActivationKernels<T>& kernels() {
  return dispatch(IsaFamily::activation,
                  IsaTables{generic::activation_kernels, avx2::activation_kernels, avx512::activation_kernels})
      .of<T>();
}

// Runs body(begin, end) on [0, n) cut into one range per thread (see the top of the file).
template <class T, class Body>
void split(const T* out, int64_t n, int64_t min_per_thread, Body&& body) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::clamp<int64_t>(n / min_per_thread, 1, num_threads()));
  constexpr int64_t kLine = 64 / sizeof(T);  // elements per cache line
  const int64_t skew = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out) % 64 / sizeof(T));
  const auto cut = [&](int k) {
    if (k == threads) return n;
    return std::max<int64_t>(0, (n / threads * k + skew) / kLine * kLine - skew);
  };
  run_on_threads(threads, [&](int t) {
    const int64_t begin = cut(t), end = cut(t + 1);
    if (end > begin) body(begin, end);
  });
}

}  // namespace

template <class T>
void relu(const T* x, T* out, int64_t n) {
  const auto kernel = kernels<T>().relu;
  split(out, n, kMinPerThreadRelu, [&](int64_t b, int64_t e) { kernel(x + b, out + b, e - b); });
}

template <class T>
void relu_backward(const T* grad, const T* x, T* out, int64_t n) {
  const auto kernel = kernels<T>().relu_backward;
  split(out, n, kMinPerThreadRelu, [&](int64_t b, int64_t e) { kernel(grad + b, x + b, out + b, e - b); });
}

template <class T>
void gelu(const T* x, T* out, int64_t n, GeluApproximate approximate) {
  const auto& k = kernels<T>();
  const auto kernel = approximate == GeluApproximate::tanh ? k.gelu_tanh : k.gelu;
  split(out, n, kMinPerThreadGelu, [&](int64_t b, int64_t e) { kernel(x + b, out + b, e - b); });
}

template <class T>
void gelu_backward(const T* grad, const T* x, T* out, int64_t n, GeluApproximate approximate) {
  const auto& k = kernels<T>();
  const auto kernel = approximate == GeluApproximate::tanh ? k.gelu_tanh_backward : k.gelu_backward;
  split(out, n, kMinPerThreadGelu, [&](int64_t b, int64_t e) { kernel(grad + b, x + b, out + b, e - b); });
}

template void relu<float>(const float*, float*, int64_t);
template void relu<double>(const double*, double*, int64_t);
template void relu_backward<float>(const float*, const float*, float*, int64_t);
template void relu_backward<double>(const double*, const double*, double*, int64_t);
template void gelu<float>(const float*, float*, int64_t, GeluApproximate);
template void gelu<double>(const double*, double*, int64_t, GeluApproximate);
template void gelu_backward<float>(const float*, const float*, float*, int64_t, GeluApproximate);
template void gelu_backward<double>(const double*, const double*, double*, int64_t, GeluApproximate);

}  // namespace deepkern::cpu
