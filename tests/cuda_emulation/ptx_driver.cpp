// Self-tests of the emulation (tests/test_cuda_emulation.py): kernels that use the PTX wrappers,
// warp shuffles, barriers and launches in ways whose results follow from the documented semantics
// alone. The mma kernels load their fragments by the per-lane coordinates written in
// csrc/cuda/ptx.h (not through ldmatrix), so a layout mistake in the emulation shows up as a wrong
// product.
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "cuda/launch.h"
#include "cuda/ptx.h"
#include "dk_emulation/driver.h"

namespace {

using deepkern::cuda::launch;
namespace ptx = deepkern::cuda::ptx;
using std::int64_t;
using std::uint32_t;

// Row-major index in a 16 x 8 accumulator tile of register i of `lane` (d[0..3] of the mma comments).
__device__ __forceinline__ int accumulator_index(unsigned lane, int i) {
  return static_cast<int>((lane / 4 + 8 * (i / 2)) * 8 + 2 * (lane % 4) + i % 2);
}

__device__ __forceinline__ uint32_t bf16_pair(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  uint32_t bits;
  std::memcpy(&bits, &pair, 4);
  return bits;
}

// Tile blockIdx.x: d = a @ b + c with a 16 x 8 (row-major), b 8 x 8 (k x n), c and d 16 x 8.
__global__ void mma_tf32_tile_kernel(const float* a, const float* b, const float* c, float* d) {
  a += blockIdx.x * 128, b += blockIdx.x * 64, c += blockIdx.x * 128, d += blockIdx.x * 128;
  const unsigned g = threadIdx.x / 4, q = threadIdx.x % 4;
  const uint32_t af[4] = {ptx::to_tf32(a[g * 8 + q]), ptx::to_tf32(a[(g + 8) * 8 + q]), ptx::to_tf32(a[g * 8 + q + 4]),
                          ptx::to_tf32(a[(g + 8) * 8 + q + 4])};
  const uint32_t bf[2] = {ptx::to_tf32(b[q * 8 + g]), ptx::to_tf32(b[(q + 4) * 8 + g])};
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = c[accumulator_index(threadIdx.x, i)];
  ptx::mma_tf32_m16n8k8(acc, af, bf);
  for (int i = 0; i < 4; ++i) d[accumulator_index(threadIdx.x, i)] = acc[i];
}

// Tile blockIdx.x: d = a @ b + c with a 16 x 16 (row-major), b 16 x 8 (k x n), c and d 16 x 8.
__global__ void mma_bf16_tile_kernel(const float* a, const float* b, const float* c, float* d) {
  a += blockIdx.x * 256, b += blockIdx.x * 128, c += blockIdx.x * 128, d += blockIdx.x * 128;
  const unsigned g = threadIdx.x / 4, q = threadIdx.x % 4;
  uint32_t af[4], bf[2];
  const unsigned rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * q, 2 * q, 2 * q + 8, 2 * q + 8};
  for (int i = 0; i < 4; ++i) af[i] = bf16_pair(a[rows[i] * 16 + cols[i]], a[rows[i] * 16 + cols[i] + 1]);
  for (unsigned i = 0; i < 2; ++i) bf[i] = bf16_pair(b[(2 * q + 8 * i) * 8 + g], b[(2 * q + 8 * i + 1) * 8 + g]);
  float acc[4];
  for (int i = 0; i < 4; ++i) acc[i] = c[accumulator_index(threadIdx.x, i)];
  ptx::mma_bf16_m16n8k16(acc, af, bf);
  for (int i = 0; i < 4; ++i) d[accumulator_index(threadIdx.x, i)] = acc[i];
}

