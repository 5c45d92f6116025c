// The roofline family's table for the portable baseline (SSE2 on x86-64, no FMA): chains of 128-bit
// multiplies then adds, written with the compiler's vector types so any processor compiles them.

#include "cpu/roofline/chains.h"
#include "cpu/roofline/peak_loops.h"

namespace deepkern::cpu::roofline::generic {
namespace {

struct F32x4 {
  typedef float reg __attribute__((vector_size(16)));
  static constexpr int lanes = 4;
  static reg set1(float x) { return reg{x, x, x, x}; }
  static reg mul_add(reg a, reg b, reg c) { return a * b + c; }
  static reg add(reg a, reg b) { return a + b; }
  static float first_lane(reg a) { return a[0]; }
};

constexpr int kChains = 8;

}  // namespace

const PeakLoops peak_loops = {
    .multiply_add_chains = &multiply_add_chains<F32x4, kChains>,
    .flops_per_iteration = kChains * F32x4::lanes * 2,
    .update_in_place = &update_in_place,
};

}  // namespace deepkern::cpu::roofline::generic
