// The roofline family's table for AVX-512 (compiled with -mavx512f ...): chains of 512-bit FMAs.
#include <immintrin.h>

#include "cpu/roofline/chains.h"
#include "cpu/roofline/peak_loops.h"

namespace deepkern::cpu::roofline::avx512 {
namespace {

struct F32x16 {
  using reg = __m512;
  static constexpr int lanes = 16;
  static reg set1(float x) { return _mm512_set1_ps(x); }
  static reg mul_add(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static float first_lane(reg a) { return _mm512_cvtss_f32(a); }
};

// 16 chains cover the FMA latency (4 cycles) on two FMA ports.
constexpr int kChains = 16;

}  // namespace

const PeakLoops peak_loops = {
    .multiply_add_chains = &multiply_add_chains<F32x16, kChains>,
    .flops_per_iteration = kChains * F32x16::lanes * 2,
    .update_in_place = &update_in_place,
};

}  // namespace deepkern::cpu::roofline::avx512
