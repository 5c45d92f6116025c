// The double GELUs, forward and backward (kernels.h): scalar std::erfc and std::exp, within
// ~5e-16 relative of the exact values of the double inputs (near the zero of gelu', relative to
// the terms that cancel there; measured against mpmath). The arguments of erfc and exp are carried
// with their rounding errors, which are corrected for to first order: x / sqrt 2, x^2 and the tanh
// form's w are each ~2^-53 relative off, which would cost ~x^2 2^-53 relative in Phi(x) and
// phi(x) (~1e-13 at x = -37) and |w| 2^-53 in e^-|w| (~1e-13 at x = -20).
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/activation/kernels.h"

namespace deepkern::cpu::gelu_double {
namespace {

constexpr double kRsqrt2 = 0.70710678118654757;        // 1/sqrt 2, rounded up
constexpr double kRsqrt2Lo = -4.8336466567264567e-17;  // 1/sqrt 2 - kRsqrt2
constexpr double kTwoOverSqrtPi = 1.1283791670955126;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
// 2 sqrt(2/pi) = kW1 + kW1Lo and 2 sqrt(2/pi) 0.044715 = kW3 + kW3Lo (mpmath).
constexpr double kW1 = 1.5957691216057308, kW1Lo = -9.96930880911092e-17;
constexpr double kW3 = 0.07135481627260025, kW3Lo = -6.175149918155315e-19;

// Phi(x) = erfc(-x / sqrt 2) / 2; erfc(-(z + dz)) = erfc(-z) + dz 2/sqrt(pi) e^(-z^2) to first
// order, dz the rounding error of z = x / sqrt 2.
double normal_cdf(double x) {
  const double z = x * kRsqrt2;
  double c = std::erfc(-z);
  if (std::fabs(z) < 40.0) c += (std::fma(x, kRsqrt2, -z) + x * kRsqrt2Lo) * kTwoOverSqrtPi * std::exp(-z * z);
  return 0.5 * c;
}

// phi(x) = e^(-x^2/2) / sqrt(2 pi), with x^2 = q + dq: e^(-q/2) (1 - dq/2).
double normal_pdf(double x) {
  const double q = x * x;
  const double fix = std::fabs(x) < 40.0 ? 1.0 - 0.5 * std::fma(x, x, -q) : 1.0;
  return std::exp(-0.5 * q) * fix * kInvSqrt2Pi;
}

// As the float kernels (kernels.cpp): w = 2 sqrt(2/pi) (x + 0.044715 x^3), s = e^-|w|, here with
// w = hi + lo from error-free products and sums, and e^-|w| = e^-|hi| (1 -+ lo).
double exp_neg_abs_w(double x) {
  const double q = x * x, dq = std::fma(x, x, -q);
  const double p = kW3 * q, dp = std::fma(kW3, q, -p);
  const double c = kW1 + p, cp = c - kW1, dc = (kW1 - (c - cp)) + (p - cp);  // kW1 + p = c + dc
  const double hi = x * c, dhi = std::fma(x, c, -hi);
  const double lo = dhi + x * (dc + dp + kW1Lo + kW3 * dq + kW3Lo * q);
  const double e = std::exp(-std::fabs(hi));
  return e != 0.0 ? e * (1.0 - (hi < 0.0 ? -lo : lo)) : 0.0;  // (lo may be NaN once x^2 overflows)
}

double gelu_tanh_of(double x) {
  const double s = exp_neg_abs_w(x);
  return x < 0.0 ? x * s / (1.0 + s) : x / (1.0 + s);  // -inf: -inf * 0 = NaN
}

double gelu_tanh_grad(double x) {
  if (!std::isfinite(x)) return std::numeric_limits<double>::quiet_NaN();  // +-inf * 0
  const double s = exp_neg_abs_w(x);
  if (s == 0.0) return x < 0.0 ? 0.0 : 1.0;  // (m below may have overflowed)
  const double m = x * (kW1 + 3.0 * kW3 * (x * x));
  const double one_s = 1.0 + s;
  return (x < 0.0 ? s * (one_s + m) : one_s + s * m) / (one_s * one_s);
}

}  // namespace

void gelu(const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * normal_cdf(x[i]);
}

void gelu_tanh(const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_tanh_of(x[i]);
}

void gelu_backward(const double* grad, const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = grad[i] * (normal_cdf(x[i]) + x[i] * normal_pdf(x[i]));
}

void gelu_tanh_backward(const double* grad, const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = grad[i] * gelu_tanh_grad(x[i]);
}

}  // namespace deepkern::cpu::gelu_double