// The conversions of x[i]: TF32 bits, bfloat16 bits, the bf16 pair (x[i], x[j]) as 32 bits (j = i ^ 1,
// or i when that is past the end), the bfloat16 value back as float, and the pair back as two floats.
__global__ void convert_kernel(const float* x, int64_t n, uint32_t* tf32, std::uint16_t* bf16, uint32_t* pair,
                               float* back, float* unpacked) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  tf32[i] = ptx::to_tf32(x[i]);
  const __nv_bfloat16 h = __float2bfloat16_rn(x[i]);
  std::memcpy(&bf16[i], &h, 2);
  const int64_t j = (i ^ 1) < n ? (i ^ 1) : i;
  pair[i] = bf16_pair(x[i], x[j]);
  back[i] = __bfloat162float(h);
  const float2 both = __bfloat1622float2(__floats2bfloat162_rn(x[i], x[j]));
  unpacked[2 * i] = both.x, unpacked[2 * i + 1] = both.y;
}

// Lane l gives the address of shared row rows[l] (32 rows of 8 16-bit values copied from src);
// out[l * 4 + i] = register i after ldmatrix (mode 0: x4, 1: x4.trans, 2: x2, 3: x2.trans; the
// registers an x2 does not write keep 0xdeadbeef).
__global__ void ldmatrix_kernel(const std::uint16_t* src, const int* rows, int64_t mode, uint32_t* out) {
  __shared__ __align__(16) std::uint16_t tile[32][8];
  for (unsigned i = threadIdx.x; i < 256; i += 32) tile[i / 8][i % 8] = src[i];
  __syncwarp();
  const void* row = tile[rows[threadIdx.x]];
  uint32_t r[4] = {0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef};
  uint32_t r2[2] = {0xdeadbeef, 0xdeadbeef};
  if (mode == 0) ptx::ldmatrix_x4(r, row);
  if (mode == 1) ptx::ldmatrix_x4_trans(r, row);
  if (mode == 2) ptx::ldmatrix_x2(r2, row);
  if (mode == 3) ptx::ldmatrix_x2_trans(r2, row);
  if (mode >= 2) r[0] = r2[0], r[1] = r2[1];
  for (int i = 0; i < 4; ++i) out[threadIdx.x * 4 + i] = r[i];
}

// Thread t copies 16 bytes (src[4t..4t+3], if valid16[t]) and 4 bytes (src[4n + t], if valid4[t])
// into dynamic shared memory with cp.async; out receives the 5n shared floats after the wait,
// then the shared buffer's address modulo 128. `misalign` shifts the shared destination by 4 bytes.
__global__ void cp_async_kernel(const float* src, const int* valid16, const int* valid4, float* out, int64_t misalign) {
  float* shared = deepkern::cuda::dynamic_shared_memory<float>();
  const unsigned t = threadIdx.x, n = blockDim.x;
  ptx::cp_async_16(shared + 4 * t + misalign, src + 4 * t, valid16[t] != 0);
  ptx::cp_async_4(shared + 4 * n + t, src + 4 * n + t, valid4[t] != 0);
  ptx::cp_async_commit();
  ptx::cp_async_wait<0>();
  __syncthreads();
  for (unsigned i = t; i < 5 * n; i += n) out[i] = shared[i];
  if (t == 0) out[5 * n] = static_cast<float>(reinterpret_cast<std::uintptr_t>(shared) % 128);
}

// Per thread t of the block (offset by block): the four shuffles of in[t] with argument arg[t]
// and `width`, an 8-byte xor shuffle, and two half-warp groups shuffling at once with their masks.
__global__ void shuffle_kernel(const int* in, const int* arg, int64_t width, int* out) {
  const unsigned t = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  const int v = in[t], w = static_cast<int>(width);
  const int a = arg[t];
  int* o = out + 6 * t;
  o[0] = __shfl_sync(0xffffffffu, v, a, w);
  o[1] = __shfl_xor_sync(0xffffffffu, v, a % 32, w);
  o[2] = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(a % 32), w);
  o[3] = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(a % 32), w);
  const double d = __shfl_xor_sync(0xffffffffu, 0.5 * v, 1);
  o[4] = static_cast<int>(2 * d);
  o[5] = lane < 16 ? __shfl_xor_sync(0x0000ffffu, v, 1) : __shfl_xor_sync(0xffff0000u, v, 2);
}

