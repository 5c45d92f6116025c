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

// Kernel instruction sets, ordered from most portable to fastest. amx is avx512 plus the AMX tiles
// (AMX-TILE, AMX-BF16, granted by the operating system): only the bfloat16 GEMM has amx kernels;
// every other family runs its avx512 kernels there.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2, amx = 3 };

const char* isa_name(Isa isa);
// Parses "generic" / "avx2" / "avx512" / "amx"; throws std::invalid_argument otherwise.
Isa isa_from_name(const std::string& name);

// The best ISA this CPU and operating system support (CPUID + XGETBV; for amx also the Linux
// permission to use the tile state, asked once, unless amx_emulated()); generic without DEEPKERN_X86.
Isa detected_isa();

// Whether this build runs the amx ISA's tile instructions on a host emulation (CMake option
// DEEPKERN_AMX_EMULATION, for tests): amx is then detected on every CPU with avx512.
bool amx_emulated();

// Whether the CPU has AVX512-BF16 (VDPBF16PS) besides the avx512 ISA (CPUID leaf 7, subleaf 1).
bool cpu_has_avx512_bf16();

// The ISA the kernels dispatch on: detected_isa(), or DEEPKERN_ISA from the environment
// at start-up, or what set_active_isa() chose last.
Isa active_isa();

// Chooses the kernels' ISA (tests use it to run every kernel on one machine).
// Throws std::invalid_argument if this CPU does not support `isa`.
void set_active_isa(Isa isa);

// A short description of the processor (the x86 brand string; elsewhere /proc/cpuinfo's model name).
std::string cpu_brand();

}  // namespace deepkern
