#include "core/cpu_features.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#if DEEPKERN_X86
#include <cpuid.h>
#endif
#if DEEPKERN_X86 && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace deepkern {
namespace {

#if DEEPKERN_X86
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

#if defined(DEEPKERN_AMX_EMULATION)
// The AMX emulation build runs the tile instructions on the host: amx comes with avx512.
bool amx_usable(unsigned, uint64_t) { return true; }
#else
// Linux keeps the AMX tile data state (XFEATURE_XTILEDATA, 18) off until a process asks for it
// (arch_prctl ARCH_REQ_XCOMP_PERM = 0x1023); the grant holds for every thread of the process.
bool os_grants_amx_tiles() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

// AMX-TILE (leaf 7 EDX bit 24) and AMX-BF16 (bit 22), XCR0's tile state (XTILECFG bit 17,
// XTILEDATA bit 18) enabled by the OS, and the process's permission to use it.
bool amx_usable(unsigned leaf7_edx, uint64_t xcr0) {
  const bool amx_tile = leaf7_edx & (1u << 24), amx_bf16 = leaf7_edx & (1u << 22);
  const bool os_tiles = (xcr0 & (uint64_t(3) << 17)) == (uint64_t(3) << 17);
  return amx_tile && amx_bf16 && os_tiles && os_grants_amx_tiles();
}
#endif

Isa probe_isa() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::generic;
  const bool osxsave = ecx & bit_OSXSAVE;
  const bool fma = ecx & bit_FMA;
  const bool avx = ecx & bit_AVX;
  if (!osxsave || !avx) return Isa::generic;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm) return Isa::generic;
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::generic;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & bit_AVX2;
  const bool avx512 = (ebx & bit_AVX512F) && (ebx & bit_AVX512VL) && (ebx & bit_AVX512DQ) && (ebx & bit_AVX512BW);
  if (avx512 && fma && os_zmm) return amx_usable(edx, xcr0) ? Isa::amx : Isa::avx512;
  if (avx2 && fma) return Isa::avx2;
  return Isa::generic;
}
bool probe_avx512_bf16() {
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  unsigned eax, ebx, ecx, edx;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  return eax & (1u << 5);
}
#else
Isa probe_isa() { return Isa::generic; }
bool probe_avx512_bf16() { return false; }
#endif

Isa initial_isa() {
  const Isa best = probe_isa();
  if (const char* env = std::getenv("DEEPKERN_ISA")) {
    try {
      const Isa wanted = isa_from_name(env);
      if (static_cast<int>(wanted) <= static_cast<int>(best)) return wanted;
    } catch (const std::invalid_argument&) {
      // An unknown name keeps the detected ISA; show_config() reports what is active.
    }
  }
  return best;
}

std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::amx: return "amx";
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa isa_from_name(const std::string& name) {
  if (name == "amx") return Isa::amx;
  if (name == "avx512") return Isa::avx512;
  if (name == "avx2") return Isa::avx2;
  if (name == "generic") return Isa::generic;
  throw std::invalid_argument("isa must be one of 'amx', 'avx512', 'avx2', 'generic', got '" + name + "'");
}

bool amx_emulated() {
#if defined(DEEPKERN_AMX_EMULATION)
  return true;
#else
  return false;
#endif
}

Isa detected_isa() {
  static const Isa isa = probe_isa();
  return isa;
}

bool cpu_has_avx512_bf16() {
  static const bool has = static_cast<int>(detected_isa()) >= static_cast<int>(Isa::avx512) && probe_avx512_bf16();
  return has;
}

Isa active_isa() { return static_cast<Isa>(active_isa_slot().load(std::memory_order_relaxed)); }

void set_active_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(detected_isa()))
    throw std::invalid_argument(std::string("isa '") + isa_name(isa) + "' is not supported by this CPU (best: '" +
                                isa_name(detected_isa()) + "')");
  active_isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

#if DEEPKERN_X86
std::string cpu_brand() {
  unsigned regs[12] = {};
  if (__get_cpuid_max(0x80000000, nullptr) < 0x80000004) return "unknown x86-64 CPU";
  for (unsigned i = 0; i < 3; ++i)
    __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  char text[49] = {};
  std::memcpy(text, regs, 48);
  std::string brand(text);
  const auto first = brand.find_first_not_of(' ');
  return first == std::string::npos ? "unknown x86-64 CPU" : brand.substr(first);
}

#else
std::string cpu_brand() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  const std::string key = "model name";
  for (std::string line; std::getline(cpuinfo, line);) {
    const auto colon = line.find(':');
    if (line.compare(0, key.size(), key) == 0 && colon != std::string::npos && colon + 2 <= line.size())
      return line.substr(colon + 2);
  }
  return "unknown processor";
}
#endif

}  // namespace deepkern
