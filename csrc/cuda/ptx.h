// The sm_80 PTX instructions deepkern's kernels use, one wrapper each (include from .cu files
// only). Kernels use these instead of writing inline assembly, so the emulation tests can supply
// host versions with the same semantics (tests/cuda_emulation). Fragment layouts are PTX's: with
// lane = 4 * group + quad (group = lane / 4, quad = lane % 4), see each function.
// Hopper-only instructions (wgmma, TMA, mbarrier) live with the one kernel that uses them.
#pragma once
#include <cstdint>

namespace deepkern::cuda::ptx {

// The shared-state-space address of a pointer into shared memory.
__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// Asynchronous 16-byte copy global -> shared (both 16-byte aligned), bypassing L1; when `valid`
// is false nothing is read and the 16 shared bytes are zero-filled (tails of a tile).
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(valid ? 16 : 0));
}

// The same for 4 bytes (4-byte aligned), through L1.
__device__ __forceinline__ void cp_async_4(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(valid ? 4 : 0));
}

// Closes the group of cp.async issued by this thread since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `Pending` of this thread's committed groups are still in flight (their
// writes are visible to this thread; a __syncthreads() makes them visible to the block).
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// ldmatrix: four 8x8 matrices of 16-bit elements from shared memory. Lanes 8i..8i+7 give the
// addresses of rows 0..7 of matrix i (16 contiguous bytes each); register i of lane
// 4 * group + quad receives row `group`, elements 2 * quad and 2 * quad + 1 of matrix i (low half
// first). The _trans form delivers the transpose: register i holds elements (2 * quad, group) and
// (2 * quad + 1, group) of matrix i.
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
// Two matrices: lanes 0..15 give the row addresses (the others' are ignored but must be valid).
__device__ __forceinline__ void ldmatrix_x2(std::uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(std::uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
}

// float -> TF32 (round to nearest, ties away from zero), as a 32-bit register for mma.
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

// d += a @ b for a warp: a 16x8 TF32 (row), b 8x8 TF32 (column), d 16x8 FP32.
// a: a[0] = (group, quad), a[1] = (group + 8, quad), a[2] = (group, quad + 4), a[3] = (group + 8, quad + 4);
// b: b[0] = (quad, group), b[1] = (quad + 4, group);
// d: d[0] = (group, 2 quad), d[1] = (group, 2 quad + 1), d[2] = (group + 8, 2 quad), d[3] = (group + 8, 2 quad + 1).
__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// d += a @ b for a warp: a 16x16 BF16 (row), b 16x8 BF16 (column), d 16x8 FP32. Each register
// holds two bf16 of consecutive k (the lower k in the low half):
// a: a[0] = (group, 2 quad + {0, 1}), a[1] = (group + 8, 2 quad + {0, 1}),
//    a[2] = (group, 2 quad + 8 + {0, 1}), a[3] = (group + 8, 2 quad + 8 + {0, 1});
// b: b[0] = (2 quad + {0, 1}, group), b[1] = (2 quad + 8 + {0, 1}, group); d as in mma_tf32_m16n8k8.
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4],
                                                  const std::uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

}  // namespace deepkern::cuda::ptx
