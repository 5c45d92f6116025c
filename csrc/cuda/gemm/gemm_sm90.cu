// The Hopper GEMM (sm_90a): TMA loads into a ring of shared-memory stages, wgmma on the tensor
// cores, warp-specialised and persistent. FP32 accumulation on BF16 inputs (bf16 output; any
// layout TMA can read) or on float32 data read as TF32 (float32 output; A and B K-major only,
// the one layout wgmma takes for 32-bit inputs).
//
//   block: 384 threads = warpgroup 0 (producer: one thread issues TMA loads, the warpgroup keeps 40
//          registers per thread) + warpgroups 1 and 2 (consumers: each computes 64 x 256 of the
//          128 x 256 tile with m64n256 wgmma, 232 registers per thread)
//   ring:  4 stages of A 128 x BK (16 KiB) + B BK x 256 (32 KiB), BK = 128 bytes of K (64 bf16,
//          32 float32), 128-byte swizzled; stage s is
//          guarded by full[s] (the producer's expect_tx arrival plus TMA's bytes) and empty[s]
//          (one arrival per consumer warp once its wgmma reading s are complete)
//   grid:  one block per SM, tiles visited in a grouped order (8 tile rows share B's columns in L2)
//   epilogue from the accumulators: alpha, beta * C, bias, ReLU, masked bf16 stores with C's strides
//
// A and B reach TMA as 3-D tensors (inner dim, outer dim, batch): the inner dim is the contiguous
// one (K for a K-major operand, M or N otherwise; wgmma transposes MN-major tiles itself), matrix
// i of a batch starts batch_stride * i elements after matrix 0, and K tails read TMA's zero fill.
#include <cuda.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "cuda/check.h"
#include "cuda/gemm/gemm.h"
#include "cuda/gemm/sm90_ptx.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

constexpr int kBlockM = 128, kBlockN = 256, kStages = 4;
constexpr int kRowBytes = 128;                     // K per stage: one 128-byte swizzle row
constexpr int kGroupM = 8;                         // tile rows per group of the tile order
constexpr int kThreads = 384;                      // producer + two consumer warpgroups
constexpr int kStageABytes = kBlockM * kRowBytes;  // 16 KiB
constexpr int kStageBBytes = kBlockN * kRowBytes;  // 32 KiB
constexpr int kBoxBytes = 64 * kRowBytes;          // an MN-major box: 64 k rows of 64 bf16 (8 KiB)
constexpr int kSharedBytes = kStages * (kStageABytes + kStageBBytes) + 2 * kStages * 8 + 1024;  // + align slack
// Problems with fewer output elements than this (m * n * batch) are left to the sm_80 kernels:
// below one 128 x 128 tile the descriptor set-up and the persistent block's fixed costs dominate.
constexpr std::int64_t kMinOutputElements = 128 * 128;

// The element type's part: bf16 (BF16 wgmma, both majors) or float (TF32 wgmma, K-major only).
template <typename T>
struct Element;
template <>
struct Element<__nv_bfloat16> {
  static constexpr int kBlockK = kRowBytes / 2;  // 64
  static constexpr CUtensorMapDataType kTmaType = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  __device__ static float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  __device__ static void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
  __device__ static void store2(__nv_bfloat16* p, float v0, float v1) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(v0, v1);
  }
  // One k16 step: wgmma's own K.
  template <int TransA, int TransB>
  __device__ static void mma(float (&d)[128], std::uint64_t da, std::uint64_t db) {
    sm90::wgmma_m64n256k16_bf16<TransA, TransB>(d, da, db);
  }
};
template <>
struct Element<float> {
  static constexpr int kBlockK = kRowBytes / 4;  // 32
  static constexpr CUtensorMapDataType kTmaType = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  __device__ static float load(const float* p) { return *p; }
  __device__ static void store(float* p, float v) { *p = v; }
  __device__ static void store2(float* p, float v0, float v1) { *reinterpret_cast<float2*>(p) = make_float2(v0, v1); }
  template <int TransA, int TransB>  // always 0, 0
  __device__ static void mma(float (&d)[128], std::uint64_t da, std::uint64_t db) {
    static_assert(TransA == 0 && TransB == 0, "TF32 wgmma takes K-major tiles only");
    sm90::wgmma_m64n256k8_tf32(d, da, db);
  }
};

