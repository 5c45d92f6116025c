// The tensor-core tile of gemm_mma.cu (include from .cu files only), shared with the implicit-GEMM
// convolutions (csrc/cuda/conv): what differs between them is only how a slice of A or B is
// addressed (a loader) and where a result goes (a store function).
//
// A block computes a 128 x 128 tile of C with 8 warps (2 along m x 4 along n), each warp 64 x 32
// as 4 x 4 mma tiles (m16n8k8 for TF32, m16n8k16 for BF16), FP32 accumulation. K advances in slices
// of 64 bytes per row (16 floats or 32 bf16) through a 4-stage cp.async pipeline in shared memory:
// while slice s is multiplied, slices s + 1 .. s + 3 are in flight.
//
// Each operand is seen as an MN x K matrix and kept in shared memory k-major ([mn][k]) or mn-major
// ([k][mn]). Rows are padded by 16 bytes, which puts the rows a warp reads at once (fragments,
// ldmatrix's 8 rows) in distinct banks. BF16 fragments come from ldmatrix (.trans for mn-major);
// TF32 ones from 32-bit shared loads, rounded to TF32 (cvt.rna).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gemm/gemm_device.h"
#include "cuda/launch.h"
#include "cuda/ptx.h"

namespace deepkern::cuda::mma_tile {

constexpr int kTile = 128;  // rows and columns of C per block
constexpr int kThreads = 256;
constexpr int kStages = 4;
constexpr int kOperandBytes = 10240;  // one operand's slice in shared memory, either layout (see Slice)
constexpr int kSharedBytes = kStages * 2 * kOperandBytes;

enum class Layout : int { k_major, mn_major };

// The shared-memory slice of one operand for element type T: 128 rows (mn) by kDepth (k).
template <class T>
struct Slice {
  static constexpr int kChunk = 16 / sizeof(T);    // elements per 16-byte chunk
  static constexpr int kDepth = 64 / sizeof(T);    // k per slice
  static constexpr int kKPitch = kDepth + kChunk;  // k-major: elements per mn row
  static constexpr int kMnPitch = kTile + 8;       // mn-major: elements per k row
  static_assert(kTile * kKPitch * sizeof(T) <= kOperandBytes && kDepth * kMnPitch * sizeof(T) <= kOperandBytes);

  template <Layout layout>
  __device__ static __forceinline__ int index(int mn, int k) {
    return layout == Layout::k_major ? mn * kKPitch + k : k * kMnPitch + mn;
  }
};

// Which part of a slice a thread loads: 512 chunks of 16 bytes per slice, two per thread (i = 0, 1),
// each kChunk consecutive elements along k (k-major) or along mn (mn-major).
template <class T, Layout layout>
struct Chunks {
  using S = Slice<T>;
  static constexpr int kPerRow = layout == Layout::k_major ? S::kDepth / S::kChunk : kTile / S::kChunk;
  __device__ static __forceinline__ int mn(int i) {
    const int chunk = threadIdx.x + i * kThreads;
    return layout == Layout::k_major ? chunk / kPerRow : (chunk % kPerRow) * S::kChunk;
  }
  __device__ static __forceinline__ int k(int i) {
    const int chunk = threadIdx.x + i * kThreads;
    return layout == Layout::k_major ? (chunk % kPerRow) * S::kChunk : chunk / kPerRow;
  }
};

// A thread's part of loading a strided operand's slices (gemm_device::OperandView). `vector`: the
// operand is contiguous along the chunk's axis and every chunk starts 16-byte aligned, so whole
// chunks are copied with cp.async; other chunks (tails, strided or misaligned operands) are read
// element by element. Outside the matrix the slice is zero. Slices are loaded in order from k = 0.
template <class T, Layout layout>
struct SliceLoader {
  using S = Slice<T>;
  using C = Chunks<T, layout>;

  const T* ptr[2];        // each chunk's first element in the current slice
  int inside[2];          // k-major: 1 when the chunk's row is inside the matrix, else 0; mn-major: its
                          // elements inside (0..kChunk), m/n then being contiguous (mn_stride 1)
  std::int64_t k_stride;  // the pointers advance kDepth of them per slice
  bool vector;

