// The loops that measure this machine's ceilings (roofline.cpp), one table per ISA, picked with
// dispatch(IsaFamily::roofline, ...).
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu::roofline {

struct PeakLoops {
  // Runs `iters` iterations of independent multiply-add chains in registers (FMAs where the ISA
  // has them, a multiply then an add on the baseline) on the calling thread (chains.h).
  float (*multiply_add_chains)(int64_t iters);
  // Floating-point operations per iteration of multiply_add_chains (a multiply-add counts 2).
  double flops_per_iteration;
  // a[i] = a[i] * scale + b[i] for i in [0, n): the read-modify-write stream of an in-place kernel
  // (an optimizer step), with ordinary loads and stores.
  void (*update_in_place)(float* a, const float* b, float scale, int64_t n);
};

// Each ISA's table is defined in peak_loops_<isa>.cpp (compiled only with that ISA's flags); its
// update_in_place in stream.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(PeakLoops, peak_loops)
namespace generic {
void update_in_place(float* a, const float* b, float scale, int64_t n);
}  // namespace generic
namespace avx2 {
void update_in_place(float* a, const float* b, float scale, int64_t n);
}  // namespace avx2
namespace avx512 {
void update_in_place(float* a, const float* b, float scale, int64_t n);
}  // namespace avx512

}  // namespace deepkern::cpu::roofline