// What the kernel needs besides the two tensor maps; T is the element type of A, B, C and bias.
template <typename T>
struct Sm90Params {
  int m, n, k, batch;
  int tiles_m, tiles_n, k_blocks;
  int a_batched, b_batched;  // 1: the map's batch coordinate is the matrix index; 0: always 0
  T* c;
  std::int64_t c_row_stride, c_col_stride;
  const std::int64_t* c_offsets;  // device; nullptr: all 0
  float alpha, beta;
  const T* bias;
  int bias_axis;  // BiasAxis as int
  int relu;
};

// Tile `t` of the persistent order: (batch, tile row, tile column), grouped by kGroupM tile rows.
template <typename T>
__device__ __forceinline__ void tile_coordinates(const Sm90Params<T>& p, int t, int* b, int* tm, int* tn) {
  const int per_matrix = p.tiles_m * p.tiles_n;
  *b = t / per_matrix;
  const int r = t - *b * per_matrix;
  const int group_size = kGroupM * p.tiles_n;
  const int first_m = (r / group_size) * kGroupM;
  const int rows = min(p.tiles_m - first_m, kGroupM);
  *tm = first_m + (r % group_size) % rows;
  *tn = (r % group_size) / rows;
}

// Producer: one thread walks the tiles and their k blocks, waiting for a free stage, then loading
// A's and B's boxes into it. AMajorM/BMajorN: the operand's contiguous dim is M / N (else K).
template <typename T, bool AMajorM, bool BMajorN>
__device__ void produce(const Sm90Params<T>& p, const CUtensorMap* map_a, const CUtensorMap* map_b,
                        unsigned char* a_ring, unsigned char* b_ring, std::uint64_t* full, std::uint64_t* empty) {
  const int tiles = p.tiles_m * p.tiles_n * p.batch;
  std::uint32_t it = 0;
  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    int b, tm, tn;
    tile_coordinates(p, t, &b, &tm, &tn);
    const int m0 = tm * kBlockM, n0 = tn * kBlockN;
    const int ba = p.a_batched ? b : 0, bb = p.b_batched ? b : 0;
    for (int kb = 0; kb < p.k_blocks; ++kb, ++it) {
      const int s = it % kStages;
      sm90::mbarrier_wait(&empty[s], ((it / kStages) & 1) ^ 1);
      sm90::mbarrier_arrive_expect_tx(&full[s], kStageABytes + kStageBBytes);
      unsigned char* a = a_ring + s * kStageABytes;
      unsigned char* bt = b_ring + s * kStageBBytes;
      const int k0 = kb * Element<T>::kBlockK;
      if (AMajorM) {  // (bf16) two 64 (m) x 64 (k) boxes, one per consumer
        for (int h = 0; h < 2; ++h) sm90::tma_load_3d(a + h * kBoxBytes, map_a, &full[s], m0 + 64 * h, k0, ba);
      } else {  // one 128 (m) x BK (k) box
        sm90::tma_load_3d(a, map_a, &full[s], k0, m0, ba);
      }
      if (BMajorN) {  // (bf16) four 64 (n) x 64 (k) boxes
        for (int q = 0; q < 4; ++q) sm90::tma_load_3d(bt + q * kBoxBytes, map_b, &full[s], n0 + 64 * q, k0, bb);
      } else {  // one 256 (n) x BK (k) box
        sm90::tma_load_3d(bt, map_b, &full[s], k0, n0, bb);
      }
    }
  }
}