  __device__ __forceinline__ SliceLoader(const gemm_device::OperandView<T>& op, bool vector_chunks, std::int64_t mn0,
                                         std::int64_t mn_extent)
      : k_stride(op.k_stride), vector(vector_chunks) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const std::int64_t mn = mn0 + C::mn(i), left = mn_extent - mn;
      inside[i] = left <= 0 ? 0 : layout == Layout::k_major ? 1 : static_cast<int>(left < S::kChunk ? left : S::kChunk);
      ptr[i] = op.data + (inside[i] > 0 ? mn * op.mn_stride + C::k(i) * op.k_stride : 0);
    }
  }

  // Loads the slice at depth k0 into `s` and moves to the next one.
  __device__ __forceinline__ void load(T* s, std::int64_t k0, std::int64_t k_extent) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const std::int64_t k = k0 + C::k(i);
      T* dst = s + S::template index<layout>(C::mn(i), C::k(i));
      const bool any = inside[i] > 0 && k < k_extent;
      const bool whole = layout == Layout::k_major ? k + S::kChunk <= k_extent : inside[i] == S::kChunk;
      if (!any || (vector && whole)) {  // a whole chunk, or nothing: zero-filled without reading
        ptx::cp_async_16(dst, ptr[i], any);
      } else {
#pragma unroll
        for (int j = 0; j < S::kChunk; ++j) {
          const bool ok = layout == Layout::k_major ? k + j < k_extent : j < inside[i];
          dst[j] = ok ? ptr[i][layout == Layout::k_major ? j * k_stride : j] : gemm_device::from_float<T>(0.0f);
        }
      }
      ptr[i] += S::kDepth * k_stride;
    }
  }
};

// The warp's fragments of one k step (8 for TF32, 16 for BF16) at depth k within the slice: a[i]
// for its 4 m16 tiles, b[j] for its 4 n8 tiles; layouts as ptx::mma_*.
template <class T, Layout a_layout, Layout b_layout>
struct Fragments;

template <Layout a_layout, Layout b_layout>
struct Fragments<float, a_layout, b_layout> {
  std::uint32_t a[4][4], b[4][2];
  __device__ __forceinline__ void load(const float* sa, const float* sb, int m_base, int n_base, int k) {
    using S = Slice<float>;
    const int group = threadIdx.x % 32 / 4, quad = threadIdx.x % 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        a[i][r] = ptx::to_tf32(sa[S::index<a_layout>(m_base + i * 16 + group + (r % 2) * 8, k + quad + (r / 2) * 4)]);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r)
        b[j][r] = ptx::to_tf32(sb[S::index<b_layout>(n_base + j * 8 + group, k + quad + r * 4)]);
  }
  __device__ __forceinline__ void multiply(float (&acc)[4][4][4]) const {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) ptx::mma_tf32_m16n8k8(acc[i][j], a[i], b[j]);
  }
};

// Four 8x8 bf16 matrices with ldmatrix: matrix q (lanes 8q..8q+7 give its rows) covers mn
// [mn + 8 * mn_sel(q), +8) x k [k + 8 * k_sel(q), +8); k-major rows are mn, mn-major rows are k
// (then .trans gives the fragment's element order).
template <Layout layout>
__device__ __forceinline__ void ldmatrix_quad(std::uint32_t (&r)[4], const __nv_bfloat16* s, int mn, int k,
                                              bool mn_sel_is_low_bit) {
  const int lane = threadIdx.x % 32, q = lane / 8, row = lane % 8;
  const int mn_sel = mn_sel_is_low_bit ? q % 2 : q / 2, k_sel = mn_sel_is_low_bit ? q / 2 : q % 2;
  using S = Slice<__nv_bfloat16>;
  if constexpr (layout == Layout::k_major) {
    ptx::ldmatrix_x4(r, s + S::index<layout>(mn + 8 * mn_sel + row, k + 8 * k_sel));
  } else {
    ptx::ldmatrix_x4_trans(r, s + S::index<layout>(mn + 8 * mn_sel, k + 8 * k_sel + row));
  }
}

