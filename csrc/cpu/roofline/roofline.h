// This machine's ceilings, measured by deepkern itself: FMA throughput and copy bandwidth.
// Benchmarks report each kernel as a share of these.
#pragma once
#include <cstdint>

#include "core/cpu_features.h"

namespace deepkern::cpu {

// Single-precision GFLOP/s (an FMA counts 2) of independent FMA chains in registers on
// `threads` threads, using the widest vectors of the active ISA (the roofline family's dispatch);
// runs for about `seconds`. `isa` must be the active ISA (std::invalid_argument otherwise).
double measure_fma_gflops(Isa isa, int threads, double seconds);

// GB/s of memcpy between two `bytes`-sized buffers on `threads` threads, counting bytes read
// plus bytes written (STREAM's convention); the median of `repeats` copies.
double measure_copy_gbps(int64_t bytes, int threads, int repeats);

}  // namespace deepkern::cpu
