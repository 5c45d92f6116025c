// Activations: picks the active ISA's kernels (kernels.h) and splits the elements over threads.
//
// How work is split: run_on_ranges (core/threading.h), one contiguous range of elements per thread,
// so each thread streams its inputs and output once, and no more threads than kMinPerThread*
// (measured on the project's 2-core machine) make worthwhile.
#include "cpu/activation/activation.h"

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

// A bfloat16 array as its 16-bit patterns (bf16 is one uint16_t).
const uint16_t* bits(const bf16* p) { return reinterpret_cast<const uint16_t*>(p); }
uint16_t* bits(bf16* p) { return reinterpret_cast<uint16_t*>(p); }

const Bf16ReluKernels& bf16_kernels() {
  return dispatch(IsaFamily::activation,
                  IsaTables{generic::relu_bf16_kernels, avx2::relu_bf16_kernels, avx512::relu_bf16_kernels});
}

}  // namespace

template <class T>
void relu(const T* x, T* out, int64_t n) {
  const auto kernel = kernels<T>().relu;
  run_on_ranges(out, n, kMinPerThreadRelu, [&](int64_t b, int64_t e) { kernel(x + b, out + b, e - b); });
}

template <class T>
void relu_backward(const T* grad, const T* x, T* out, int64_t n) {
  const auto kernel = kernels<T>().relu_backward;
  run_on_ranges(out, n, kMinPerThreadRelu, [&](int64_t b, int64_t e) { kernel(grad + b, x + b, out + b, e - b); });
}

void relu(const bf16* x, bf16* out, int64_t n) {
  const auto kernel = bf16_kernels().relu;
  run_on_ranges(out, n, kMinPerThreadRelu, [&](int64_t b, int64_t e) { kernel(bits(x + b), bits(out + b), e - b); });
}

void relu_backward(const bf16* grad, const bf16* x, bf16* out, int64_t n) {
  const auto kernel = bf16_kernels().relu_backward;
  run_on_ranges(out, n, kMinPerThreadRelu,
                [&](int64_t b, int64_t e) { kernel(bits(grad + b), bits(x + b), bits(out + b), e - b); });
}

template <class T>
void gelu(const T* x, T* out, int64_t n, GeluApproximate approximate) {
  const auto& k = kernels<T>();
  const auto kernel = approximate == GeluApproximate::tanh ? k.gelu_tanh : k.gelu;
  run_on_ranges(out, n, kMinPerThreadGelu, [&](int64_t b, int64_t e) { kernel(x + b, out + b, e - b); });
}

template <class T>
void gelu_backward(const T* grad, const T* x, T* out, int64_t n, GeluApproximate approximate) {
  const auto& k = kernels<T>();
  const auto kernel = approximate == GeluApproximate::tanh ? k.gelu_tanh_backward : k.gelu_backward;
  run_on_ranges(out, n, kMinPerThreadGelu, [&](int64_t b, int64_t e) { kernel(grad + b, x + b, out + b, e - b); });
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