// The epilogue's value at (row, col) of matrix `c_matrix`: relu?(alpha * acc + beta * C + bias).
template <typename T>
__device__ __forceinline__ float finish(const Sm90Params<T>& p, const T* c_matrix, int row, int col, float acc) {
  using E = Element<T>;
  float v = p.alpha * acc;
  if (p.beta != 0.0f) v += p.beta * E::load(c_matrix + row * p.c_row_stride + col * p.c_col_stride);
  if (p.bias_axis == static_cast<int>(BiasAxis::rows)) v += E::load(p.bias + row);
  if (p.bias_axis == static_cast<int>(BiasAxis::cols)) v += E::load(p.bias + col);
  return p.relu ? fmaxf(v, 0.0f) : v;
}

// Writes the consumer's 64 x 256 accumulators (wgmma's D layout, see sm90_ptx.h) at rows
// row0.., columns col0.. of matrix `b`, skipping elements outside m x n.
template <typename T>
__device__ void store_tile(const Sm90Params<T>& p, const float (&acc)[128], int b, int row0, int col0) {
  using E = Element<T>;
  T* c = p.c + (p.c_offsets ? p.c_offsets[b] : 0);
  const int lane = threadIdx.x % 32, warp = (threadIdx.x / 32) % 4;
  const int r_base = row0 + 16 * warp + lane / 4;
  const int c_base = col0 + 2 * (lane % 4);
#pragma unroll
  for (int j = 0; j < 32; ++j) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = r_base + 8 * half, col = c_base + 8 * j;
      if (row >= p.m) continue;
      const float v0 = acc[4 * j + 2 * half], v1 = acc[4 * j + 2 * half + 1];
      T* out = c + row * p.c_row_stride + col * p.c_col_stride;
      if (col + 1 < p.n && p.c_col_stride == 1 && reinterpret_cast<std::uintptr_t>(out) % (2 * sizeof(T)) == 0) {
        E::store2(out, finish(p, c, row, col, v0), finish(p, c, row, col + 1, v1));
      } else {
        if (col < p.n) E::store(out, finish(p, c, row, col, v0));
        if (col + 1 < p.n) E::store(out + p.c_col_stride, finish(p, c, row, col + 1, v1));
      }
    }
  }
}

// Consumer warpgroup `wg` (0 or 1): rows 64 wg .. 64 wg + 63 of each tile, all k blocks, then the
// epilogue. Stage s is released (empty[s]) once the wgmma that read it have completed: the group
// of block kb is waited for while block kb + 1 computes.
template <typename T, bool AMajorM, bool BMajorN>
__device__ void consume(const Sm90Params<T>& p, int wg, unsigned char* a_ring, unsigned char* b_ring,
                        std::uint64_t* full, std::uint64_t* empty) {
  const int tiles = p.tiles_m * p.tiles_n * p.batch;
  const bool signals = threadIdx.x % 32 == 0;  // one arrival per warp on empty[s]
  // This warpgroup's 64 rows of A: 64 lines of a K-major tile or one M-major box, 8 KiB either way.
  const std::uint32_t a_base = sm90::shared_address(a_ring) + wg * 64 * kRowBytes;
  const std::uint32_t b_base = sm90::shared_address(b_ring);
  std::uint32_t it = 0;
  float acc[128];
  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    int b, tm, tn;
    tile_coordinates(p, t, &b, &tm, &tn);
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.0f;
    sm90::fence_accumulators(acc);
    for (int kb = 0; kb < p.k_blocks; ++kb, ++it) {
      const int s = it % kStages;
      sm90::mbarrier_wait(&full[s], (it / kStages) & 1);
      sm90::wgmma_fence();
      const std::uint32_t a_stage = a_base + s * kStageABytes, b_stage = b_base + s * kStageBBytes;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        // One wgmma's K is 32 bytes: along the swizzled 128-byte rows of a K-major tile, or 16 k rows
        // of 128 bytes (bf16 only) of an MN-major one.
        const std::uint64_t da = AMajorM ? sm90::smem_descriptor(a_stage + kk * 2048, kBoxBytes, 1024)
                                         : sm90::smem_descriptor(a_stage + kk * 32, 16, 1024);
        const std::uint64_t db = BMajorN ? sm90::smem_descriptor(b_stage + kk * 2048, kBoxBytes, 1024)
                                         : sm90::smem_descriptor(b_stage + kk * 32, 16, 1024);
        Element<T>::template mma<AMajorM ? 1 : 0, BMajorN ? 1 : 0>(acc, da, db);
      }
      sm90::wgmma_commit();
      sm90::wgmma_wait<1>();
      if (kb > 0 && signals) sm90::mbarrier_arrive(&empty[(it - 1) % kStages]);
    }
    sm90::wgmma_wait<0>();
    sm90::fence_accumulators(acc);
    if (signals) sm90::mbarrier_arrive(&empty[(it - 1) % kStages]);
    store_tile(p, acc, b, tm * kBlockM + 64 * wg, tn * kBlockN);
  }
}

