// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw ("Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), and the dropout rule built on it, shared by the CPU
// kernels (cpu/dropout/kernels.cpp, compiled once per ISA) and the CUDA kernel
// (cuda/dropout/dropout.cu), so both devices draw the same bits for the same (seed, offset).
//
// Philox maps a 128-bit counter and a 64-bit key to 128 random bits with 10 rounds of two 32x32 ->
// 64-bit multiplies, xors and a key bump (Weyl sequence) between rounds; the output is a bijection
// of the counter for each key.
//
// Dropout's stream: element i of a call with (seed, offset) takes word i % 4 of
// philox(counter = offset + i / 4 as a 128-bit number, key = seed), and is kept when that word is
// >= ceil(p 2^32) (probability 1 - ceil(p 2^32) / 2^32, within 2^-32 of 1 - p; p = 0 keeps all,
// p = 1 none). A call on n elements consumes ceil(n / 4) counters.
#pragma once
#include <cmath>
#include <cstdint>

// Internal linkage (static): the CPU kernels include this header in each ISA's translation unit,
// and an inline function shared between them could be the AVX-512 copy the linker keeps for all.
#if defined(__CUDACC__)
#define DK_PHILOX_FN static __host__ __device__ __forceinline__
#define DK_PHILOX_UNROLL _Pragma("unroll")
#else
#define DK_PHILOX_FN static inline
#define DK_PHILOX_UNROLL _Pragma("GCC unroll 10")
#endif

namespace deepkern::philox {

struct Words {
  std::uint32_t w[4];
};

// 32 x 32 -> 64-bit product, split into its high and low words.
DK_PHILOX_FN void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

// Philox4x32 with 10 rounds on counter c (c.w[0] the least significant word) and key (k0, k1).
DK_PHILOX_FN Words philox4x32_10(Words c, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key bumps
  DK_PHILOX_UNROLL
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c.w[0], hi0, lo0);
    mulhilo(kM1, c.w[2], hi1, lo1);
    c = Words{{hi1 ^ c.w[1] ^ k0, lo1, hi0 ^ c.w[3] ^ k1, lo0}};
  }
  return c;
}

// Dropout's parameters for one call, prepared once on the host (dropout_params below).
struct DropoutParams {
  std::uint32_t key0, key1;  // the seed's low and high words
  std::uint64_t offset;      // the counter of element 0's block
  std::uint64_t threshold;   // keep a word >= threshold; ceil(p 2^32), 2^32 when p = 1
};

// (seed, offset, p) as the kernels take them; p in [0, 1] (the callers check).
static inline DropoutParams dropout_params(double p, std::uint64_t seed, std::uint64_t offset) {
  return {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32), offset,
          static_cast<std::uint64_t>(std::ceil(p * 4294967296.0))};
}

// The multiplier of a kept element: 1 / (1 - p) rounded once to T, 0 when p = 1 (nothing is kept;
// inf would turn the dropped elements' x * 0 into NaN for finite x).
template <class T>
static T dropout_scale(double p) {
  return p < 1 ? static_cast<T>(1 / (1 - p)) : T(0);
}

// The 4 words of block `block` (elements 4 block .. 4 block + 3) of the call's stream: the counter is
// offset + block in 128-bit arithmetic.
DK_PHILOX_FN Words dropout_block(const DropoutParams& d, std::uint64_t block) {
  const std::uint64_t low = d.offset + block;
  const std::uint32_t carry = low < block ? 1u : 0u;
  const Words counter{{static_cast<std::uint32_t>(low), static_cast<std::uint32_t>(low >> 32), carry, 0u}};
  return philox4x32_10(counter, d.key0, d.key1);
}

// Whether a word keeps its element.
DK_PHILOX_FN bool dropout_keeps(const DropoutParams& d, std::uint32_t word) { return word >= d.threshold; }

// One element: y = x * (keep ? scale : 0), as PyTorch computes x * mask / (1 - p) (NaN and inf
// inputs of dropped elements give NaN; the forward and backward use the same formula).
template <class T>
DK_PHILOX_FN T dropout_apply(T x, bool keep, T scale) {
  return x * (keep ? scale : T(0));
}

}  // namespace deepkern::philox
