// One bfloat16 value to and from float32, on its bits: the conversions every kernel that reads or
// writes bfloat16 uses (inline and branch-free, so that the loops around them vectorize for each
// ISA; in an unnamed namespace, so each per-ISA translation unit keeps its own copies).
#pragma once
#include <cstdint>
#include <cstring>

namespace deepkern::cpu {
namespace {

// The float32 whose upper 16 bits are `bits` (exact).
inline float bf16_bits_to_float(uint16_t bits) {
  const uint32_t wide = uint32_t(bits) << 16;
  float x;
  std::memcpy(&x, &wide, sizeof x);
  return x;
}

// x rounded to the nearest bfloat16, ties to even; a value past the largest bfloat16 becomes
// infinity, and a NaN the quiet NaN of its sign (0x7fc0 or 0xffc0): ml_dtypes' conversion, so a
// value converts to the same bits whichever path (this one or NumPy's astype) converts it.
inline uint16_t float_to_bf16_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  const uint32_t kept = (bits & 0x7fffffffu) > 0x7f800000u ? (bits & 0x80000000u) | 0x7fc00000u : rounded;
  return static_cast<uint16_t>(kept >> 16);
}

}  // namespace
}  // namespace deepkern::cpu
