// TF32 and BF16 GEMM on the tensor cores with mma.sync (sm_80 and later), FP32 accumulation: the
// tile of cuda/gemm/mma_tile.h over strided operands.
//
// Each operand is seen as an MN x K matrix (gemm_device::OperandView) and kept in shared memory in
// the layout its memory has: k-major ([mn][k], when k is contiguous; also the layout of operands
// contiguous along neither axis) or mn-major ([k][mn], when m/n is contiguous), so cp.async copies
// 16-byte chunks straight from global memory. Chunks that are not whole 16-byte-aligned runs in
// memory (strided operands, misaligned matrices, the k and mn tails) are loaded element by element
// with ordinary loads: slower, same results. The epilogue applies alpha, beta, bias and ReLU and
// writes float32 (TF32) or bfloat16 (BF16, rounded to nearest even).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "cuda/gemm/gemm.h"
#include "cuda/gemm/gemm_device.h"
#include "cuda/gemm/mma_tile.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

using gemm_device::kMaxGridY;
using mma_tile::kSharedBytes;
using mma_tile::kThreads;
using mma_tile::kTile;
using mma_tile::Layout;
using mma_tile::SliceLoader;

// Contract: T float (tf32) or __nv_bfloat16 (bf16) matching problem.dtype; an operand whose
// `vector` flag is set is contiguous along its layout's chunk axis with 16-byte aligned chunks;
// kSharedBytes of dynamic shared memory; block (x, y) computes tile x (m fastest, tiles_m along m)
// of batch entry entry0 + y.
template <class T, Layout a_layout, Layout b_layout>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_mma_kernel(GemmProblem p, bool a_vector, bool b_vector, unsigned tiles_m, std::int64_t entry0) {
  const std::int64_t entry = entry0 + blockIdx.y;
  const std::int64_t m0 = std::int64_t(blockIdx.x % tiles_m) * kTile, n0 = std::int64_t(blockIdx.x / tiles_m) * kTile;
  SliceLoader<T, a_layout> a_loader(gemm_device::operand_view<T>(p.a, false, entry), a_vector, m0, p.m);
  SliceLoader<T, b_layout> b_loader(gemm_device::operand_view<T>(p.b, true, entry), b_vector, n0, p.n);
  float acc[4][4][4];
  mma_tile::multiply_tile<T, a_layout, b_layout>(a_loader, b_loader, 0, p.k, acc);
  T* c = gemm_device::output_matrix<T>(p, entry);
  mma_tile::for_each_result(acc,
                            [&](int row, int col, float v) { gemm_device::store_result(p, c, m0 + row, n0 + col, v); });
}

// How an operand is kept and loaded: its layout in shared memory (the axis it is contiguous along;
// k-major when neither) and whether whole 16-byte chunks may be copied (contiguous along that axis,
// the other stride a multiple of a chunk, every matrix 16-byte aligned).
struct OperandLoad {
  Layout layout;
  bool vector;
};

OperandLoad operand_load(const GemmOperand& op, bool operand_is_b, std::int64_t itemsize) {
  const std::int64_t mn_stride = operand_is_b ? op.col_stride : op.row_stride;
  const std::int64_t k_stride = operand_is_b ? op.row_stride : op.col_stride;
  const std::int64_t chunk = 16 / itemsize;
  const bool aligned = matrices_aligned(op.data, op.offset_divisor, itemsize, 16);
  if (k_stride != 1 && mn_stride == 1) return {Layout::mn_major, aligned && k_stride % chunk == 0};
  return {Layout::k_major, aligned && k_stride == 1 && mn_stride % chunk == 0};
}

using Kernel = void (*)(GemmProblem, bool, bool, unsigned, std::int64_t);

template <class T>
Kernel pick_kernel(Layout a, Layout b) {
  if (a == Layout::k_major)
    return b == Layout::k_major ? gemm_mma_kernel<T, Layout::k_major, Layout::k_major>
                                : gemm_mma_kernel<T, Layout::k_major, Layout::mn_major>;
  return b == Layout::k_major ? gemm_mma_kernel<T, Layout::mn_major, Layout::k_major>
                              : gemm_mma_kernel<T, Layout::mn_major, Layout::mn_major>;
}

}  // namespace

void gemm_mma(const GemmProblem& p, cudaStream_t stream) {
  const bool bf16 = p.precision == GemmPrecision::bf16;
  if (p.precision == GemmPrecision::fp32 || (bf16 ? p.dtype != DType::bfloat16 : p.dtype != DType::float32))
    throw std::invalid_argument("gemm_mma: takes tf32 problems on float32 data and bf16 problems on bfloat16 data");
  const std::int64_t itemsize = bf16 ? 2 : 4;
  const OperandLoad a = operand_load(p.a, false, itemsize), b = operand_load(p.b, true, itemsize);
  const Kernel kernel = bf16 ? pick_kernel<__nv_bfloat16>(a.layout, b.layout) : pick_kernel<float>(a.layout, b.layout);
  const std::int64_t tiles_m = (p.m + kTile - 1) / kTile, tiles = tiles_m * ((p.n + kTile - 1) / kTile);
  if (tiles >= (std::int64_t(1) << 31)) throw std::invalid_argument("gemm_mma: C has too many 128 x 128 tiles");
  for (std::int64_t entry0 = 0; entry0 < p.batch; entry0 += kMaxGridY) {
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(p.batch - entry0, kMaxGridY)));
    launch("gemm_mma", kernel, grid, dim3(kThreads), kSharedBytes, stream, p, a.vector, b.vector,
           static_cast<unsigned>(tiles_m), entry0);
  }
}

}  // namespace deepkern::cuda
