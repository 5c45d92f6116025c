// CPU feature detection and the run-time choice of kernel ISA.
#pragma once
#include <string>

// 1 where deepkern compiles its x86 code (CPUID, SSE intrinsics, the AVX2 and AVX-512 kernels): an
// x86-64 compiler, and not a DEEPKERN_PORTABLE_ONLY build (the build other processors get, which
// x86-64 can also make, to prove that the portable kernels stand alone).
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(DEEPKERN_PORTABLE_ONLY)
#define DEEPKERN_X86 1
#else
#define DEEPKERN_X86 0
#endif

namespace deepkern {

// Kernel instruction sets, ordered from most portable to fastest.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Parses "generic" / "avx2" / "avx512"; throws std::invalid_argument otherwise.
Isa isa_from_name(const std::string& name);

// The best ISA this CPU and operating system support (CPUID + XGETBV); generic without DEEPKERN_X86.
Isa detected_isa();

// The ISA the kernels dispatch on: detected_isa(), or DEEPKERN_ISA from the environment
// at start-up, or what set_active_isa() chose last.
Isa active_isa();

// Chooses the kernels' ISA (tests use it to run every kernel on one machine).
// Throws std::invalid_argument if this CPU does not support `isa`.
void set_active_isa(Isa isa);

// A short description of the processor (the x86 brand string; elsewhere /proc/cpuinfo's model name).
std::string cpu_brand();

}  // namespace deepkern
