// Element conversions between the device dtypes with NumPy's (and ml_dtypes') results, for host and
// device code: every value is rounded once, to nearest even, from its exact value (float64 -> float16
// too, and int64 -> bfloat16: no pass through float32); NaN stays NaN (quiet, sign kept); out of range
// floats become infinities; floats become integers by truncation toward zero (for values in the
// integer's range: beyond it NumPy's result is the platform's and may differ), integers wrap to
// narrower integers, and anything becomes bool as `!= 0` (NaN is true).
//
// float16 and bfloat16 are converted in integer arithmetic (no half-precision instructions), so the
// same code runs everywhere.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DK_CAST_FN __host__ __device__ __forceinline__
#else
#define DK_CAST_FN inline
#endif

namespace deepkern::cuda::cast {

// The storage types of the dtypes that C++ has no arithmetic type for.
struct Half {
  std::uint16_t bits;
};
struct BFloat16 {
  std::uint16_t bits;
};
struct Bool {
  std::uint8_t value;  // 0 or 1
};

template <class To, class From>
DK_CAST_FN To bit_cast(From from) {
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
}

// Index of the highest set bit of x > 0.
DK_CAST_FN int highest_bit(std::uint64_t x) {
  int bit = 0;
  for (int step = 32; step > 0; step /= 2)
    if (x >> step) x >>= step, bit += step;
  return bit;
}

// The bits of the binary float with kExp exponent and kMant mantissa bits nearest to
// (negative ? -1 : 1) * magnitude * 2^exponent (ties to even; infinity past the largest finite value).
template <int kExp, int kMant>
DK_CAST_FN std::uint16_t encode(bool negative, std::uint64_t magnitude, int exponent) {
  const std::uint16_t sign = negative ? std::uint16_t(1u << (kExp + kMant)) : std::uint16_t(0);
  if (magnitude == 0) return sign;
  const int bias = (1 << (kExp - 1)) - 1, min_exp = 1 - bias;
  const int msb = highest_bit(magnitude);
  const int value_exp = msb + exponent;                                     // value = 1.f * 2^value_exp
  const int lsb_exp = (value_exp > min_exp ? value_exp : min_exp) - kMant;  // weight of the last kept bit
  const int shift = lsb_exp - exponent;                                     // bits of magnitude dropped
  std::uint64_t kept;
  if (shift <= 0) {
    kept = magnitude << -shift;  // exact: fewer significant bits than the format holds
  } else if (shift > msb + 1) {
    return sign;  // below half the smallest subnormal
  } else {
    kept = shift == 64 ? 0 : magnitude >> shift;
    const std::uint64_t rest = shift == 64 ? magnitude : magnitude & ((std::uint64_t(1) << shift) - 1);
    const std::uint64_t half = std::uint64_t(1) << (shift - 1);
    if (rest > half || (rest == half && (kept & 1))) ++kept;
  }
  // Normal: kept holds the implicit bit at kMant (a carry out of the mantissa moves into the exponent);
  // subnormal: kept is the mantissa (rounding up to 1 << kMant gives the smallest normal).
  const std::int64_t biased = value_exp >= min_exp ? std::int64_t(value_exp) + bias : 0;
  const std::int64_t bits = biased >= 1 ? ((biased - 1) << kMant) + std::int64_t(kept) : std::int64_t(kept);
  const std::int64_t infinity = std::int64_t((1 << kExp) - 1) << kMant;
  return std::uint16_t(sign | (bits >= infinity ? infinity : bits));
}

// `x` rounded to the kExp/kMant format; a NaN keeps its sign and top payload bits, made quiet.
template <int kExp, int kMant>
DK_CAST_FN std::uint16_t encode_double(double x) {
  const std::uint64_t bits = bit_cast<std::uint64_t>(x);
  const bool negative = bits >> 63;
  const int biased = int(bits >> 52) & 0x7ff;
  const std::uint64_t mantissa = bits & ((std::uint64_t(1) << 52) - 1);
  if (biased == 0x7ff) {
    const std::uint16_t special = std::uint16_t(((1u << kExp) - 1) << kMant);
    const std::uint16_t nan = mantissa ? std::uint16_t((mantissa >> (52 - kMant)) | (1u << (kMant - 1))) : 0;
    return std::uint16_t((negative ? 1u << (kExp + kMant) : 0u) | special | nan);
  }
  if (biased == 0) return encode<kExp, kMant>(negative, mantissa, -1074);
  return encode<kExp, kMant>(negative, mantissa | (std::uint64_t(1) << 52), biased - 1075);
}

template <int kExp, int kMant>
DK_CAST_FN std::uint16_t encode_int(std::int64_t x) {
  const std::uint64_t magnitude = x < 0 ? std::uint64_t(0) - std::uint64_t(x) : std::uint64_t(x);
  return encode<kExp, kMant>(x < 0, magnitude, 0);
}

// float16 -> float64, exact (NaN payloads kept).
DK_CAST_FN double half_to_double(Half h) {
  const std::uint64_t sign = std::uint64_t(h.bits >> 15) << 63;
  const int exp = (h.bits >> 10) & 0x1f;
  const std::uint64_t mantissa = h.bits & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mantissa * 2^-24
    const double magnitude = double(mantissa) * (1.0 / 16777216.0);
    return sign ? -magnitude : magnitude;
  }
  const std::uint64_t biased = exp == 0x1f ? 0x7ff : std::uint64_t(exp - 15 + 1023);
  return bit_cast<double>(sign | (biased << 52) | (mantissa << 42));
}

