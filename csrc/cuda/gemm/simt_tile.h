// The FP32 CUDA-core tile of gemm_simt.cu (include from .cu files only), shared with the
// implicit-GEMM convolutions (csrc/cuda/conv): what differs between them is only how a slice of A
// or B is addressed (a loader) and where a result goes (a store function).
//
// A block computes a 128 x 128 tile of C with 256 threads, each an 8 x 8 sub-tile held in
// registers (two 4 x 4 quarters 32 rows and 16 columns apart, so the warp's shared-memory reads are
// float4s that hit distinct banks or broadcast). K advances in slices of 8: both operands' slices
// are staged in shared memory k-major (sA[k][m], sB[k][n]), double-buffered, the next slice loaded
// into registers from global memory while the current one is multiplied.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemm/gemm_device.h"

namespace deepkern::cuda::simt_tile {

constexpr int kTile = 128;  // rows and columns of C per block
constexpr int kDepth = 8;   // k per shared-memory slice
constexpr int kThreads = 256;
constexpr int kPitch = kTile + 4;  // floats per shared row (16-byte multiple)

// The double-buffered slices of both operands (declare one `__shared__` per kernel).
struct SharedSlices {
  __align__(16) float a[2][kDepth * kPitch];
  __align__(16) float b[2][kDepth * kPitch];
};

// How a slice of an operand comes from global memory.
enum class Load : int {
  k_vector,   // contiguous along k (k_stride 1), 16-byte aligned rows: float4 = 4 consecutive k
  mn_vector,  // contiguous along m/n (mn_stride 1), aligned: float4 = 4 consecutive rows
  scalar,     // any strides (or any addressing): one element at a time
};

// Which elements of a 128 x 8 slice (rows mn, depth k) this thread loads: 4 of them, from (mn, k)
// on, 1 apart along k (k_vector), along mn (mn_vector) or kScalarStep apart along k (scalar).
constexpr int kScalarStep = kThreads / kTile;
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

// Stores a thread's four values (see thread_mn/thread_k) into the k-major slice s[k][mn].
template <Load mode>
__device__ __forceinline__ void stash(float* s, const float (&v)[4]) {
  const int mn = thread_mn<mode>(), k = thread_k<mode>();
  if constexpr (mode == Load::mn_vector) {
    *reinterpret_cast<float4*>(s + k * kPitch + mn) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    constexpr int dk = mode == Load::k_vector ? 1 : kScalarStep;
#pragma unroll
    for (int j = 0; j < 4; ++j) s[(k + j * dk) * kPitch + mn] = v[j];
  }
}

// A thread's walk along k through a strided operand (gemm_device::OperandView) of one tile, from
// k = 0: where its elements of the current slice are, and how many of their rows lie inside.
template <Load mode>
struct StridedLoader {
  const float* ptr;       // the thread's first element of the current slice
  std::int64_t k_stride;  // of the operand (the step between slices is kDepth of them)
  int rows;               // rows of the thread's elements inside the matrix: 0..4 for mn_vector, else 0..1

  __device__ __forceinline__ StridedLoader(const gemm_device::OperandView<float>& op, std::int64_t mn0,
                                           std::int64_t mn_extent) {
    const std::int64_t mn = mn0 + thread_mn<mode>();
    const std::int64_t inside = mn_extent - mn;
    rows = inside <= 0 ? 0 : mode == Load::mn_vector ? static_cast<int>(inside < 4 ? inside : 4) : 1;
    ptr = op.data + (rows > 0 ? mn * op.mn_stride + thread_k<mode>() * op.k_stride : 0);
    k_stride = op.k_stride;
  }

  // The thread's four values of the slice at depth k0 (zero outside the matrix), then the walk
  // moved to the next slice.
  __device__ __forceinline__ void fetch(std::int64_t k0, std::int64_t k_extent, float (&v)[4]) {
    const std::int64_t k = k0 + thread_k<mode>();
    if constexpr (mode == Load::k_vector) {
      if (rows > 0 && k + 4 <= k_extent) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(ptr));
        v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = rows > 0 && k + j < k_extent ? __ldg(ptr + j) : 0.0f;
      }
      ptr += kDepth;
    } else if constexpr (mode == Load::mn_vector) {
      if (rows == 4 && k < k_extent) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(ptr));
        v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = j < rows && k < k_extent ? __ldg(ptr + j) : 0.0f;
      }
      ptr += kDepth * k_stride;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        v[j] = rows > 0 && k + j * kScalarStep < k_extent ? __ldg(ptr + j * kScalarStep * k_stride) : 0.0f;
      ptr += kDepth * k_stride;
    }
  }
  __device__ __forceinline__ void stash(float* s, const float (&v)[4]) const { simt_tile::stash<mode>(s, v); }
};

// The block's tile product over k in [k_begin, k_end): acc (this thread's 8 x 8, zeroed here) =
// A-slices x B-slices, where a.fetch(k0, k_end, v) / a.stash(s, v) (and b's) bring the slice at
// depth k0 into registers and then into shared memory (fetch called once per slice, k0 = k_begin,
// k_begin + kDepth, ... in order). Needs all kThreads threads.
template <class ALoader, class BLoader>
__device__ __forceinline__ void multiply_tile(ALoader& a, BLoader& b, std::int64_t k_begin, std::int64_t k_end,
                                              SharedSlices& shared, float (&acc)[8][8]) {
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  // Warps 2 (m) x 4 (n), 64 x 32 each; lanes 8 (m) x 4 (n).
  const int row_base = (warp % 2) * 64 + (lane % 8) * 4;
  const int col_base = (warp / 2) * 32 + (lane / 8) * 4;
  const std::int64_t k_tiles = k_end > k_begin ? (k_end - k_begin + kDepth - 1) / kDepth : 0;
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  float va[4], vb[4];
  if (k_tiles > 0) {
    a.fetch(k_begin, k_end, va);
    b.fetch(k_begin, k_end, vb);
    a.stash(shared.a[0], va);
    b.stash(shared.b[0], vb);
  }
  __syncthreads();
  for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
    const int cur = static_cast<int>(kt & 1);
    const bool more = kt + 1 < k_tiles;
    if (more) {  // the next slice travels from global memory while this one is multiplied
      a.fetch(k_begin + (kt + 1) * kDepth, k_end, va);
      b.fetch(k_begin + (kt + 1) * kDepth, k_end, vb);
    }
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      const float* ra = shared.a[cur] + kk * kPitch + row_base;
      const float* rb = shared.b[cur] + kk * kPitch + col_base;
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
      a.stash(shared.a[cur ^ 1], va);
      b.stash(shared.b[cur ^ 1], vb);
    }
    __syncthreads();
  }
}

// Calls store(row, col, value) for each of this thread's results of multiply_tile, row and col
// within the block's 128 x 128 tile.
template <class Store>
__device__ __forceinline__ void for_each_result(const float (&acc)[8][8], Store&& store) {
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int row_base = (warp % 2) * 64 + (lane % 8) * 4;
  const int col_base = (warp / 2) * 32 + (lane / 8) * 4;
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) store(row_base + (i % 4) + (i / 4) * 32, col_base + (j % 4) + (j / 4) * 16, acc[i][j]);
}

}  // namespace deepkern::cuda::simt_tile
