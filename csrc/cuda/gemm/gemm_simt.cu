// FP32 GEMM on the CUDA cores (any architecture deepkern builds for).
//
// A block computes a 128 x 128 tile of C with 256 threads, each an 8 x 8 sub-tile held in
// registers (two 4 x 4 quarters 32 rows and 16 columns apart, so the warp's shared-memory reads are
// float4s that hit distinct banks or broadcast). K advances in slices of 8: both operands' slices
// are staged in shared memory k-major (sA[k][m], sB[k][n]), double-buffered, the next slice loaded
// into registers from global memory while the current one is multiplied. Global loads are 16 bytes
// wide when the operand is contiguous along k or along m/n and the matrix is 16-byte aligned;
// otherwise (any strides, negative or zero included) element by element. Every dimension has tails
// (zero-filled operands, guarded stores). Blocks stride over tiles and batch entries, so any grid
// size works.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "cuda/gemm/gemm.h"
#include "cuda/gemm/gemm_device.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

using gemm_device::kMaxGridY;
using gemm_device::OperandView;

constexpr int kTile = 128;  // rows and columns of C per block
constexpr int kDepth = 8;   // k per shared-memory slice
constexpr int kThreads = 256;
constexpr int kPitch = kTile + 4;  // floats per shared row (16-byte multiple)

// How a slice of an operand comes from global memory.
enum class Load : int {
  k_vector,   // contiguous along k (k_stride 1), 16-byte aligned rows: float4 = 4 consecutive k
  mn_vector,  // contiguous along m/n (mn_stride 1), aligned: float4 = 4 consecutive rows
  scalar,     // any strides: one element at a time
};

// Which elements of a 128 x 8 slice (rows mn, depth k) this thread loads: 4 of them, from (mn, k)
// on, 1 apart along k (k_vector), along mn (mn_vector) or 2 apart along k (scalar).
template <Load mode>
__device__ __forceinline__ int thread_mn() {
  const int t = threadIdx.x;
  return mode == Load::k_vector ? t / 2 : mode == Load::mn_vector ? (t % 32) * 4 : t % kTile;
}
template <Load mode>
__device__ __forceinline__ int thread_k() {
  const int t = threadIdx.x;
  return mode == Load::k_vector ? (t % 2) * 4 : mode == Load::mn_vector ? t / 32 : t / kTile;
}

// A thread's walk along k through one operand of one tile: where its elements of the current slice
// are, and how many of their rows lie inside the matrix.
struct Cursor {
  const float* ptr;       // the thread's first element of the current slice
  std::int64_t k_stride;  // of the operand (the step between slices is kDepth of them)
  int rows;               // rows of the thread's elements inside the matrix: 0..4 for mn_vector, else 0..1
};

template <Load mode>
__device__ __forceinline__ Cursor start(const OperandView<float>& op, std::int64_t mn0, std::int64_t mn_extent) {
  const std::int64_t mn = mn0 + thread_mn<mode>();
  const std::int64_t inside = mn_extent - mn;
  const int rows = inside <= 0 ? 0 : mode == Load::mn_vector ? static_cast<int>(inside < 4 ? inside : 4) : 1;
  return {op.data + (rows > 0 ? mn * op.mn_stride + thread_k<mode>() * op.k_stride : 0), op.k_stride, rows};
}

// The thread's four values of the slice at depth k0 (zero outside the matrix), then the cursor
// moved to the next slice. Which four: see thread_mn/thread_k; stash puts them in place.
template <Load mode>
__device__ __forceinline__ void fetch(Cursor& cur, std::int64_t k0, std::int64_t k_extent, float (&v)[4]) {
  const std::int64_t k = k0 + thread_k<mode>();
  if constexpr (mode == Load::k_vector) {
    if (cur.rows > 0 && k + 4 <= k_extent) {
      const float4 x = __ldg(reinterpret_cast<const float4*>(cur.ptr));
      v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = cur.rows > 0 && k + j < k_extent ? __ldg(cur.ptr + j) : 0.0f;
    }
    cur.ptr += kDepth;
  } else if constexpr (mode == Load::mn_vector) {
    if (cur.rows == 4 && k < k_extent) {
      const float4 x = __ldg(reinterpret_cast<const float4*>(cur.ptr));
      v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) v[j] = j < cur.rows && k < k_extent ? __ldg(cur.ptr + j) : 0.0f;
    }
    cur.ptr += kDepth * cur.k_stride;
  } else {
    constexpr int dk = kThreads / kTile;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      v[j] = cur.rows > 0 && k + j * dk < k_extent ? __ldg(cur.ptr + j * dk * cur.k_stride) : 0.0f;
    cur.ptr += kDepth * cur.k_stride;
  }
}

