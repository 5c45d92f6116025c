// The activations of one element, shared by the CPU loops (kernels.cpp, compiled once per ISA, and
// gelu_double.cpp) and the CUDA kernels (cuda/activation/activation.cu), so both devices compute
// every element with the same operations. The contract, special values and accuracy are in
// activation.h; the float GELUs' method and measured errors are described in kernels.cpp, the
// double GELUs' in gelu_double.cpp.
//
// Every function takes values (no pointers) and has an overload per dtype: relu, relu_backward
// (grad, x), gelu, gelu_grad, gelu_tanh, gelu_tanh_grad (d gelu / dx; the callers multiply by grad).
// Everything sits in an unnamed namespace, as in core/vmath.h: each ISA's translation unit keeps
// its own copy. Coefficient tables are __device__ under nvcc (a device function cannot index a
// host constexpr array) and constexpr on the host.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/vmath.h"

#if defined(__CUDACC__)
#define DK_ACTIVATION_FN __host__ __device__ __forceinline__
#define DK_ACTIVATION_TABLE __device__ constexpr
#else
#define DK_ACTIVATION_FN [[gnu::always_inline]] inline
#define DK_ACTIVATION_TABLE constexpr
#endif

namespace deepkern::activation_math {
namespace {

using vmath::kScaleDown;

// (numeric_limits' functions are host-only under nvcc.)
constexpr float kInf = __builtin_huge_valf();
constexpr float kNaN = __builtin_nanf("");
constexpr double kNaNd = __builtin_nan("");

// ---- relu ------------------------------------------------------------------------------------

template <class T>
DK_ACTIVATION_FN T relu(T x) {
  return x < T(0) ? T(0) : x;  // NaN and -0 pass
}

template <class T>
DK_ACTIVATION_FN T relu_backward(T grad, T x) {
  return x <= T(0) ? T(0) : grad;  // NaN x passes grad
}

// Polynomials and their ratios, coefficients from degree 0 up (Horner).
template <int kN>
DK_ACTIVATION_FN float polynomial(float a, const float (&c)[kN]) {
  float v = c[kN - 1];
  for (int i = kN - 2; i >= 0; --i) v = v * a + c[i];
  return v;
}
template <int kP, int kQ>
DK_ACTIVATION_FN float rational(float a, const float (&p)[kP], const float (&q)[kQ]) {
  return polynomial(a, p) / polynomial(a, q);
}

// ---- exact GELU, float -----------------------------------------------------------------------
// With a = |x| and E = e^(-a^2/2) (vmath::exp_neg_half_square):
//   Phi(-a) = E G(a),  G(a) = Phi(-a) e^(a^2/2) = erfcx(a / sqrt 2) / 2
//   gelu(x) = relu(x) - a E G(a)                                (x Phi(x) for either sign)
//   gelu'(x) = E H(a) (x < 0),  1 - E H(a) (x >= 0),  H(a) = G(a) - a / sqrt(2 pi)
// H is zero at a0 = 0.75179152469356446 (gelu'(-a0) = 0), so H = (a - a0) R(a), a - a0 taken with
// a0 as two floats: gelu' keeps its relative accuracy through its zero. G (degree 4/5) and R (4/4)
// are rational minimax fits on [0, 15] (float64 fits against mpmath, numerators refitted to the
// float-rounded denominators): relative error 1.9e-8 (0.3 ulp) each. Beyond |x| = 15 the results
// are x and 1 (x > 0), or round to -0 and 0 (x < 0).
constexpr float kGeluLimit = 15.0f;
constexpr float kA0Hi = 0.75179154f, kA0Lo = -1.211445e-08f;
DK_ACTIVATION_TABLE float kTailP[] = {0.5f, 4.392894804e-01f, 1.839733869e-01f, 4.088249058e-02f, 4.153406713e-03f};
DK_ACTIVATION_TABLE float kTailQ[] = {
    1.0f, 1.676463962e+00f, 1.205566406e+00f, 4.714198411e-01f, 1.024833173e-01f, 1.041093562e-02f};
DK_ACTIVATION_TABLE float kSlopeP[] = {6.650779843e-01f, 7.541841269e-01f, 3.784891665e-01f, 9.587685764e-02f,
                                       1.047033910e-02f};
DK_ACTIVATION_TABLE float kSlopeQ[] = {1.0f, 1.399591088e+00f, 7.941515446e-01f, 2.206038237e-01f, 2.624510229e-02f};

// |x| limited to kGeluLimit; NaN -> the limit (a number for the exponential's bit tricks; the
// callers take NaN results from x itself).
DK_ACTIVATION_FN float gelu_abs(float x) {
  const float a = std::fabs(x);
  return a < kGeluLimit ? a : kGeluLimit;
}

DK_ACTIVATION_FN float gelu(float x) {
  const float a = gelu_abs(x);
  const vmath::ScaledExp e = vmath::exp_neg_half_square(a);
  const float t = ((a * rational(a, kTailP, kTailQ)) * e.m) * e.s;  // a Phi(-a) 2^64
  // 2^-64 last: a subnormal result is rounded once.
  const float y = (x < 0.0f ? 0.0f : x) - t * kScaleDown;
  // Below -15: -0, and NaN for -inf (-inf * Phi(-inf) = -inf * 0, as PyTorch). NaN stays NaN.
  return x < -kGeluLimit ? x * 0.0f : y;
}

DK_ACTIVATION_FN float gelu_grad(float x) {
  const float a = gelu_abs(x);
  const vmath::ScaledExp e = vmath::exp_neg_half_square(a);
  const float h = ((a - kA0Hi) - kA0Lo) * -rational(a, kSlopeP, kSlopeQ);  // H(a), R < 0
  const float eh = ((h * e.m) * e.s) * kScaleDown;
  const float d = x < -kGeluLimit ? 0.0f : (x < 0.0f ? eh : 1.0f - eh);
  // Phi(x) + x phi(x) at +-inf is NaN (+-inf * 0), as PyTorch's; NaN stays NaN.
  return std::fabs(x) < kInf ? d : kNaN;
}

// ---- tanh GELU, float ------------------------------------------------------------------------
// With w = 2 sqrt(2/pi) (x + 0.044715 x^3) (twice PyTorch's tanh argument), s = e^-|w| and
// m = x dw/dx = 2 sqrt(2/pi) x (1 + 3 0.044715 x^2):
//   gelu(x) = x / (1 + e^-w) = x / (1 + s) (x >= 0),  s x / (1 + s) (x < 0)
//   gelu'(x) = (1 + s + s m) / (1 + s)^2 (x >= 0),     s (1 + s + m) / (1 + s)^2 (x < 0)
// w is computed in double: rounded to float it would be ~2^-24 |w| off, up to ~100 ulp of s. For
// x < 0, 1 + m (in double) cancels against s, fully at x0 = -0.75246142207101626 (gelu'(x0) = 0);
// within kRootWindow of x0, 1 + s + m = (x - x0) B(x - x0), B a degree-5 minimax fit (relative
// error 4.7e-8, the float rounding of its constant term). Beyond |w| = 110 the results are x and
// 1 (x > 0), or round to -0 and 0 (x < 0).
constexpr double kW1 = 1.5957691216057308;             // 2 sqrt(2/pi)
constexpr double kW3 = 1.5957691216057308 * 0.044715;  // 2 sqrt(2/pi) 0.044715
constexpr float kM1 = float(kW1), kM3 = float(3.0 * kW3);
constexpr double kTanhLimit = 110.0;
constexpr float kX0Hi = -0.75246143f, kX0Lo = 1.1339628e-08f;
constexpr float kRootWindow = 0.25f;
DK_ACTIVATION_TABLE float kRootP[] = {2.460656881e+00f, -9.991146624e-02f, 4.004395306e-01f,
                                      7.595323771e-02f, 3.083409928e-02f,  1.144492254e-02f};

// e^-|w| with |w| limited to kTanhLimit (NaN -> the limit; the callers take NaN results from x).
DK_ACTIVATION_FN vmath::ScaledExp tanh_exp(double w) {
  const double wa = std::fabs(w);
  return vmath::exp_scaled(wa < kTanhLimit ? -wa : -kTanhLimit);
}

DK_ACTIVATION_FN float gelu_tanh(float x) {
  const double xd = x;
  const double w = xd * (kW1 + kW3 * (xd * xd));
  const vmath::ScaledExp e = tanh_exp(w);
  const float q = x / (1.0f + (e.m * e.s) * kScaleDown);  // x / (1 + s)
  // x < 0: s q with 2^-64 last (a subnormal result rounds once); below the limit -0, or NaN for
  // -inf (-inf * 0, as PyTorch).
  return x < 0.0f ? (w <= -kTanhLimit ? x * 0.0f : ((q * e.m) * e.s) * kScaleDown) : q;
}

DK_ACTIVATION_FN float gelu_tanh_grad(float x) {
  const double xd = x, x2 = xd * xd;
  const double w = xd * (kW1 + kW3 * x2);
  const float one_m = static_cast<float>(1.0 + xd * (kW1 + 3.0 * kW3 * x2));
  const vmath::ScaledExp e = tanh_exp(w);
  const float s = (e.m * e.s) * kScaleDown;
  const float one_s = 1.0f + s;
  const float t = (x - kX0Hi) - kX0Lo;
  const float b = std::fabs(t) < kRootWindow ? t * polynomial(t, kRootP) : one_m + s;  // 1 + s + m
  const float m = x * (kM1 + kM3 * (x * x));
  const float q = (x < 0.0f ? e.m * b : one_s + s * m) / (one_s * one_s);
  const float d = std::fabs(w) >= kTanhLimit ? (x < 0.0f ? 0.0f : 1.0f) : (x < 0.0f ? (q * e.s) * kScaleDown : q);
  // +-inf: NaN (+-inf * 0), as PyTorch
  return std::fabs(x) < kInf ? d : kNaN;
}

// ---- double ----------------------------------------------------------------------------------
// erfc and exp of the library, within ~5e-16 relative of the exact values of the double inputs
// (near the zero of gelu', relative to the terms that cancel there; measured against mpmath on the
// CPU). The arguments of erfc and exp are carried with their rounding errors, which are corrected
// for to first order: x / sqrt 2, x^2 and the tanh form's w are each ~2^-53 relative off, which
// would cost ~x^2 2^-53 relative in Phi(x) and phi(x) (~1e-13 at x = -37) and |w| 2^-53 in e^-|w|
// (~1e-13 at x = -20).
constexpr double kRsqrt2 = 0.70710678118654757;        // 1/sqrt 2, rounded up
constexpr double kRsqrt2Lo = -4.8336466567264567e-17;  // 1/sqrt 2 - kRsqrt2
constexpr double kTwoOverSqrtPi = 1.1283791670955126;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
// 2 sqrt(2/pi) = kW1 + kW1Lo and 2 sqrt(2/pi) 0.044715 = kW3d + kW3Lo (mpmath).
constexpr double kW1Lo = -9.96930880911092e-17;
constexpr double kW3d = 0.07135481627260025, kW3Lo = -6.175149918155315e-19;

// Phi(x) = erfc(-x / sqrt 2) / 2; erfc(-(z + dz)) = erfc(-z) + dz 2/sqrt(pi) e^(-z^2) to first
// order, dz the rounding error of z = x / sqrt 2.
DK_ACTIVATION_FN double normal_cdf(double x) {
  const double z = x * kRsqrt2;
  double c = std::erfc(-z);
  if (std::fabs(z) < 40.0) c += (std::fma(x, kRsqrt2, -z) + x * kRsqrt2Lo) * kTwoOverSqrtPi * std::exp(-z * z);
  return 0.5 * c;
}

// phi(x) = e^(-x^2/2) / sqrt(2 pi), with x^2 = q + dq: e^(-q/2) (1 - dq/2).
DK_ACTIVATION_FN double normal_pdf(double x) {
  const double q = x * x;
  const double fix = std::fabs(x) < 40.0 ? 1.0 - 0.5 * std::fma(x, x, -q) : 1.0;
  return std::exp(-0.5 * q) * fix * kInvSqrt2Pi;
}

// As the float forms: w = 2 sqrt(2/pi) (x + 0.044715 x^3), s = e^-|w|, here with w = hi + lo from
// error-free products and sums, and e^-|w| = e^-|hi| (1 -+ lo).
DK_ACTIVATION_FN double exp_neg_abs_w(double x) {
  const double q = x * x, dq = std::fma(x, x, -q);
  const double p = kW3d * q, dp = std::fma(kW3d, q, -p);
  const double c = kW1 + p, cp = c - kW1, dc = (kW1 - (c - cp)) + (p - cp);  // kW1 + p = c + dc
  const double hi = x * c, dhi = std::fma(x, c, -hi);
  const double lo = dhi + x * (dc + dp + kW1Lo + kW3d * dq + kW3Lo * q);
  const double e = std::exp(-std::fabs(hi));
  return e != 0.0 ? e * (1.0 - (hi < 0.0 ? -lo : lo)) : 0.0;  // (lo may be NaN once x^2 overflows)
}

DK_ACTIVATION_FN double gelu(double x) { return x * normal_cdf(x); }

DK_ACTIVATION_FN double gelu_grad(double x) { return normal_cdf(x) + x * normal_pdf(x); }

DK_ACTIVATION_FN double gelu_tanh(double x) {
  const double s = exp_neg_abs_w(x);
  return x < 0.0 ? x * s / (1.0 + s) : x / (1.0 + s);  // -inf: -inf * 0 = NaN
}

DK_ACTIVATION_FN double gelu_tanh_grad(double x) {
  if (!std::isfinite(x)) return kNaNd;  // +-inf * 0
  const double s = exp_neg_abs_w(x);
  if (s == 0.0) return x < 0.0 ? 0.0 : 1.0;  // (m below may have overflowed)
  const double m = x * (kW1 + 3.0 * kW3d * (x * x));
  const double one_s = 1.0 + s;
  return (x < 0.0 ? s * (one_s + m) : one_s + s * m) / (one_s * one_s);
}

}  // namespace
}  // namespace deepkern::activation_math
