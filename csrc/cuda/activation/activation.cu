// The activation kernels (activation.h): one kernel per op and dtype, a grid-stride loop over
// 16-byte packs (4 floats or 2 doubles) when every array is 16-byte aligned, then the last
// n % pack elements (or, for misaligned arrays, all of them) one at a time.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/activation/activation_math.h"
#include "cuda/activation/activation.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

namespace math = activation_math;

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;

// 16 bytes of T, loaded and stored as one vector access.
template <class T>
struct alignas(16) Pack {
  T v[16 / sizeof(T)];
};

// The op on one element (grad unused by the forward ops).
template <ActivationOp kOp, class T>
__device__ __forceinline__ T apply(T grad, T x) {
  if constexpr (kOp == ActivationOp::relu) return math::relu(x);
  if constexpr (kOp == ActivationOp::relu_backward) return math::relu_backward(grad, x);
  if constexpr (kOp == ActivationOp::gelu) return math::gelu(x);
  if constexpr (kOp == ActivationOp::gelu_backward) return grad * math::gelu_grad(x);
  if constexpr (kOp == ActivationOp::gelu_tanh) return math::gelu_tanh(x);
  if constexpr (kOp == ActivationOp::gelu_tanh_backward) return grad * math::gelu_tanh_grad(x);
}

// Whether the op reads grad.
template <ActivationOp kOp>
constexpr bool kHasGrad =
    kOp == ActivationOp::relu_backward || kOp == ActivationOp::gelu_backward || kOp == ActivationOp::gelu_tanh_backward;

// Elements [0, packs * kPack) as packs, then [packs * kPack, n) one by one; packs is 0 unless
// every array is 16-byte aligned.
template <ActivationOp kOp, class T>
__global__ void __launch_bounds__(kThreads) activation_kernel(const T* __restrict__ grad, const T* __restrict__ x,
                                                              T* __restrict__ out, std::int64_t n, std::int64_t packs) {
  constexpr int kPack = 16 / sizeof(T);
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (std::int64_t p = first; p < packs; p += step) {
    const Pack<T> xv = reinterpret_cast<const Pack<T>*>(x)[p];
    Pack<T> gv{};
    if constexpr (kHasGrad<kOp>) gv = reinterpret_cast<const Pack<T>*>(grad)[p];
    Pack<T> ov;
#pragma unroll
    for (int j = 0; j < kPack; ++j) ov.v[j] = apply<kOp>(gv.v[j], xv.v[j]);
    reinterpret_cast<Pack<T>*>(out)[p] = ov;
  }
  for (std::int64_t i = packs * kPack + first; i < n; i += step)
    out[i] = apply<kOp>(kHasGrad<kOp> ? grad[i] : T(0), x[i]);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <ActivationOp kOp, class T>
void run(const T* grad, const T* x, T* out, std::int64_t n, cudaStream_t stream) {
  constexpr int kPack = 16 / sizeof(T);
  const bool vector = aligned16(x) && aligned16(out) && (!kHasGrad<kOp> || aligned16(grad));
  const std::int64_t packs = vector ? n / kPack : 0;
  const std::int64_t work = packs + (n - packs * kPack);  // the threads' iterations, packs and tail
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((work + kThreads - 1) / kThreads, kMaxBlocks));
  launch("activation_kernel", activation_kernel<kOp, T>, dim3(blocks), dim3(kThreads), 0, stream, grad, x, out, n,
         packs);
}

}  // namespace

template <class T>
void launch_activation(ActivationOp op, const T* grad, const T* x, T* out, std::int64_t n, cudaStream_t stream) {
  if (n < 0) throw std::invalid_argument("activation: negative element count " + std::to_string(n));
  if (n == 0) return;
  switch (op) {
    case ActivationOp::relu: return run<ActivationOp::relu>(grad, x, out, n, stream);
    case ActivationOp::relu_backward: return run<ActivationOp::relu_backward>(grad, x, out, n, stream);
    case ActivationOp::gelu: return run<ActivationOp::gelu>(grad, x, out, n, stream);
    case ActivationOp::gelu_backward: return run<ActivationOp::gelu_backward>(grad, x, out, n, stream);
    case ActivationOp::gelu_tanh: return run<ActivationOp::gelu_tanh>(grad, x, out, n, stream);
    case ActivationOp::gelu_tanh_backward: return run<ActivationOp::gelu_tanh_backward>(grad, x, out, n, stream);
  }
  throw std::invalid_argument("activation: unknown op code " + std::to_string(static_cast<int>(op)));
}

template void launch_activation<float>(ActivationOp, const float*, const float*, float*, std::int64_t, cudaStream_t);
template void launch_activation<double>(ActivationOp, const double*, const double*, double*, std::int64_t,
                                        cudaStream_t);

}  // namespace deepkern::cuda