DK_CAST_FN double bfloat16_to_double(BFloat16 b) { return double(bit_cast<float>(std::uint32_t(b.bits) << 16)); }

// ---- every source as its exact value: a double, or (int64) the integer itself ---------------------
DK_CAST_FN double exact(float x) { return x; }
DK_CAST_FN double exact(double x) { return x; }
DK_CAST_FN double exact(Half x) { return half_to_double(x); }
DK_CAST_FN double exact(BFloat16 x) { return bfloat16_to_double(x); }
DK_CAST_FN double exact(std::int32_t x) { return x; }
DK_CAST_FN double exact(std::uint8_t x) { return x; }
DK_CAST_FN double exact(Bool x) { return x.value; }
DK_CAST_FN std::int64_t exact(std::int64_t x) { return x; }

// ---- the exact value converted to each destination (V: double or int64_t) -------------------------
template <class To>
struct Convert;
template <>
struct Convert<float> {
  template <class V>
  DK_CAST_FN static float from(V v) {
    return static_cast<float>(v);
  }  // one rounding, to nearest even
};
template <>
struct Convert<double> {
  template <class V>
  DK_CAST_FN static double from(V v) {
    return static_cast<double>(v);
  }
};
template <>
struct Convert<Half> {
  DK_CAST_FN static Half from(double v) { return {encode_double<5, 10>(v)}; }
  DK_CAST_FN static Half from(std::int64_t v) { return {encode_int<5, 10>(v)}; }
};
template <>
struct Convert<BFloat16> {
  DK_CAST_FN static BFloat16 from(double v) { return {encode_double<8, 7>(v)}; }
  DK_CAST_FN static BFloat16 from(std::int64_t v) { return {encode_int<8, 7>(v)}; }
};
template <>
struct Convert<std::int32_t> {
  template <class V>
  DK_CAST_FN static std::int32_t from(V v) {  // truncation, or wrapping of a wider integer
    return static_cast<std::int32_t>(static_cast<std::int64_t>(v));
  }
};
template <>
struct Convert<std::int64_t> {
  template <class V>
  DK_CAST_FN static std::int64_t from(V v) {
    return static_cast<std::int64_t>(v);
  }
};
template <>
struct Convert<std::uint8_t> {
  template <class V>
  DK_CAST_FN static std::uint8_t from(V v) {  // as NumPy on x86: through a wide integer, then wrapped
    return static_cast<std::uint8_t>(static_cast<std::int64_t>(v));
  }
};
template <>
struct Convert<Bool> {
  template <class V>
  DK_CAST_FN static Bool from(V v) {
    return {std::uint8_t(v != 0)};
  }  // NaN != 0 holds
};

// `from` converted to To, as NumPy's astype.
template <class To, class From>
DK_CAST_FN To convert(From from) {
  return Convert<To>::from(exact(from));
}

}  // namespace deepkern::cuda::cast
