// The roofline family's table for the x86-64 baseline (SSE2, no FMA): chains of 128-bit multiplies
// then adds.
#include <immintrin.h>

#include "cpu/roofline/chains.h"
#include "cpu/roofline/peak_loops.h"

namespace deepkern::cpu::roofline::generic {
namespace {

struct F32x4 {
  using reg = __m128;
  static constexpr int lanes = 4;
  static reg set1(float x) { return _mm_set1_ps(x); }
  static reg mul_add(reg a, reg b, reg c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static reg add(reg a, reg b) { return _mm_add_ps(a, b); }
  static float first_lane(reg a) { return _mm_cvtss_f32(a); }
};

constexpr int kChains = 8;

}  // namespace

const PeakLoops peak_loops = {
    .multiply_add_chains = &multiply_add_chains<F32x4, kChains>,
    .flops_per_iteration = kChains * F32x4::lanes * 2,
    .update_in_place = &update_in_place,
};

}  // namespace deepkern::cpu::roofline::generic
