// CPU feature detection and the run-time choice of kernel ISA.
#pragma once
#include <string>

// Compiles a function once per ISA (AVX-512, AVX2, the x86-64 baseline); the loader picks the
// clone this CPU supports from CPUID (set_active_isa / DEEPKERN_ISA do not steer it). For loops
// the compiler vectorizes (Winograd transforms, the LSTM's pointwise passes) that need no
// hand-written kernel; lambdas inside such a function are not cloned.
#define DEEPKERN_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

namespace deepkern {

// Kernel instruction sets, ordered from most portable to fastest.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "generic" / "avx2" / "avx512"; throws std::invalid_argument otherwise.
Isa isa_from_name(const std::string& name);

// The best ISA this CPU and operating system support (CPUID + XGETBV).
Isa detected_isa();

// The ISA the kernels dispatch on: detected_isa(), or DEEPKERN_ISA from the environment
// at start-up, or what set_active_isa() chose last.
Isa active_isa();

// Chooses the kernels' ISA (tests use it to run every kernel on one machine).
// Throws std::invalid_argument if this CPU does not support `isa`.
void set_active_isa(Isa isa);

// A short description of the processor ("brand string").
std::string cpu_brand();

}  // namespace deepkern
