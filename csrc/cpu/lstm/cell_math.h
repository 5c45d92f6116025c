// The LSTM's per-element activations, shared by the CPU cell kernels (cell_kernels.cpp, compiled
// once per ISA) and the CUDA cell kernels (cuda/lstm/lstm_kernels.cu), so both devices compute
// every gate with the same operations. float: e^x with a polynomial the compiler vectorizes
// (Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, degree-6 polynomial, 2^n through the exponent bits;
// about 1 ulp), clamped to float's range; double (the gradient-check path) calls the library exp.
// Built on core/vmath.h's helpers: host and device functions under nvcc, an unnamed namespace so
// each ISA's translation unit keeps its own copy.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/vmath.h"

namespace deepkern::lstm_math {
namespace {

DK_VMATH_FN float exp_of(float x) {
  x = x < -87.3f ? -87.3f : x;  // NaN passes both clamps
  x = x > 88.7f ? 88.7f : x;
  const float n = std::floor(x * vmath::kLog2e + 0.5f);
  const float r = x - n * vmath::kLn2Hi - n * vmath::kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  return e * vmath::bits_as<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}
DK_VMATH_FN double exp_of(double x) { return std::exp(x); }

template <class T>
DK_VMATH_FN T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}
template <class T>
DK_VMATH_FN T tanh_of(T x) {  // 2 sigmoid(2x) - 1
  return T(2) / (T(1) + exp_of(T(-2) * x)) - T(1);
}

}  // namespace
}  // namespace deepkern::lstm_math
