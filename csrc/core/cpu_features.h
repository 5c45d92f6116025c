// CPU feature detection and the run-time choice of kernel ISA.
#pragma once
#include <string>

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
