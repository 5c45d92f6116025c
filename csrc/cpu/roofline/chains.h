// The FMA peak loop, written once over a vector type; peak_loops_<isa>.cpp instantiates it with its
// ISA's registers (a type in that file's unnamed namespace, so each instantiation stays in its file).
#pragma once
#include <cstdint>

namespace deepkern::cpu::roofline {

// `kChains` independent multiply-add chains of V registers, `iters` steps each: enough chains keep
// the multiply-add units busy through their latency. The chains start at 0.5 + i/1000, not at a
// fixed point of acc * 0.9999999 + 1e-7 in float (such as 1.0): the compiler folds a loop whose
// values never change into a constant. Returns the sum of the chains, so none is elided.
//
// V provides: reg, set1(float), mul_add(a, b, c) = a * b + c, add(a, b), first_lane(reg).
template <class V, int kChains>
float multiply_add_chains(int64_t iters) {
  typename V::reg acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = V::set1(0.5f + i * 1e-3f);
  const typename V::reg mul = V::set1(0.9999999f), add = V::set1(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = V::mul_add(acc[i], mul, add);
  typename V::reg sum = acc[0];
  for (int i = 1; i < kChains; ++i) sum = V::add(sum, acc[i]);
  return V::first_lane(sum);
}

}  // namespace deepkern::cpu::roofline