template <typename T, bool AMajorM, bool BMajorN>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_sm90_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                     const Sm90Params<T> p) {
  // 128-byte swizzle atoms must start on 1024-byte boundaries (shared-state-space addresses).
  unsigned char* raw = dynamic_shared_memory<unsigned char>();
  unsigned char* base = raw + ((1024 - sm90::shared_address(raw) % 1024) % 1024);
  unsigned char* a_ring = base;
  unsigned char* b_ring = base + kStages * kStageABytes;
  auto* full = reinterpret_cast<std::uint64_t*>(b_ring + kStages * kStageBBytes);
  std::uint64_t* empty = full + kStages;
  if (threadIdx.x == 0) {
    sm90::prefetch_tensor_map(&map_a);
    sm90::prefetch_tensor_map(&map_b);
    for (int s = 0; s < kStages; ++s) {
      sm90::mbarrier_init(&full[s], 1);
      sm90::mbarrier_init(&empty[s], 8);  // the 8 consumer warps
    }
    sm90::fence_barrier_init();
  }
  __syncthreads();
  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    sm90::release_registers<40>();
    if (threadIdx.x == 0) produce<T, AMajorM, BMajorN>(p, &map_a, &map_b, a_ring, b_ring, full, empty);
  } else {
    sm90::acquire_registers<232>();
    consume<T, AMajorM, BMajorN>(p, wg - 1, a_ring, b_ring, full, empty);
  }
}

// ---- host side ----------------------------------------------------------------------------------

// cuTensorMapEncodeTiled from the driver the runtime loaded (no link against libcuda); nullptr
// when the driver does not provide it.
PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(pointer);
  }();
  return fn;
}

// The SM count of `device` when it is an sm_90 GPU (compute capability 9.0, where sm_90a code
// runs), 0 otherwise; queried once per device.
int sm90_multiprocessors(int device) {
  constexpr int kMaxDevices = 64;
  static std::array<std::atomic<int>, kMaxDevices> cache{};  // 0 unknown, -1 not sm_90, else SMs
  if (device < 0 || device >= kMaxDevices) return 0;
  int known = cache[device].load(std::memory_order_relaxed);
  if (known == 0) {
    int major = 0, minor = 0, sms = 0;
    DK_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    DK_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    DK_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    known = (major == 9 && minor == 0 && sms > 0) ? sms : -1;
    cache[device].store(known, std::memory_order_relaxed);
  }
  return known > 0 ? known : 0;
}

// One operand as TMA sees it: `inner` contiguous elements per line, `outer` lines `outer_stride`
// elements apart, `batch` matrices `batch_stride` elements apart (0: one matrix shared by all), of
// `itemsize` bytes each.
struct TmaOperand {
  const void* base = nullptr;
  std::int64_t itemsize = 0, inner = 0, outer = 0, outer_stride = 0, batch_stride = 0;
};

