// The activation kernels of one ISA: this source is compiled once per ISA (DEEPKERN_ISA_NS =
// avx512, avx2, generic) and the compiler vectorizes its loops for that ISA's registers. The
// contract, special values included, is in activation.h; the double GELUs (scalar, the same for
// every ISA) are in gelu_double.cpp.
//
// The per-element math is activation_math.h's (shared with the CUDA kernels). The float GELUs
// call no library function (a call keeps the loop scalar). Both reduce to e^-v,
// v >= 0, times rational functions, with vmath.h's exponential taking the argument at more than
// float precision, so tiny results keep their relative accuracy: gelu(-10) = -7.6e-23 comes out
// within a few ulp, where 0.5 x (1 + erf(x / sqrt 2)) in float has no correct digit from x ~ -5.5
// down.
//
// Measured max error, in ulp of the float result, against long-double references: every 7th float
// in [-16, 16] (3.1e8 inputs) and every float in [-15.5, -12.5] and [-11.2, -10.2], where the
// results turn subnormal. AVX2 and AVX-512 builds (fused multiply-adds); the generic SSE2 build in
// parentheses:
//   gelu 6.2 (6.9)   gelu backward 6.7 (7.8)   gelu tanh 3.0 (3.0)   gelu tanh backward 5.6 (5.6)
// mean 0.09-0.14 ulp. The errors are the roundings of ~10 float operations in series, the rational
// functions' Horner steps most (their fits are below 0.3 ulp); evaluating those in double gives
// gelu 3.8 and gelu backward 4.2 ulp but costs 40-50% more time.

#include <cstdint>

#include "cpu/activation/activation_math.h"
#include "cpu/activation/kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

namespace math = activation_math;

// relu may run in place (out == x): each element is read before it is written.
template <class T>
void relu(const T* x, T* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = math::relu(x[i]);
}

template <class T>
void relu_backward(const T* __restrict grad, const T* __restrict x, T* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = math::relu_backward(grad[i], x[i]);
}

// The Bf16ReluKernels contract (kernels.h) on the bits: kMagnitude masks the sign off, kInfinity is
// the largest magnitude that is not a NaN.
constexpr uint16_t kMagnitude = 0x7fff, kSign = 0x8000, kInfinity = 0x7f80;

void relu_bf16(const uint16_t* x, uint16_t* out, int64_t n) {  // in place too
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t magnitude = x[i] & kMagnitude;
    const bool negative = (x[i] & kSign) && magnitude != 0 && magnitude <= kInfinity;
    out[i] = negative ? uint16_t(0) : x[i];
  }
}

void relu_backward_bf16(const uint16_t* __restrict grad, const uint16_t* __restrict x, uint16_t* __restrict out,
                        int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t magnitude = x[i] & kMagnitude;
    const bool passes = (!(x[i] & kSign) && magnitude != 0) || magnitude > kInfinity;
    out[i] = passes ? grad[i] : uint16_t(0);
  }
}

// ---- loops -----------------------------------------------------------------------------------

template <float (*F)(float)>
void map_f32(const float* __restrict x, float* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = F(x[i]);
}

template <float (*F)(float)>
void scale_f32(const float* __restrict grad, const float* __restrict x, float* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = grad[i] * F(x[i]);
}

}  // namespace

const KernelsByType<ActivationKernels> activation_kernels = {
    .f32 = {.relu = &relu<float>,
            .relu_backward = &relu_backward<float>,
            .gelu = &map_f32<math::gelu>,
            .gelu_tanh = &map_f32<math::gelu_tanh>,
            .gelu_backward = &scale_f32<math::gelu_grad>,
            .gelu_tanh_backward = &scale_f32<math::gelu_tanh_grad>},
    .f64 = {.relu = &relu<double>,
            .relu_backward = &relu_backward<double>,
            .gelu = &gelu_double::gelu,
            .gelu_tanh = &gelu_double::gelu_tanh,
            .gelu_backward = &gelu_double::gelu_backward,
            .gelu_tanh_backward = &gelu_double::gelu_tanh_backward},
};

const Bf16ReluKernels relu_bf16_kernels = {.relu = &relu_bf16, .relu_backward = &relu_backward_bf16};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