// Stores the values `fetch` gave into the k-major slice s[k][mn].
template <Load mode>
__device__ __forceinline__ void stash(float* s, const float (&v)[4]) {
  const int mn = thread_mn<mode>(), k = thread_k<mode>();
  if constexpr (mode == Load::mn_vector) {
    *reinterpret_cast<float4*>(s + k * kPitch + mn) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    constexpr int dk = mode == Load::k_vector ? 1 : kThreads / kTile;
#pragma unroll
    for (int j = 0; j < 4; ++j) s[(k + j * dk) * kPitch + mn] = v[j];
  }
}

// Contract: problem.dtype float32; A and B satisfy their load modes (see operand_load); block
// (x, y) computes tile x (m fastest; tiles_m of them along m) of batch entry entry0 + y.
template <Load a_mode, Load b_mode>
__global__ void __launch_bounds__(kThreads, 2) gemm_simt_kernel(GemmProblem p, unsigned tiles_m, std::int64_t entry0) {
  __shared__ __align__(16) float sa[2][kDepth * kPitch];
  __shared__ __align__(16) float sb[2][kDepth * kPitch];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  // Warps 2 (m) x 4 (n), 64 x 32 each; lanes 8 (m) x 4 (n).
  const int row_base = (warp % 2) * 64 + (lane % 8) * 4;
  const int col_base = (warp / 2) * 32 + (lane / 8) * 4;
  const std::int64_t k_tiles = (p.k + kDepth - 1) / kDepth;

  const std::int64_t entry = entry0 + blockIdx.y;
  const std::int64_t m0 = std::int64_t(blockIdx.x % tiles_m) * kTile, n0 = std::int64_t(blockIdx.x / tiles_m) * kTile;
  Cursor a = start<a_mode>(gemm_device::operand_view<float>(p.a, false, entry), m0, p.m);
  Cursor b = start<b_mode>(gemm_device::operand_view<float>(p.b, true, entry), n0, p.n);
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  float va[4], vb[4];
  if (k_tiles > 0) {
    fetch<a_mode>(a, 0, p.k, va);
    fetch<b_mode>(b, 0, p.k, vb);
    stash<a_mode>(sa[0], va);
    stash<b_mode>(sb[0], vb);
  }
  __syncthreads();
  for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
    const int cur = static_cast<int>(kt & 1);
    const bool more = kt + 1 < k_tiles;
    if (more) {  // the next slice travels from global memory while this one is multiplied
      fetch<a_mode>(a, (kt + 1) * kDepth, p.k, va);
      fetch<b_mode>(b, (kt + 1) * kDepth, p.k, vb);
    }
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      const float* ra = sa[cur] + kk * kPitch + row_base;
      const float* rb = sb[cur] + kk * kPitch + col_base;
      const float4 a0 = *reinterpret_cast<const float4*>(ra), a1 = *reinterpret_cast<const float4*>(ra + 32);
      const float4 b0 = *reinterpret_cast<const float4*>(rb), b1 = *reinterpret_cast<const float4*>(rb + 16);
      const float fa[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float fb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
    }
    if (more) {  // the other buffer was last read before the previous barrier
      stash<a_mode>(sa[cur ^ 1], va);
      stash<b_mode>(sb[cur ^ 1], vb);
    }
    __syncthreads();
  }

  float* c = gemm_device::output_matrix<float>(p, entry);
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j)
      gemm_device::store_result(p, c, m0 + row_base + (i % 4) + (i / 4) * 32, n0 + col_base + (j % 4) + (j / 4) * 16,
                                acc[i][j]);
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
