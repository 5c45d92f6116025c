// Host version of csrc/cuda/ptx.h for the emulation: the same wrappers with the semantics the
// original's comments state (PTX's), so kernels' use of them can be tested on the host.
// - cp.async is a synchronous copy (zero fill when not valid); commit and wait are no-ops.
// - ldmatrix and mma are warp collectives over all 32 lanes: the lanes' addresses or fragments are
//   gathered by the documented layouts, the result is computed once and scattered back.
// - mma computes in double from the exact TF32/BF16 inputs (a TF32 register's low 13 bits are
//   ignored, as the tensor cores do) and rounds the sum with C to float once; the tensor cores'
//   own accumulation order and rounding are not reproduced.
// Misaligned addresses are errors (the GPU faults on them).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace deepkern::cuda::ptx {

// The shared-state-space address of a pointer into shared memory (host: the pointer's low bits).
__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

namespace emulation {

inline void check_aligned(const void* pointer, std::uintptr_t alignment, const char* what, const char* which) {
  if (reinterpret_cast<std::uintptr_t>(pointer) % alignment != 0)
    throw std::logic_error(std::string(what) + ": the " + which + " address " +
                           std::to_string(reinterpret_cast<std::uintptr_t>(pointer)) + " is not " +
                           std::to_string(alignment) + "-byte aligned");
}

template <int Bytes>
void cp_async(void* shared, const void* global, bool valid, const char* what) {
  check_aligned(shared, Bytes, what, "shared");
  if (valid) {
    check_aligned(global, Bytes, what, "global");
    std::memcpy(shared, global, Bytes);
  } else {
    std::memset(shared, 0, Bytes);
  }
}

inline std::uint32_t u16_at(const unsigned char* row, unsigned element) {
  std::uint16_t v;
  std::memcpy(&v, row + 2 * element, 2);
  return v;
}

// ldmatrix over the warp: each lane's input is its row address; register i of lane 4 g + q holds
// row g, elements 2q, 2q + 1 of matrix i (Trans: elements (2q, g), (2q + 1, g)).
template <int Matrices, bool Trans>
const char* ldmatrix_compute(dk_emu::Warp& warp, std::uint32_t lanes) {
  if (lanes != ~0u) return "ldmatrix needs all 32 lanes of the warp";
  const unsigned char* rows[32];
  for (unsigned l = 0; l < 32; ++l) {
    rows[l] = dk_emu::slot<const unsigned char*>(warp.in[l]);
    if (l < 8u * Matrices && reinterpret_cast<std::uintptr_t>(rows[l]) % 16 != 0)
      return "a row address (lanes 0..8 * matrices - 1) is not 16-byte aligned";
  }
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned g = l / 4, q = l % 4;
    std::uint32_t r[Matrices];
    for (unsigned i = 0; i < Matrices; ++i) {
      const std::uint32_t lo = Trans ? u16_at(rows[8 * i + 2 * q], g) : u16_at(rows[8 * i + g], 2 * q);
      const std::uint32_t hi = Trans ? u16_at(rows[8 * i + 2 * q + 1], g) : u16_at(rows[8 * i + g], 2 * q + 1);
      r[i] = lo | hi << 16;
    }
    std::memcpy(warp.out[l], r, sizeof r);
  }
  return nullptr;
}

template <int Matrices, bool Trans>
void ldmatrix(std::uint32_t (&r)[Matrices], const void* row, const char* what) {
  dk_emu::warp_collective(row, ldmatrix_compute<Matrices, Trans>, &r, what);
}