template <Layout a_layout, Layout b_layout>
struct Fragments<__nv_bfloat16, a_layout, b_layout> {
  std::uint32_t a[4][4], b[4][2];
  __device__ __forceinline__ void load(const __nv_bfloat16* sa, const __nv_bfloat16* sb, int m_base, int n_base,
                                       int k) {
    // A: matrices (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a[0..3].
#pragma unroll
    for (int i = 0; i < 4; ++i) ldmatrix_quad<a_layout>(a[i], sa, m_base + i * 16, k, true);
    // B, two n8 tiles at once: (n 0-7, k 0-7), (0-7, 8-15) = b[j], then (8-15, ...) = b[j + 1].
#pragma unroll
    for (int j = 0; j < 4; j += 2) {
      std::uint32_t r[4];
      ldmatrix_quad<b_layout>(r, sb, n_base + j * 8, k, false);
      b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
    }
  }
  __device__ __forceinline__ void multiply(float (&acc)[4][4][4]) const {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) ptx::mma_bf16_m16n8k16(acc[i][j], a[i], b[j]);
  }
};

// The block's tile product over k in [k_begin, k_end): acc (this thread's fragments, zeroed here)
// = A-slices x B-slices, where a.load(s, k0, k_end) and b.load(...) fill the slice at depth k0 in
// `a_layout` / `b_layout` (called once per slice, k0 = k_begin, k_begin + kDepth, ... in order) and
// may issue cp.async. Needs kSharedBytes of dynamic shared memory and all kThreads threads.
template <class T, Layout a_layout, Layout b_layout, class ALoader, class BLoader>
__device__ __forceinline__ void multiply_tile(ALoader& a, BLoader& b, std::int64_t k_begin, std::int64_t k_end,
                                              float (&acc)[4][4][4]) {
  using S = Slice<T>;
  constexpr int kStep = sizeof(T) == 4 ? 8 : 16;  // k per mma
  char* shared = dynamic_shared_memory<char>();
  auto slice = [&](int stage, int operand) {
    return reinterpret_cast<T*>(shared + (2 * stage + operand) * kOperandBytes);
  };
  const std::int64_t k_tiles = k_end > k_begin ? (k_end - k_begin + S::kDepth - 1) / S::kDepth : 0;
  const int warp = threadIdx.x / 32, m_base = (warp % 2) * 64, n_base = (warp / 2) * 32;
  auto load = [&](std::int64_t kt) {  // slices are loaded in order, kt = 0, 1, ...
    const int stage = static_cast<int>(kt % kStages);
    a.load(slice(stage, 0), k_begin + kt * S::kDepth, k_end);
    b.load(slice(stage, 1), k_begin + kt * S::kDepth, k_end);
  };

#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

  for (int s = 0; s < kStages - 1; ++s) {  // one commit per slice, empty past the end, so the
    if (s < k_tiles) load(s);              // wait below always leaves kStages - 2 in flight
    ptx::cp_async_commit();
  }
  for (std::int64_t kt = 0; kt < k_tiles; ++kt) {
    ptx::cp_async_wait<kStages - 2>();  // slice kt has landed (this thread's part)
    __syncthreads();                    // everyone's part; and slice kt - 1's buffer is free
    if (kt + kStages - 1 < k_tiles) load(kt + kStages - 1);
    ptx::cp_async_commit();
    const int stage = static_cast<int>(kt % kStages);
    const T* sa = slice(stage, 0);
    const T* sb = slice(stage, 1);
#pragma unroll
    for (int k = 0; k < S::kDepth; k += kStep) {
      Fragments<T, a_layout, b_layout> f;
      f.load(sa, sb, m_base, n_base, k);
      f.multiply(acc);
    }
  }
  ptx::cp_async_wait<0>();
}

// Calls store(row, col, value) for each of this thread's results of multiply_tile, row and col
// within the block's 128 x 128 tile.
template <class Store>
__device__ __forceinline__ void for_each_result(const float (&acc)[4][4][4], Store&& store) {
  const int warp = threadIdx.x / 32, m_base = (warp % 2) * 64, n_base = (warp / 2) * 32;
  const int group = threadIdx.x % 32 / 4, quad = threadIdx.x % 4;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        store(m_base + i * 16 + group + (r / 2) * 8, n_base + j * 8 + quad * 2 + r % 2, acc[i][j][r]);
}

}  // namespace deepkern::cuda::mma_tile
