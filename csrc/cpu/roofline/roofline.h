// This machine's ceilings, measured by deepkern itself: FMA throughput and memory bandwidth.
// Benchmarks report each kernel as a share of these.
#pragma once
#include <cstdint>

#include "core/cpu_features.h"

namespace deepkern::cpu {

// Single-precision GFLOP/s (an FMA counts 2) of independent FMA chains in registers on
// `threads` threads, using the widest vectors of the active ISA (the roofline family's dispatch);
// runs for about `seconds`. `isa` must be the active ISA (std::invalid_argument otherwise).
double measure_fma_gflops(Isa isa, int threads, double seconds);

// GFLOP/s of `chains(iters)` (independent chains in registers, `flops_per_iteration` per
// iteration) run on `threads` threads at once for about `seconds`; the FMA peak's measurement, and
// the bfloat16 GEMM's (measure_bf16_gflops, gemm_bf16.h).
double measure_chains_gflops(float (*chains)(int64_t iters), double flops_per_iteration, int threads, double seconds);

// The memory-bound kernels' roof: GB/s of a read+write stream on `threads` threads, each updating
// its own slice of two `bytes`-sized float32 buffers in place, a[i] = a[i] * s + b[i], with
// ordinary loads and stores, as an in-place kernel (an optimizer step) streams memory; the
// buffers on huge pages where the system gives them, as NumPy's arrays are. Counts 12 bytes per
// element (a and b read, a written back): every byte counted crosses the memory bus, and no other
// byte does, since a store to the line just read needs no read-for-ownership. The median of
// `repeats` passes, after each thread first touched its own slices.
//
// Why not memcpy, as before: glibc's memcpy switches to non-temporal stores above a size threshold
// (288 MB per call on the project's machine, so one thread copying 512 MB took that path and two
// threads copying 256 MB each did not), and a copy with ordinary stores reads each destination line
// before writing it, a third byte the read + write convention does not count. It measured ~60% of
// what a 100M-parameter Adam step streams; this stream ~95% (bench/RESULTS.md, 2026-12-04).
double measure_copy_gbps(int64_t bytes, int threads, int repeats);

}  // namespace deepkern::cpu