// Threads t >= active return at once; the others reverse in[] through shared memory, double it,
// and rotate it by one, with a barrier between each step; every thread adds 1 to count and in[t] to
// sum (atomics).
__global__ void barrier_kernel(const float* in, int64_t active, float* out, int* count, float* sum) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x, base = blockIdx.x * blockDim.x;
  if (t >= active) return;
  atomicAdd(count, 1);
  atomicAdd(sum, in[base + t]);
  s[t] = in[base + t];
  __syncthreads();
  const float v = s[active - 1 - t];
  __syncthreads();
  s[t] = 2 * v;
  __syncthreads();
  out[base + t] = s[(t + 1) % active];
}

// out[global thread id] = that id + 1 (3-D grid and block); order[block] = the position in which
// the block ran.
__global__ void index_kernel(int* out, int* order, int* counter) {
  const unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  out[block * threads + thread] = static_cast<int>(block * threads + thread + 1);
  if (thread == 0) order[block] = atomicAdd(counter, 1);
}

// One warp: c (16 x 8 float) = a (16 x k bf16 bits, row-major) @ b (k x 8 bf16 bits, row-major),
// k a multiple of 16, the way a tensor-core GEMM feeds its mma: each 16 x 16 slice of a and 16 x 8
// slice of b goes to shared memory by cp.async, a's fragments come from ldmatrix_x4 (lane l gives
// row l % 16, columns 8 (l / 16)..), b's from ldmatrix_x2_trans (lane l gives row l % 16 of b).
__global__ void ldmatrix_mma_kernel(const std::uint16_t* a, const std::uint16_t* b, int64_t k, float* c) {
  __shared__ __align__(16) std::uint16_t as[16][16];
  __shared__ __align__(16) std::uint16_t bs[16][8];
  const unsigned lane = threadIdx.x;
  float acc[4] = {0, 0, 0, 0};
  for (int64_t k0 = 0; k0 < k; k0 += 16) {
    ptx::cp_async_16(&as[lane / 2][8 * (lane % 2)], a + (lane / 2) * k + k0 + 8 * (lane % 2), true);
    if (lane < 16) ptx::cp_async_16(&bs[lane][0], b + (k0 + lane) * 8, true);
    ptx::cp_async_commit();
    ptx::cp_async_wait<0>();
    __syncwarp();
    uint32_t af[4], bf[2];
    ptx::ldmatrix_x4(af, &as[lane % 16][8 * (lane / 16)]);
    ptx::ldmatrix_x2_trans(bf, &bs[lane % 16][0]);
    ptx::mma_bf16_m16n8k16(acc, af, bf);
    __syncwarp();
  }
  for (int i = 0; i < 4; ++i) c[accumulator_index(lane, i)] = acc[i];
}

// Every lane shuffles with a mask that holds lane 0 only: the other lanes are left out.
__global__ void bad_mask_kernel(int* out) { out[threadIdx.x] = __shfl_sync(1u, static_cast<int>(threadIdx.x), 0); }

// Lane 0 waits at __syncthreads while lanes 1..31 wait for it at __syncwarp: a deadlock.
__global__ void deadlock_kernel() {
  if (threadIdx.x == 0)
    __syncthreads();
  else
    __syncwarp();
}

// Each thread writes its slot of shared memory and reads its neighbour's with no barrier between:
// a missing __syncthreads.
__global__ void missing_barrier_kernel(int* out) {
  int* slots = deepkern::cuda::dynamic_shared_memory<int>();
  const unsigned t = threadIdx.x;
  slots[t] = static_cast<int>(t);
  out[blockIdx.x * blockDim.x + t] = slots[(t + 1) % blockDim.x];
}

}  // namespace

DK_EMULATION_EXPORT int dk_mma_tf32(const float* a, const float* b, const float* c, float* d, int64_t tiles,
                                    int64_t threads) {
  return dk_emu::guarded([&] {
    launch("mma_tf32_tile_kernel", mma_tf32_tile_kernel, dim3(tiles), dim3(threads), 0, nullptr, a, b, c, d);
  });
}

