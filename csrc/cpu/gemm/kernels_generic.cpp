// Portable kernels for any x86-64 CPU (SSE2 baseline); the compiler vectorizes them.
#include "cpu/gemm/portable_kernels.h"

namespace deepkern::cpu::generic {

// 4 x 8 floats: 8 xmm accumulators of the 16 SSE registers. No short tiles.
const KernelsByType<GemmKernels> gemm_kernels = {
    .f32 = {.name = "generic 4x8",
            .mr = 4,
            .nr = 8,
            .mc = 128,
            .kc = 256,
            .nc = 2048,
            .tile = &tile_portable<float, 4, 8>,
            .short_tiles = {},
            .gemv_rows = &gemv_rows_portable<float>,
            .gemv_cols = &gemv_cols_portable<float>,
            .gemv_packed = &gemv_packed_portable<float, 8>,
            .dot_mr = 4,
            .dot_nr = 4,
            .dot_tile = &dot_tile_portable<float>,
            .transpose = &transpose_portable<float>,
            .merge = &merge_tile<float>},
    .f64 = {.name = "generic 4x4",
            .mr = 4,
            .nr = 4,
            .mc = 128,
            .kc = 256,
            .nc = 2048,
            .tile = &tile_portable<double, 4, 4>,
            .short_tiles = {},
            .gemv_rows = &gemv_rows_portable<double>,
            .gemv_cols = &gemv_cols_portable<double>,
            .gemv_packed = &gemv_packed_portable<double, 4>,
            .dot_mr = 4,
            .dot_nr = 4,
            .dot_tile = &dot_tile_portable<double>,
            .transpose = &transpose_portable<double>,
            .merge = &merge_tile<double>},
};

}  // namespace deepkern::cpu::generic
