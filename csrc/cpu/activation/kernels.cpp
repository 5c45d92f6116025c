// The activation kernels of one ISA: this source is compiled once per ISA (DEEPKERN_ISA_NS =
// avx512, avx2, generic) and the compiler vectorizes its loops for that ISA's registers. The
// contract, special values included, is in activation.h; the double GELUs (scalar, the same for
// every ISA) are in gelu_double.cpp.
//
// The float GELUs call no library function (a call keeps the loop scalar). Both reduce to e^-v,
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

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/vmath.h"
#include "cpu/activation/kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

using vmath::kScaleDown;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Polynomials and their ratios, coefficients from degree 0 up (Horner).
template <int kN>
[[gnu::always_inline]] inline float polynomial(float a, const float (&c)[kN]) {
  float v = c[kN - 1];
  for (int i = kN - 2; i >= 0; --i) v = v * a + c[i];
  return v;
}
template <int kP, int kQ>
[[gnu::always_inline]] inline float rational(float a, const float (&p)[kP], const float (&q)[kQ]) {
  return polynomial(a, p) / polynomial(a, q);
}

// ---- relu ------------------------------------------------------------------------------------

template <class T>
void relu(const T* __restrict x, T* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] < T(0) ? T(0) : x[i];  // NaN and -0 pass
}

template <class T>
void relu_backward(const T* __restrict grad, const T* __restrict x, T* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] <= T(0) ? T(0) : grad[i];  // NaN x passes grad
}

// ---- exact GELU ------------------------------------------------------------------------------
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
constexpr float kTailP[] = {0.5f, 4.392894804e-01f, 1.839733869e-01f, 4.088249058e-02f, 4.153406713e-03f};
constexpr float kTailQ[] = {
    1.0f, 1.676463962e+00f, 1.205566406e+00f, 4.714198411e-01f, 1.024833173e-01f, 1.041093562e-02f};
constexpr float kSlopeP[] = {6.650779843e-01f, 7.541841269e-01f, 3.784891665e-01f, 9.587685764e-02f, 1.047033910e-02f};
constexpr float kSlopeQ[] = {1.0f, 1.399591088e+00f, 7.941515446e-01f, 2.206038237e-01f, 2.624510229e-02f};

// |x| limited to kGeluLimit; NaN -> the limit (a number for the exponential's bit tricks; the
// callers take NaN results from x itself).
[[gnu::always_inline]] inline float gelu_abs(float x) {
  const float a = std::fabs(x);
  return a < kGeluLimit ? a : kGeluLimit;
}

[[gnu::always_inline]] inline float gelu_f32(float x) {
  const float a = gelu_abs(x);
  const vmath::ScaledExp e = vmath::exp_neg_half_square(a);
  const float t = ((a * rational(a, kTailP, kTailQ)) * e.m) * e.s;  // a Phi(-a) 2^64
  // 2^-64 last: a subnormal result is rounded once.
  const float y = (x < 0.0f ? 0.0f : x) - t * kScaleDown;
  // Below -15: -0, and NaN for -inf (-inf * Phi(-inf) = -inf * 0, as PyTorch). NaN stays NaN.
  return x < -kGeluLimit ? x * 0.0f : y;
}

[[gnu::always_inline]] inline float gelu_grad_f32(float x) {
  const float a = gelu_abs(x);
  const vmath::ScaledExp e = vmath::exp_neg_half_square(a);
  const float h = ((a - kA0Hi) - kA0Lo) * -rational(a, kSlopeP, kSlopeQ);  // H(a), R < 0
  const float eh = ((h * e.m) * e.s) * kScaleDown;
  const float d = x < -kGeluLimit ? 0.0f : (x < 0.0f ? eh : 1.0f - eh);
  // Phi(x) + x phi(x) at +-inf is NaN (+-inf * 0), as PyTorch's; NaN stays NaN.
  return std::fabs(x) < kInf ? d : kNaN;
}

// ---- tanh GELU -------------------------------------------------------------------------------
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
constexpr float kRootP[] = {2.460656881e+00f, -9.991146624e-02f, 4.004395306e-01f,
                            7.595323771e-02f, 3.083409928e-02f,  1.144492254e-02f};

// e^-|w| with |w| limited to kTanhLimit (NaN -> the limit; the callers take NaN results from x).
[[gnu::always_inline]] inline vmath::ScaledExp tanh_exp(double w) {
  const double wa = std::fabs(w);
  return vmath::exp_scaled(wa < kTanhLimit ? -wa : -kTanhLimit);
}

[[gnu::always_inline]] inline float gelu_tanh_f32(float x) {
  const double xd = x;
  const double w = xd * (kW1 + kW3 * (xd * xd));
  const vmath::ScaledExp e = tanh_exp(w);
  const float q = x / (1.0f + (e.m * e.s) * kScaleDown);  // x / (1 + s)
  // x < 0: s q with 2^-64 last (a subnormal result rounds once); below the limit -0, or NaN for
  // -inf (-inf * 0, as PyTorch).
  return x < 0.0f ? (w <= -kTanhLimit ? x * 0.0f : ((q * e.m) * e.s) * kScaleDown) : q;
}

[[gnu::always_inline]] inline float gelu_tanh_grad_f32(float x) {
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
  return std::fabs(x) < kInf ? d : kNaN;  // +-inf: NaN (+-inf * 0), as PyTorch
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
            .gelu = &map_f32<gelu_f32>,
            .gelu_tanh = &map_f32<gelu_tanh_f32>,
            .gelu_backward = &scale_f32<gelu_grad_f32>,
            .gelu_tanh_backward = &scale_f32<gelu_tanh_grad_f32>},
    .f64 = {.relu = &relu<double>,
            .relu_backward = &relu_backward<double>,
            .gelu = &gelu_double::gelu,
            .gelu_tanh = &gelu_double::gelu_tanh,
            .gelu_backward = &gelu_double::gelu_backward,
            .gelu_tanh_backward = &gelu_double::gelu_tanh_backward},
};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