inline float tf32_value(std::uint32_t bits) {
  bits &= 0xffffe000u;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct MmaIn {
  std::uint32_t a[4], b[2];
  float c[4];
};

// a's element (row, k) and b's (k, col) of lane (g, q)'s fragment registers, by the layouts of
// csrc/cuda/ptx.h; K is 8 (TF32) or 16 (BF16, two values per register).
template <int K>
void scatter_fragments(const MmaIn& in, unsigned g, unsigned q, double (&a)[16][K], double (&b)[K][8]) {
  if constexpr (K == 8) {
    a[g][q] = tf32_value(in.a[0]);
    a[g + 8][q] = tf32_value(in.a[1]);
    a[g][q + 4] = tf32_value(in.a[2]);
    a[g + 8][q + 4] = tf32_value(in.a[3]);
    b[q][g] = tf32_value(in.b[0]);
    b[q + 4][g] = tf32_value(in.b[1]);
  } else {
    const auto lo = [](std::uint32_t r) { return dk_emu::bf16_bits_to_float(static_cast<unsigned short>(r)); };
    const auto hi = [](std::uint32_t r) { return dk_emu::bf16_bits_to_float(static_cast<unsigned short>(r >> 16)); };
    const unsigned rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * q, 2 * q, 2 * q + 8, 2 * q + 8};
    for (int i = 0; i < 4; ++i) {
      a[rows[i]][cols[i]] = lo(in.a[i]);
      a[rows[i]][cols[i] + 1] = hi(in.a[i]);
    }
    for (unsigned i = 0; i < 2; ++i) {
      b[2 * q + 8 * i][g] = lo(in.b[i]);
      b[2 * q + 8 * i + 1][g] = hi(in.b[i]);
    }
  }
}

// d = a @ b + c for the warp's 16 x 8 tile (c and d: d[0] = (g, 2q), d[1] = (g, 2q + 1),
// d[2] = (g + 8, 2q), d[3] = (g + 8, 2q + 1)).
template <int K>
const char* mma_compute(dk_emu::Warp& warp, std::uint32_t lanes) {
  if (lanes != ~0u) return "mma needs all 32 lanes of the warp";
  double a[16][K], b[K][8], c[16][8];
  for (unsigned l = 0; l < 32; ++l) {
    const MmaIn in = dk_emu::slot<MmaIn>(warp.in[l]);
    const unsigned g = l / 4, q = l % 4;
    scatter_fragments<K>(in, g, q, a, b);
    c[g][2 * q] = in.c[0], c[g][2 * q + 1] = in.c[1], c[g + 8][2 * q] = in.c[2], c[g + 8][2 * q + 1] = in.c[3];
  }
  for (unsigned l = 0; l < 32; ++l) {
    const unsigned g = l / 4, q = l % 4;
    const unsigned rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * q, 2 * q + 1, 2 * q, 2 * q + 1};
    float d[4];
    for (int i = 0; i < 4; ++i) {
      double sum = c[rows[i]][cols[i]];
      for (int k = 0; k < K; ++k) sum += a[rows[i]][k] * b[k][cols[i]];
      d[i] = static_cast<float>(sum);
    }
    std::memcpy(warp.out[l], d, sizeof d);
  }
  return nullptr;
}

template <int K>
void mma(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2], const char* what) {
  MmaIn in;
  std::memcpy(in.a, a, sizeof in.a);
  std::memcpy(in.b, b, sizeof in.b);
  std::memcpy(in.c, d, sizeof in.c);
  dk_emu::warp_collective(in, mma_compute<K>, &d, what);
}

}  // namespace emulation

// Asynchronous 16-byte copy global -> shared (here synchronous); zero fill when !valid.
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, bool valid) {
  emulation::cp_async<16>(shared, global, valid, "cp_async_16");
}
__device__ __forceinline__ void cp_async_4(void* shared, const void* global, bool valid) {
  emulation::cp_async<4>(shared, global, valid, "cp_async_4");
}
__device__ __forceinline__ void cp_async_commit() {}
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
  emulation::ldmatrix<4, false>(r, row, "ldmatrix_x4");
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* row) {
  emulation::ldmatrix<4, true>(r, row, "ldmatrix_x4_trans");
}
__device__ __forceinline__ void ldmatrix_x2(std::uint32_t (&r)[2], const void* row) {
  emulation::ldmatrix<2, false>(r, row, "ldmatrix_x2");
}
__device__ __forceinline__ void ldmatrix_x2_trans(std::uint32_t (&r)[2], const void* row) {
  emulation::ldmatrix<2, true>(r, row, "ldmatrix_x2_trans");
}

// float -> TF32 by cvt.rna: round to nearest, ties away from zero, low 13 bits cleared.
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffe000u;  // NaN: the canonical one
  return (u + 0x1000u) & 0xffffe000u;
}

__device__ __forceinline__ void mma_tf32_m16n8k8(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2]) {
  emulation::mma<8>(d, a, b, "mma_tf32_m16n8k8");
}
__device__ __forceinline__ void mma_bf16_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4],
                                                  const std::uint32_t (&b)[2]) {
  emulation::mma<16>(d, a, b, "mma_bf16_m16n8k16");
}

}  // namespace deepkern::cuda::ptx
