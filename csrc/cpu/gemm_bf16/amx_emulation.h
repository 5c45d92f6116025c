// A host emulation of the AMX tile instructions that kernels_amx.cpp uses, so that the amx tier runs
// (and is tested) on CPUs without AMX. The CMake option DEEPKERN_AMX_EMULATION force-includes this
// header into kernels_amx.cpp (tools/amx-emulation-check builds so); never a normal build or a wheel.
//
// It includes <immintrin.h> first, then replaces _tile_loadconfig, _tile_release, _tile_zero,
// _tile_loadd, _tile_stored and _tile_dpbf16ps by functions on a thread-local tile state (8 tiles of
// 16 rows x 64 bytes and palette 1's rows and bytes per row of each), after Intel's pseudo-code:
// - LDTILECFG reads the 64-byte configuration; palette 1 only, reserved bytes zero, rows <= 16 and
//   colsb <= 64 for tiles 0-7, tiles 8-15 unconfigured; start_row 0 (interrupted loads, which the
//   hardware restarts from start_row, do not happen here). TILERELEASE forgets it.
// - TILELOADD / TILESTORED touch exactly rows[t] rows of colsb[t] bytes, stride bytes apart (so
//   AddressSanitizer sees an out-of-bounds tile access); a load zeroes the rest of the tile.
// - TDPBF16PS: for each row m < rows(dst), pair k < colsb(a) / 4, column n < colsb(dst) / 4,
//   dst[m][n] += a[m][2k] * b[k][2n], then += a[m][2k + 1] * b[k][2n + 1], each a float32 fused
//   multiply-add rounded to nearest even; bfloat16 denormal inputs count as zero and denormal
//   float32 results are flushed to zero (of the same sign).
// Anything else the hardware refuses (#UD, #GP) throws std::logic_error naming it: a tile used before
// LDTILECFG or outside the configured ones, shapes of TDPBF16PS that do not agree (rows(a) ==
// rows(dst), colsb(a) / 4 == rows(b), colsb(b) == colsb(dst)) or tiles that are not distinct.
//
// Everything is in an unnamed namespace: the header is compiled into kernels_amx.cpp with the
// avx512 flags, and no other translation unit may share its functions (core/isa_dispatch.h).
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace deepkern::amx_emulation {
namespace {

constexpr int kTiles = 8, kMaxRows = 16, kMaxColsb = 64;

// LDTILECFG's 64-byte operand, palette 1.
struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

struct TileState {
  bool configured = false;
  int rows[kTiles] = {}, colsb[kTiles] = {};
  unsigned char data[kTiles][kMaxRows][kMaxColsb] = {};
};
thread_local TileState state;

[[noreturn]] void reject(const std::string& what) { throw std::logic_error("AMX emulation: " + what); }

// Checks that tile t is configured (LDTILECFG done, t < 8, rows and colsb not zero) for `op`.
void require_tile(const char* op, int t) {
  if (!state.configured) reject(std::string(op) + " before _tile_loadconfig (or after _tile_release)");
  if (t < 0 || t >= kTiles) reject(std::string(op) + ": tile " + std::to_string(t) + " does not exist");
  if (state.rows[t] == 0 || state.colsb[t] == 0)
    reject(std::string(op) + ": tile " + std::to_string(t) + " is not configured (rows or colsb 0)");
}

void tile_loadconfig(const void* config) {
  TileConfig c;
  std::memcpy(&c, config, sizeof c);
  if (c.palette_id != 1) reject("palette " + std::to_string(c.palette_id) + " (only palette 1 is emulated)");
  bool reserved_zero = c.start_row == 0;
  for (uint8_t byte : c.reserved) reserved_zero = reserved_zero && byte == 0;
  if (!reserved_zero) reject("start_row or a reserved byte of the configuration is not zero");
  for (int t = 0; t < 16; ++t) {
    const std::string tile = "tile " + std::to_string(t);
    if (t >= kTiles && (c.rows[t] != 0 || c.colsb[t] != 0)) reject(tile + " configured, palette 1 has 8 tiles");
    if (c.rows[t] > kMaxRows) reject(tile + ": rows " + std::to_string(c.rows[t]) + " > 16");
    if (c.colsb[t] > kMaxColsb) reject(tile + ": colsb " + std::to_string(c.colsb[t]) + " > 64");
  }
  state = TileState{};
  state.configured = true;
  for (int t = 0; t < kTiles; ++t) {
    state.rows[t] = c.rows[t];
    state.colsb[t] = c.colsb[t];
  }
}

void tile_release() { state = TileState{}; }

void tile_zero(int t) {
  require_tile("_tile_zero", t);
  std::memset(state.data[t], 0, sizeof state.data[t]);
}

void tile_loadd(int t, const void* base, int64_t stride) {
  require_tile("_tile_loadd", t);
  std::memset(state.data[t], 0, sizeof state.data[t]);
  for (int r = 0; r < state.rows[t]; ++r)
    std::memcpy(state.data[t][r], static_cast<const unsigned char*>(base) + r * stride, state.colsb[t]);
}

void tile_stored(int t, void* base, int64_t stride) {
  require_tile("_tile_stored", t);
  for (int r = 0; r < state.rows[t]; ++r)
    std::memcpy(static_cast<unsigned char*>(base) + r * stride, state.data[t][r], state.colsb[t]);
}

// The float32 value of the bfloat16 at p, a denormal read as zero of its sign.
float bf16_at(const unsigned char* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  if ((bits & 0x7f80) == 0) bits &= 0x8000;
  const uint32_t word = uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

float flush_denormal(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }

// Throws unless `holds`: TDPBF16PS's requirement `what` on tiles dst, a and b.
void require_shapes(bool holds, const char* what, int dst, int a, int b) {
  if (holds) return;
  const auto shape = [](const char* role, int t) {
    return std::string(role) + " tile " + std::to_string(t) + " (" + std::to_string(state.rows[t]) + " rows x " +
           std::to_string(state.colsb[t]) + " bytes)";
  };
  reject(std::string("_tile_dpbf16ps: ") + what + ": " + shape("dst", dst) + ", " + shape("a", a) + ", " +
         shape("b", b));
}

void tile_dpbf16ps(int dst, int a, int b) {
  require_tile("_tile_dpbf16ps", dst);
  require_tile("_tile_dpbf16ps", a);
  require_tile("_tile_dpbf16ps", b);
  require_shapes(dst != a && dst != b && a != b, "the tiles are not distinct", dst, a, b);
  require_shapes(state.rows[a] == state.rows[dst], "rows(a) != rows(dst)", dst, a, b);
  require_shapes(state.colsb[a] / 4 == state.rows[b], "colsb(a) / 4 != rows(b)", dst, a, b);
  require_shapes(state.colsb[b] == state.colsb[dst], "colsb(b) != colsb(dst)", dst, a, b);
  for (int m = 0; m < state.rows[dst]; ++m) {
    float sums[kMaxColsb / 4];
    const int columns = state.colsb[dst] / 4;
    std::memcpy(sums, state.data[dst][m], sizeof(float) * columns);
    for (int k = 0; k < state.colsb[a] / 4; ++k)
      for (int n = 0; n < columns; ++n)
        for (int half = 0; half < 2; ++half) {
          const float x = bf16_at(&state.data[a][m][4 * k + 2 * half]),
                      y = bf16_at(&state.data[b][k][4 * n + 2 * half]);
          sums[n] = flush_denormal(std::fma(x, y, sums[n]));
        }
    std::memcpy(state.data[dst][m], sums, sizeof(float) * columns);
  }
}

}  // namespace
}  // namespace deepkern::amx_emulation

#undef _tile_loadd
#undef _tile_loadd_internal
#undef _tile_stored
#undef _tile_stored_internal
#undef _tile_zero
#undef _tile_zero_internal
#undef _tile_dpbf16ps
#undef _tile_dpbf16ps_internal
// _tile_loadconfig and _tile_release are functions of <immintrin.h>: macros of the same name take their place.
#define _tile_loadconfig(config) ::deepkern::amx_emulation::tile_loadconfig(config)
#define _tile_release() ::deepkern::amx_emulation::tile_release()
#define _tile_zero(t) ::deepkern::amx_emulation::tile_zero(t)
#define _tile_loadd(t, base, stride) ::deepkern::amx_emulation::tile_loadd(t, base, stride)
#define _tile_stored(t, base, stride) ::deepkern::amx_emulation::tile_stored(t, base, stride)
#define _tile_dpbf16ps(dst, a, b) ::deepkern::amx_emulation::tile_dpbf16ps(dst, a, b)