// Whether a rows x cols operand with the given strides has its columns (`inner_is_cols`) or its
// rows as a TMA-readable contiguous dim; fills `out` (without base and batch). A dim of extent 1
// takes any stride.
bool tma_view(std::int64_t rows, std::int64_t cols, std::int64_t row_stride, std::int64_t col_stride,
              std::int64_t itemsize, bool inner_is_cols, TmaOperand* out) {
  const std::int64_t inner = inner_is_cols ? cols : rows, outer = inner_is_cols ? rows : cols;
  const std::int64_t inner_stride = inner_is_cols ? col_stride : row_stride;
  std::int64_t outer_stride = inner_is_cols ? row_stride : col_stride;
  const std::int64_t per_16_bytes = 16 / itemsize;
  if (inner_stride != 1 && inner != 1) return false;
  if (outer == 1) outer_stride = (inner + per_16_bytes - 1) / per_16_bytes * per_16_bytes;
  if (outer_stride <= 0 || outer_stride % per_16_bytes != 0) return false;  // a positive multiple of 16 bytes
  out->itemsize = itemsize;
  out->inner = inner;
  out->outer = outer;
  out->outer_stride = outer_stride;
  return true;
}

// Fills base and batch_stride from the operand (the caller's strided_batch; the offsets are never
// read back): false when the batch is not evenly strided, or by a stride TMA cannot take.
bool tma_batch(const GemmOperand& operand, TmaOperand* out) {
  if (operand.offsets != nullptr && !operand.strided_batch) return false;
  const std::int64_t stride = operand.offsets != nullptr ? operand.batch_stride : 0;
  if (stride < 0 || (stride * out->itemsize) % 16 != 0) return false;
  out->base = static_cast<const char*>(operand.data);
  out->batch_stride = stride;
  return reinterpret_cast<std::uintptr_t>(out->base) % 16 == 0;
}

