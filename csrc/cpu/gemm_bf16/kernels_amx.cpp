// The AMX kernel (compiled with the avx512 flags plus -mamx-tile -mamx-bf16; used only under the
// amx ISA, which cpu_features grants when CPUID, XCR0 and Linux allow the tiles; for tests, the CMake
// option DEEPKERN_AMX_EMULATION compiles it on amx_emulation.h's host tiles instead). A 32 x 32 block
// of C is 2 x 2 accumulator tiles of 16 x 16 float32; each step of 32 K values loads two A tiles
// (16 rows x 32 bfloat16) and two B tiles (16 K pairs x 16 columns, VNNI pairs) and runs four
// TDPBF16PS.
#include <immintrin.h>

#include <cstdint>

#include "cpu/gemm_bf16/kernels.h"

namespace deepkern::cpu {
namespace {

constexpr int kRows = 32, kCols = 32, kStep = 32;  // kStep: K values per A tile row (64 bytes)

// The LDTILECFG operand (palette 1): rows and bytes per row of tiles 0..15.
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles 0-3: the accumulators C00, C01, C10, C11; 4-5: A rows 0-15 and 16-31; 6-7: B columns
// 0-15 and 16-31. Every tile is 16 rows of 64 bytes. A constant, not a local filled before the call:
// GCC's _tile_loadconfig tells the compiler that it reads only the first 8 bytes of its operand, so
// GCC 12 at -O3 dropped the stores of the rows and colsb of a local (every tile left unconfigured).
constexpr TileConfig kTileConfig = [] {
  TileConfig config = {};
  config.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  return config;
}();

void configure_tiles() { _tile_loadconfig(&kTileConfig); }

void release_tiles() { _tile_release(); }

// The Bf16TileKernel contract (kernels.h) for a 32 x 32 block; kp is a multiple of 32.
void tile_amx(int64_t kp, const bf16* a, int64_t lda, const bf16* b, float* acc, int64_t ldacc) {
  const int64_t c_stride = ldacc * int64_t(sizeof(float)), a_stride = lda * int64_t(sizeof(bf16));
  constexpr int64_t b_stride = kCols * 2 * sizeof(bf16);  // one K pair row of the panel
  float* c10 = acc + 16 * ldacc;
  _tile_loadd(0, acc, c_stride);
  _tile_loadd(1, acc + 16, c_stride);
  _tile_loadd(2, c10, c_stride);
  _tile_loadd(3, c10 + 16, c_stride);
  for (int64_t p = 0; p < kp; p += kStep) {
    const bf16* b_rows = b + p / 2 * kCols * 2;
    _tile_loadd(4, a + p, a_stride);
    _tile_loadd(5, a + 16 * lda + p, a_stride);
    _tile_loadd(6, b_rows, b_stride);
    _tile_loadd(7, b_rows + 32, b_stride);  // columns 16-31: 16 pairs further
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, acc, c_stride);
  _tile_stored(1, acc + 16, c_stride);
  _tile_stored(2, c10, c_stride);
  _tile_stored(3, c10 + 16, c_stride);
}

// TDPBF16PS on four accumulator tiles (0-3) from one A and one B tile of zeros (each step: 4 x 16 x
// 16 outputs x 32 products and additions); the tiles stay in the unit, so nothing but the
// instruction's throughput is measured.
float peak_amx(int64_t iters) {
  alignas(64) static const bf16 zeros[16 * 32] = {};
  configure_tiles();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, zeros, 64);
  _tile_loadd(6, zeros, 64);
  for (int64_t it = 0; it < iters; ++it) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 6);
    _tile_dpbf16ps(2, 4, 6);
    _tile_dpbf16ps(3, 4, 6);
  }
  alignas(64) float out[16 * 16];
  _tile_stored(0, out, 64);
  release_tiles();
  return out[0];
}

}  // namespace

namespace avx512 {
const Bf16GemmKernels gemm_bf16_amx = {.name = "amx 32x32",
                                       .mr = kRows,
                                       .nr = kCols,
                                       .k_align = kStep,
                                       .mc = 128,
                                       .kc = 1024,
                                       .nc = 256,
                                       .tile = &tile_amx,
                                       .begin = &configure_tiles,
                                       .end = &release_tiles,
                                       .peak_chains = &peak_amx,
                                       .peak_flops_per_iteration = 4 * 16 * 16 * 32 * 2};
}  // namespace avx512

}  // namespace deepkern::cpu
