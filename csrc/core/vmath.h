// Elementary functions for float written so the compiler vectorizes them (a call to std::exp,
// std::erf or std::tanh keeps a loop scalar): only +, *, comparisons, selects and bit casts.
//
// e^v for float is split as e^v = 2^n e^r, n = round(v / ln 2), |r| <= ln 2 / 2 (the idea of
// Cephes expf). The parts are separate functions so a caller can keep the extra precision it has:
// an argument known better than to float precision (a double, or -x^2/2 split exactly), and 2^n
// applied after the caller's own factors (a subnormal result rounded once).
//
// Everything sits in an unnamed namespace: a source compiled once per ISA keeps its own copy, so
// the linker never hands an AVX-512 build of a function to a caller on another CPU. The functions
// are also device functions under nvcc (cuda/activation/ calls them through
// cpu/activation/activation_math.h), hence C++17 and __builtin_bit_cast rather than std::bit_cast.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define DK_VMATH_FN __host__ __device__ __forceinline__
#else
#define DK_VMATH_FN [[gnu::always_inline]] inline
#endif

namespace deepkern::vmath {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
// ln 2 = kLn2Hi + kLn2Lo; kLn2Hi has 9 significant bits, so n * kLn2Hi is exact for |n| < 2^15.
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;

// The bits of `from` as a To (std::bit_cast, which C++17 lacks).
template <class To, class From>
DK_VMATH_FN To bits_as(From from) {
  return __builtin_bit_cast(To, from);
}

// round(v) for |v| < 2^22 (adding 1.5 * 2^23 leaves the integer in the low mantissa bits;
// rounds to nearest, ties to even). rounded_bits(v) is that sum's bit pattern, which
// pow2_from_rounded turns into a power of two without a float-to-int conversion.
constexpr float kRoundShift = 12582912.0f;  // 1.5 * 2^23
DK_VMATH_FN float round_near(float v) { return (v + kRoundShift) - kRoundShift; }
DK_VMATH_FN uint32_t rounded_bits(float v) { return bits_as<uint32_t>(v + kRoundShift); }

// 2^(n + extra) for the integer n held in rounded_bits(n); n + extra must lie in [-126, 127].
DK_VMATH_FN float pow2_from_rounded(uint32_t bits, int32_t extra) {
  constexpr uint32_t kShiftBits = 0x4B400000u;  // bit pattern of kRoundShift
  return bits_as<float>((bits - kShiftBits + uint32_t(127 + extra)) << 23);
}

// 2^n for an integer n in [-126, 127].
DK_VMATH_FN float pow2i(int32_t n) { return bits_as<float>(uint32_t(n + 127) << 23); }

// e^r for |r| <= ln 2 / 2 + 1e-4: 1 + r + r^2 P(r), P of degree 4 fitted (minimax, relative) to
// (e^r - 1 - r) / r^2. Relative error of the polynomial with these float coefficients 3.7e-9
// (0.06 ulp), measured against mpmath on 3000 Chebyshev points; rounding in float adds < 1 ulp.
DK_VMATH_FN float exp_reduced(float r) {
  float p = 1.3814571e-3f;
  p = p * r + 8.368731e-3f;
  p = p * r + 4.166839e-2f;
  p = p * r + 1.6666521e-1f;
  p = p * r + 4.9999994e-1f;
  return (p * r) * r + r + 1.0f;
}

// e^v as m * s * 2^-64 (m = e^r, s = 2^(n + 64)) for v in [-130, 43]: m * s is a normal float,
// and a caller that multiplies it by its own factors before the final 2^-64 rounds a subnormal
// result once. NaN or out-of-range v gives garbage: callers clamp v and select their result
// for NaN/inf inputs.
struct ScaledExp {
  float m;  // e^r, in [0.7, 1.42]
  float s;  // 2^(n + 64)
};
constexpr float kScaleDown = 0x1p-64f;

// e^v for a double v in [-130, 43], to float precision: the reduction in double (exact to
// ~2^-50 |v|), the polynomial in float.
DK_VMATH_FN ScaledExp exp_scaled(double v) {
  constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (v * 1.4426950408889634 + kShift) - kShift;
  const float r = static_cast<float>(v - n * 0.6931471805599453);
  return {exp_reduced(r), pow2i(static_cast<int32_t>(n) + 64)};
}

// e^(-x^2 / 2) for |x| <= 16, to float precision although x^2 / 2 rounded to float would be
// ~2^-24 x^2 / 2 off (up to ~100 ulp of the result at |x| = 14): x = xh + xl with xh the top 12
// bits, so x^2 = xh^2 + xl (x + xh) with xh^2 exact; n is chosen from the rounded sum, and
// -xh^2 / 2 - n ln2_hi is exact (a fused multiply-add, or exact products), so r keeps the
// argument's full precision.
DK_VMATH_FN ScaledExp exp_neg_half_square(float x) {
  const float xh = bits_as<float>(bits_as<uint32_t>(x) & 0xFFFFF000u);
  const float hi = xh * xh;
  const float lo = (x - xh) * (x + xh);
  const float t = (hi + lo) * (-0.5f * kLog2e);
  const float n = round_near(t);
  float r = hi * -0.5f - n * kLn2Hi;
  r = lo * -0.5f + r;
  r = r - n * kLn2Lo;
  return {exp_reduced(r), pow2_from_rounded(rounded_bits(t), 64)};
}

}  // namespace
}  // namespace deepkern::vmath
