// The recurrent cells' per-element math (activations; the GRU's and the Elman RNN's whole unit
// update and its gradient), shared by the CPU cell kernels (cell_kernels.cpp, compiled once per
// ISA) and the CUDA cell kernels (cuda/lstm/lstm_kernels.cu), so both devices compute every gate
// with the same operations. float: e^x with a polynomial the compiler vectorizes
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

// exp_of's polynomial: e^r = 1 + r + r^2 p(r) on |r| <= ln2 / 2.
DK_VMATH_FN float exp_polynomial(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p;
}
DK_VMATH_FN float exp_of(float x) {
  x = x < -87.3f ? -87.3f : x;  // NaN passes both clamps
  x = x > 88.7f ? 88.7f : x;
  const float n = std::floor(x * vmath::kLog2e + 0.5f);
  const float r = x - n * vmath::kLn2Hi - n * vmath::kLn2Lo;
  const float e = exp_polynomial(r) * r * r + r + 1.0f;
  return e * vmath::bits_as<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}
// e^x - 1 for |x| <= 18 (tanh_of's range) by the same reduction, as 2^n (e^r - 1) + (2^n - 1): where
// the result is small n is 0 and e^r - 1 = r (1 + r p(r)) keeps its relative precision (no 1 added
// and taken away).
DK_VMATH_FN float expm1_of(float x) {
  const float n = std::floor(x * vmath::kLog2e + 0.5f);
  const float r = x - n * vmath::kLn2Hi - n * vmath::kLn2Lo;
  const float scale = vmath::bits_as<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return scale * (r * (1.0f + r * exp_polynomial(r))) + (scale - 1.0f);
}
DK_VMATH_FN double exp_of(double x) { return std::exp(x); }

template <class T>
DK_VMATH_FN T sigmoid(T x) {
  return T(1) / (T(1) + exp_of(-x));
}
// tanh(x) = m / (m + 2), m = e^(2x) - 1 (expm1_of): within 2.5 ulp over float's range, and relatively
// precise near 0, where 2 sigmoid(2x) - 1 had cancelled (tanh(1e-6) came out 7% high, tanh(1e-8) as 0).
// |x| is clamped at 9 (tanh(9) rounds to 1; NaN passes); -0 stays -0. double (the gradient-check
// path) calls the library tanh.
DK_VMATH_FN float tanh_of(float x) {
  float c = x < -9.0f ? -9.0f : x;
  c = c > 9.0f ? 9.0f : c;
  const float m = expm1_of(2.0f * c);
  return x == 0.0f ? x : m / (m + 2.0f);
}
DK_VMATH_FN double tanh_of(double x) { return std::tanh(x); }

// The GRU's (PyTorch's) candidate n = tanh(ih_n + r * hh_n) from the gate sums of the input (ih,
// b_ih included) and of the recurrence (hh = W_hh h_prev + b_hh), r = sigmoid(ih_r + hh_r), and
// its output h = (1 - z) n + z h_prev, z = sigmoid(ih_z + hh_z). (Two functions rather than one
// returning r, z, n and h: the CPU compiler contracts the multiply-adds of the whole unit the same
// way as when they were written out in the loop.)
template <class T>
DK_VMATH_FN T gru_candidate(T ih_n, T r, T hh_n) {
  return tanh_of(ih_n + r * hh_n);
}
template <class T>
DK_VMATH_FN T gru_output(T n, T z, T h_prev) {
  return n + z * (h_prev - n);
}

// The gradients of one GRU unit from its activations r, z, n, hh_n and h_prev, given d, the
// gradient of its h: those of the gate sums r, z (both sums), of n's recurrent sum hh_n (r times
// that of n's) and of its input sum ih_n, and the part of the gradient of h_prev that does not go
// through W_hh.
template <class T>
struct GruGrad {
  T r, z, hh_n, ih_n, h_prev;
};
template <class T>
DK_VMATH_FN GruGrad<T> gru_unit_grad(T r, T z, T n, T hh_n, T h_prev, T d) {
  const T dn = d * (T(1) - z) * (T(1) - n * n);
  return {dn * hh_n * r * (T(1) - r), d * (h_prev - n) * z * (T(1) - z), dn * r, dn, d * z};
}

// The Elman RNN's h = tanh(v) or max(v, 0), and the gradient of v from h and d, that of h. relu keeps
// NaN (and -0) and passes the gradient where h is NaN, as PyTorch's relu and its threshold backward.
template <bool kRelu, class T>
DK_VMATH_FN T rnn_activation(T v) {
  if constexpr (kRelu)
    return v < T(0) ? T(0) : v;
  else
    return tanh_of(v);
}
template <bool kRelu, class T>
DK_VMATH_FN T rnn_activation_grad(T h, T d) {
  if constexpr (kRelu)
    return h <= T(0) ? T(0) : d;
  else
    return d * (T(1) - h * h);
}

}  // namespace
}  // namespace deepkern::lstm_math