// The 3-D tensor map of `operand` with boxes of `box_inner` x `box_outer` elements of `type`,
// 128-byte swizzled, zero fill outside; false when the driver refuses it.
bool encode(const TmaOperand& operand, CUtensorMapDataType type, std::int64_t batch, int box_inner, int box_outer,
            CUtensorMap* map) {
  const PFN_cuTensorMapEncodeTiled_v12000 fn = encode_tiled();
  if (fn == nullptr) return false;
  const bool batched = operand.batch_stride > 0;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(operand.inner), static_cast<cuuint64_t>(operand.outer),
                              static_cast<cuuint64_t>(batched ? batch : 1)};
  const cuuint64_t outer_bytes = static_cast<cuuint64_t>(operand.outer_stride * operand.itemsize);
  const cuuint64_t strides[2] = {outer_bytes, batched ? static_cast<cuuint64_t>(operand.batch_stride * operand.itemsize)
                                                      : outer_bytes * static_cast<cuuint64_t>(operand.outer)};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_inner), static_cast<cuuint32_t>(box_outer), 1};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  return fn(map, type, 3, const_cast<void*>(operand.base), dims, strides, box, element_strides,
            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Describes A and B for TMA, fills the parameters and launches the kernel for T; false (nothing
// launched) when TMA cannot read the operands or, for float (TF32), they are not both K-major.
template <typename T>
bool run(const GemmProblem& q, int sms, cudaStream_t stream) {
  constexpr std::int64_t itemsize = sizeof(T);
  constexpr bool kMnMajor = sizeof(T) == 2;  // wgmma transposes 16-bit tiles only
  // A (m x k) K-major when its columns are contiguous, else M-major; B (k x n) K-major when its
  // rows are contiguous, else N-major.
  TmaOperand a, b;
  const bool a_k_major = tma_view(q.m, q.k, q.a.row_stride, q.a.col_stride, itemsize, true, &a);
  if (!a_k_major && !(kMnMajor && tma_view(q.m, q.k, q.a.row_stride, q.a.col_stride, itemsize, false, &a))) {
    return false;
  }
  const bool b_k_major = tma_view(q.k, q.n, q.b.row_stride, q.b.col_stride, itemsize, false, &b);
  if (!b_k_major && !(kMnMajor && tma_view(q.k, q.n, q.b.row_stride, q.b.col_stride, itemsize, true, &b))) {
    return false;
  }
  if (!tma_batch(q.a, &a) || !tma_batch(q.b, &b)) return false;
  // Boxes: a K-major tile in one load (128 or 256 lines of 128 bytes), an MN-major one in 64 x 64 boxes.
  CUtensorMap map_a, map_b;
  if (!encode(a, Element<T>::kTmaType, q.batch, a_k_major ? Element<T>::kBlockK : 64,
              a_k_major ? kBlockM : Element<T>::kBlockK, &map_a) ||
      !encode(b, Element<T>::kTmaType, q.batch, b_k_major ? Element<T>::kBlockK : 64,
              b_k_major ? kBlockN : Element<T>::kBlockK, &map_b)) {
    return false;
  }

  Sm90Params<T> p{};
  p.m = static_cast<int>(q.m);
  p.n = static_cast<int>(q.n);
  p.k = static_cast<int>(q.k);
  p.batch = static_cast<int>(q.batch);
  p.tiles_m = static_cast<int>((q.m + kBlockM - 1) / kBlockM);
  p.tiles_n = static_cast<int>((q.n + kBlockN - 1) / kBlockN);
  p.k_blocks = static_cast<int>((q.k + Element<T>::kBlockK - 1) / Element<T>::kBlockK);
  p.a_batched = a.batch_stride > 0;
  p.b_batched = b.batch_stride > 0;
  p.c = static_cast<T*>(q.c);
  p.c_row_stride = q.c_row_stride;
  p.c_col_stride = q.c_col_stride;
  p.c_offsets = q.c_offsets;
  p.alpha = q.alpha;
  p.beta = q.beta;
  p.bias = q.bias_axis == BiasAxis::none ? nullptr : static_cast<const T*>(q.bias);
  p.bias_axis = static_cast<int>(q.bias_axis);
  p.relu = q.relu;
  const dim3 grid(std::min(p.tiles_m * p.tiles_n * p.batch, sms));
  void (*kernel)(CUtensorMap, CUtensorMap, Sm90Params<T>) = gemm_sm90_kernel<T, false, false>;
  if constexpr (kMnMajor) {
    if (!a_k_major)
      kernel = b_k_major ? gemm_sm90_kernel<T, true, false> : gemm_sm90_kernel<T, true, true>;
    else if (!b_k_major)
      kernel = gemm_sm90_kernel<T, false, true>;
  }
  launch("gemm_sm90", kernel, grid, dim3(kThreads), kSharedBytes, stream, map_a, map_b, p);
  return true;
}

}  // namespace

bool gemm_sm90(const GemmProblem& problem, cudaStream_t stream) {
  const GemmProblem& q = problem;
  const bool bf16 = q.precision == GemmPrecision::bf16 && q.dtype == DType::bfloat16;
  const bool tf32 = q.precision == GemmPrecision::tf32 && q.dtype == DType::float32;
  if (!bf16 && !tf32) return false;
  constexpr std::int64_t kIntMax = 0x7fffffff;
  if (q.m <= 0 || q.n <= 0 || q.k <= 0 || q.batch <= 0) return false;
  if (q.m > kIntMax || q.n > kIntMax || q.k > kIntMax || q.batch > kIntMax) return false;
  if (q.m * q.n < kMinOutputElements && q.m * q.n * q.batch < kMinOutputElements) return false;
  const std::int64_t tiles = (q.m + kBlockM - 1) / kBlockM * ((q.n + kBlockN - 1) / kBlockN);
  if (tiles > kIntMax / q.batch) return false;
  int device = 0;
  DK_CUDA_CHECK(cudaGetDevice(&device));
  const int sms = sm90_multiprocessors(device);
  if (sms == 0) return false;
  return bf16 ? run<__nv_bfloat16>(q, sms, stream) : run<float>(q, sms, stream);
}

}  // namespace deepkern::cuda
