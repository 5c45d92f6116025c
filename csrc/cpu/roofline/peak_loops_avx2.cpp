// The roofline family's table for AVX2 + FMA (compiled with -mavx2 -mfma): chains of 256-bit FMAs.
#include <immintrin.h>

#include "cpu/roofline/chains.h"
#include "cpu/roofline/peak_loops.h"

namespace deepkern::cpu::roofline::avx2 {
namespace {

struct F32x8 {
  using reg = __m256;
  static constexpr int lanes = 8;
  static reg set1(float x) { return _mm256_set1_ps(x); }
  static reg mul_add(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static float first_lane(reg a) { return _mm256_cvtss_f32(a); }
};

// 12 chains cover the FMA latency on two ports within the 16 ymm registers.
constexpr int kChains = 12;

}  // namespace

const PeakLoops peak_loops = {
    .multiply_add_chains = &multiply_add_chains<F32x8, kChains>,
    .flops_per_iteration = kChains * F32x8::lanes * 2,
    .update_in_place = &update_in_place,
};

}  // namespace deepkern::cpu::roofline::avx2
