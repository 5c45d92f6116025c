// FP32 GEMM on the CUDA cores (any architecture deepkern builds for): the tile of
// cuda/gemm/simt_tile.h over strided operands.
//
// Global loads are 16 bytes wide when the operand is contiguous along k or along m/n and the matrix
// is 16-byte aligned; otherwise (any strides, negative or zero included) element by element. Every
// dimension has tails (zero-filled operands, guarded stores).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "cuda/gemm/gemm.h"
#include "cuda/gemm/gemm_device.h"
#include "cuda/gemm/simt_tile.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

using gemm_device::kMaxGridY;
using simt_tile::kThreads;
using simt_tile::kTile;
using simt_tile::Load;

// Contract: problem.dtype float32; A and B satisfy their load modes (see operand_load); block
// (x, y) computes tile x (m fastest; tiles_m of them along m) of batch entry entry0 + y.
template <Load a_mode, Load b_mode>
__global__ void __launch_bounds__(kThreads, 2) gemm_simt_kernel(GemmProblem p, unsigned tiles_m, std::int64_t entry0) {
  __shared__ simt_tile::SharedSlices shared;
  const std::int64_t entry = entry0 + blockIdx.y;
  const std::int64_t m0 = std::int64_t(blockIdx.x % tiles_m) * kTile, n0 = std::int64_t(blockIdx.x / tiles_m) * kTile;
  simt_tile::StridedLoader<a_mode> a(gemm_device::operand_view<float>(p.a, false, entry), m0, p.m);
  simt_tile::StridedLoader<b_mode> b(gemm_device::operand_view<float>(p.b, true, entry), n0, p.n);
  float acc[8][8];
  simt_tile::multiply_tile(a, b, 0, p.k, shared, acc);
  float* c = gemm_device::output_matrix<float>(p, entry);
  simt_tile::for_each_result(
      acc, [&](int row, int col, float v) { gemm_device::store_result(p, c, m0 + row, n0 + col, v); });
}

// How an operand is loaded, from its MN x K strides and the alignment of all its matrices: the
// vector modes need the float4s they read to be whole and 16-byte aligned.
Load operand_load(const GemmOperand& op, bool operand_is_b, std::int64_t mn, std::int64_t k) {
  const std::int64_t mn_stride = operand_is_b ? op.col_stride : op.row_stride;
  const std::int64_t k_stride = operand_is_b ? op.row_stride : op.col_stride;
  if (!matrices_aligned(op.data, op.offset_divisor, sizeof(float), 16)) return Load::scalar;
  if (k_stride == 1 && mn_stride % 4 == 0) return Load::k_vector;
  if (mn_stride == 1 && k_stride % 4 == 0) return Load::mn_vector;
  return Load::scalar;
}

using Kernel = void (*)(GemmProblem, unsigned, std::int64_t);

template <Load a_mode>
Kernel pick_kernel(Load b_mode) {
  switch (b_mode) {
    case Load::k_vector: return gemm_simt_kernel<a_mode, Load::k_vector>;
    case Load::mn_vector: return gemm_simt_kernel<a_mode, Load::mn_vector>;
    default: return gemm_simt_kernel<a_mode, Load::scalar>;
  }
}

Kernel pick_kernel(Load a_mode, Load b_mode) {
  switch (a_mode) {
    case Load::k_vector: return pick_kernel<Load::k_vector>(b_mode);
    case Load::mn_vector: return pick_kernel<Load::mn_vector>(b_mode);
    default: return pick_kernel<Load::scalar>(b_mode);
  }
}

}  // namespace

void gemm_simt(const GemmProblem& p, cudaStream_t stream) {
  const std::int64_t tiles_m = (p.m + kTile - 1) / kTile, tiles = tiles_m * ((p.n + kTile - 1) / kTile);
  if (tiles >= (std::int64_t(1) << 31)) throw std::invalid_argument("gemm_simt: C has too many 128 x 128 tiles");
  const Kernel kernel = pick_kernel(operand_load(p.a, false, p.m, p.k), operand_load(p.b, true, p.n, p.k));
  for (std::int64_t entry0 = 0; entry0 < p.batch; entry0 += kMaxGridY) {
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(p.batch - entry0, kMaxGridY)));
    launch("gemm_simt", kernel, grid, dim3(kThreads), 0, stream, p, static_cast<unsigned>(tiles_m), entry0);
  }
}

}  // namespace deepkern::cuda