DK_EMULATION_EXPORT int dk_mma_bf16(const float* a, const float* b, const float* c, float* d, int64_t tiles) {
  return dk_emu::guarded(
      [&] { launch("mma_bf16_tile_kernel", mma_bf16_tile_kernel, dim3(tiles), dim3(32), 0, nullptr, a, b, c, d); });
}

DK_EMULATION_EXPORT int dk_convert(const float* x, int64_t n, uint32_t* tf32, std::uint16_t* bf16, uint32_t* pair,
                                   float* back, float* unpacked) {
  return dk_emu::guarded([&] {
    launch("convert_kernel", convert_kernel, dim3((n + 127) / 128), dim3(128), 0, nullptr, x, n, tf32, bf16, pair, back,
           unpacked);
  });
}

DK_EMULATION_EXPORT int dk_ldmatrix(const std::uint16_t* src, const int* rows, int64_t mode, uint32_t* out) {
  return dk_emu::guarded(
      [&] { launch("ldmatrix_kernel", ldmatrix_kernel, dim3(1), dim3(32), 0, nullptr, src, rows, mode, out); });
}

DK_EMULATION_EXPORT int dk_cp_async(const float* src, const int* valid16, const int* valid4, float* out,
                                    int64_t threads, int64_t shared_bytes, int64_t misalign) {
  return dk_emu::guarded([&] {
    launch("cp_async_kernel", cp_async_kernel, dim3(1), dim3(threads), shared_bytes, nullptr, src, valid16, valid4, out,
           misalign);
  });
}

DK_EMULATION_EXPORT int dk_shuffle(const int* in, const int* arg, int64_t width, int* out, int64_t blocks,
                                   int64_t threads) {
  return dk_emu::guarded(
      [&] { launch("shuffle_kernel", shuffle_kernel, dim3(blocks), dim3(threads), 0, nullptr, in, arg, width, out); });
}

DK_EMULATION_EXPORT int dk_barrier(const float* in, int64_t active, float* out, int* count, float* sum, int64_t blocks,
                                   int64_t threads) {
  return dk_emu::guarded([&] {
    launch("barrier_kernel", barrier_kernel, dim3(blocks), dim3(threads), 0, nullptr, in, active, out, count, sum);
  });
}

DK_EMULATION_EXPORT int dk_index(int* out, int* order, int* counter, int64_t gx, int64_t gy, int64_t gz, int64_t bx,
                                 int64_t by, int64_t bz) {
  return dk_emu::guarded([&] {
    launch("index_kernel", index_kernel, dim3(gx, gy, gz), dim3(bx, by, bz), 0, nullptr, out, order, counter);
  });
}

DK_EMULATION_EXPORT int dk_ldmatrix_mma(const std::uint16_t* a, const std::uint16_t* b, int64_t k, float* c) {
  return dk_emu::guarded(
      [&] { launch("ldmatrix_mma_kernel", ldmatrix_mma_kernel, dim3(1), dim3(32), 0, nullptr, a, b, k, c); });
}

DK_EMULATION_EXPORT int dk_bad_mask(int* out) {
  return dk_emu::guarded([&] { launch("bad_mask_kernel", bad_mask_kernel, dim3(1), dim3(32), 0, nullptr, out); });
}

DK_EMULATION_EXPORT int dk_missing_barrier(int* out, int64_t blocks, int64_t threads) {
  return dk_emu::guarded([&] {
    launch("missing_barrier_kernel", missing_barrier_kernel, dim3(blocks), dim3(threads), threads * sizeof(int),
           nullptr, out);
  });
}

DK_EMULATION_EXPORT int dk_deadlock() {
  return dk_emu::guarded([&] { launch("deadlock_kernel", deadlock_kernel, dim3(1), dim3(32), 0, nullptr); });
}
