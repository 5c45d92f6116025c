// The AMX emulation (csrc/cpu/gemm_bf16/amx_emulation.h) behind C entry points, for
// tests/test_amx_emulation.py: each runs one tile intrinsic on the calling thread's tile state and
// returns 0, or 1 with the emulation's message in dk_emulation_last_error() (dk_emulation/driver.h,
// shared with the CUDA emulation's drivers).
#include "cpu/gemm_bf16/amx_emulation.h"

#include <cstdint>

#include "dk_emulation/driver.h"

using std::int64_t;

DK_EMULATION_EXPORT int amx_loadconfig(const void* config) {
  return dk_emu::guarded([&] { _tile_loadconfig(config); });
}

DK_EMULATION_EXPORT int amx_release() {
  return dk_emu::guarded([] { _tile_release(); });
}

DK_EMULATION_EXPORT int amx_zero(int64_t tile) {
  return dk_emu::guarded([&] { _tile_zero(static_cast<int>(tile)); });
}

DK_EMULATION_EXPORT int amx_loadd(int64_t tile, const void* base, int64_t stride) {
  return dk_emu::guarded([&] { _tile_loadd(static_cast<int>(tile), base, stride); });
}

DK_EMULATION_EXPORT int amx_stored(int64_t tile, void* base, int64_t stride) {
  return dk_emu::guarded([&] { _tile_stored(static_cast<int>(tile), base, stride); });
}

DK_EMULATION_EXPORT int amx_dpbf16ps(int64_t dst, int64_t a, int64_t b) {
  return dk_emu::guarded([&] { _tile_dpbf16ps(static_cast<int>(dst), static_cast<int>(a), static_cast<int>(b)); });
}
