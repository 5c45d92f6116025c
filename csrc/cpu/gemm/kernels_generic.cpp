// Portable kernels for any x86-64 CPU (SSE2 baseline); the compiler vectorizes them.
#include "cpu/gemm/portable_kernels.h"

namespace deepkern::cpu::generic {

// 4 x 8 floats: 8 xmm accumulators of the 16 SSE registers.
const GemmKernels<float> kernels_f32 = {
    "generic 4x8", 4, 8, 128, 256, 2048,
    &tile_portable<float, 4, 8>, {}, &gemv_rows_portable<float>, &gemv_cols_portable<float>,
    &gemv_packed_portable<float, 8>, &transpose_portable<float>, &merge_tile<float>};
const GemmKernels<double> kernels_f64 = {
    "generic 4x4", 4, 4, 128, 256, 2048,
    &tile_portable<double, 4, 4>, {}, &gemv_rows_portable<double>, &gemv_cols_portable<double>,
    &gemv_packed_portable<double, 4>, &transpose_portable<double>, &merge_tile<double>};

}  // namespace deepkern::cpu::generic
