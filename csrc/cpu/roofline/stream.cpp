// The memory stream of the bandwidth measurement, compiled once per ISA (the compiler vectorizes it
// with that ISA's widest loads and stores, as it does the optimizer steps' loops).
#include <cstdint>

#include "cpu/roofline/peak_loops.h"

namespace deepkern::cpu::roofline::DEEPKERN_ISA_NS {

void update_in_place(float* __restrict a, const float* __restrict b, float scale, int64_t n) {
  for (int64_t i = 0; i < n; ++i) a[i] = a[i] * scale + b[i];
}

}  // namespace deepkern::cpu::roofline::DEEPKERN_ISA_NS
