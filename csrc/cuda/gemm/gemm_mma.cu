// TF32 and BF16 GEMM on the tensor cores with mma.sync (sm_80 and later), FP32 accumulation.
//
// A block computes a 128 x 128 tile of C with 8 warps (2 along m x 4 along n), each warp 64 x 32
// as 4 x 4 mma tiles (m16n8k8 for TF32, m16n8k16 for BF16). K advances in slices of 64 bytes per
// row (16 floats or 32 bf16) through a 4-stage cp.async pipeline in shared memory: while slice s
// is multiplied, slices s + 1 .. s + 3 are in flight.
//
// Each operand is seen as an MN x K matrix (gemm_device::OperandView) and kept in shared memory in
// the layout its memory has: k-major ([mn][k], when k is contiguous; also the layout of operands
// contiguous along neither axis) or mn-major ([k][mn], when m/n is contiguous), so cp.async copies
// 16-byte chunks straight from global memory. Rows are padded by 16 bytes, which puts the rows a
// warp reads at once (fragments, ldmatrix's 8 rows) in distinct banks. BF16 fragments come from
// ldmatrix (.trans for mn-major); TF32 ones from 32-bit shared loads, rounded to TF32 (cvt.rna).
// Chunks that are not whole 16-byte-aligned runs in memory (strided operands, misaligned matrices,
// the k and mn tails) are loaded element by element with ordinary loads: slower, same results.
// The epilogue applies alpha, beta, bias and ReLU and writes float32 (TF32) or bfloat16 (BF16,
// rounded to nearest even).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "cuda/gemm/gemm.h"
#include "cuda/gemm/gemm_device.h"
#include "cuda/launch.h"
#include "cuda/ptx.h"

namespace deepkern::cuda {
namespace {

using gemm_device::kMaxGridY;
using gemm_device::OperandView;

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

// A thread's part of loading one operand's slices: 512 chunks of 16 bytes per slice, two per
// thread, each kChunk consecutive elements along k (k-major) or along mn (mn-major). `vector`: the
// operand is contiguous along the chunk's axis and every chunk starts 16-byte aligned, so whole
// chunks are copied with cp.async; other chunks (tails, strided or misaligned operands) are read
// element by element. Outside the matrix the slice is zero.
template <class T, Layout layout>
struct SliceLoader {
  using S = Slice<T>;
  static constexpr int kPerRow = layout == Layout::k_major ? S::kDepth / S::kChunk : kTile / S::kChunk;

  const T* ptr[2];        // each chunk's first element in the current slice
  int inside[2];          // k-major: 1 when the chunk's row is inside the matrix, else 0; mn-major: its
                          // elements inside (0..kChunk), m/n then being contiguous (mn_stride 1)
  std::int64_t k_stride;  // the pointers advance kDepth of them per slice
  bool vector;

  __device__ static __forceinline__ int chunk_mn(int i) {
    const int chunk = threadIdx.x + i * kThreads;
    return layout == Layout::k_major ? chunk / kPerRow : (chunk % kPerRow) * S::kChunk;
  }
  __device__ static __forceinline__ int chunk_k(int i) {
    const int chunk = threadIdx.x + i * kThreads;
    return layout == Layout::k_major ? (chunk % kPerRow) * S::kChunk : chunk / kPerRow;
  }

  __device__ __forceinline__ SliceLoader(const OperandView<T>& op, bool vector_chunks, std::int64_t mn0,
                                         std::int64_t mn_extent)
      : k_stride(op.k_stride), vector(vector_chunks) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const std::int64_t mn = mn0 + chunk_mn(i), left = mn_extent - mn;
      inside[i] = left <= 0 ? 0 : layout == Layout::k_major ? 1 : static_cast<int>(left < S::kChunk ? left : S::kChunk);
      ptr[i] = op.data + (inside[i] > 0 ? mn * op.mn_stride + chunk_k(i) * op.k_stride : 0);
    }
  }

  // Loads the slice at depth k0 into `s` and moves to the next one.
  __device__ __forceinline__ void load(T* s, std::int64_t k0, std::int64_t k_extent) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const std::int64_t k = k0 + chunk_k(i);
      T* dst = s + S::template index<layout>(chunk_mn(i), chunk_k(i));
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

// Contract: T float (tf32) or __nv_bfloat16 (bf16) matching problem.dtype; an operand whose
// `vector` flag is set is contiguous along its layout's chunk axis with 16-byte aligned chunks;
// kSharedBytes of dynamic shared memory; block (x, y) computes tile x (m fastest, tiles_m along m)
// of batch entry entry0 + y.
template <class T, Layout a_layout, Layout b_layout>
__global__ void __launch_bounds__(kThreads, 2)
    gemm_mma_kernel(GemmProblem p, bool a_vector, bool b_vector, unsigned tiles_m, std::int64_t entry0) {
  using S = Slice<T>;
  constexpr int kStep = sizeof(T) == 4 ? 8 : 16;  // k per mma
  char* shared = dynamic_shared_memory<char>();
  auto slice = [&](int stage, int operand) {
    return reinterpret_cast<T*>(shared + (2 * stage + operand) * kOperandBytes);
  };

  const std::int64_t entry = entry0 + blockIdx.y;
  const std::int64_t m0 = std::int64_t(blockIdx.x % tiles_m) * kTile, n0 = std::int64_t(blockIdx.x / tiles_m) * kTile;
  const std::int64_t k_tiles = (p.k + S::kDepth - 1) / S::kDepth;
  const int warp = threadIdx.x / 32, m_base = (warp % 2) * 64, n_base = (warp / 2) * 32;

  SliceLoader<T, a_layout> a_loader(gemm_device::operand_view<T>(p.a, false, entry), a_vector, m0, p.m);
  SliceLoader<T, b_layout> b_loader(gemm_device::operand_view<T>(p.b, true, entry), b_vector, n0, p.n);
  auto load = [&](std::int64_t kt) {  // slices are loaded in order, kt = 0, 1, ...
    const int stage = static_cast<int>(kt % kStages);
    a_loader.load(slice(stage, 0), kt * S::kDepth, p.k);
    b_loader.load(slice(stage, 1), kt * S::kDepth, p.k);
  };

  float acc[4][4][4];
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

  T* c = gemm_device::output_matrix<T>(p, entry);
  const int group = threadIdx.x % 32 / 4, quad = threadIdx.x % 4;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        gemm_device::store_result(p, c, m0 + m_base + i * 16 + group + (r / 2) * 8,
                                  n0 + n_base + j * 8 + quad * 2 + r % 2, acc[i][j][r]);
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
