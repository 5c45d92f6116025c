// The emulated bfloat16 kernel (compiled once per ISA, vectorized by the compiler): each bfloat16
// is widened to float32 exactly and the products are summed with float32 multiply-adds.
#include <cstring>

#include "cpu/gemm_bf16/kernels.h"

namespace deepkern::cpu {
namespace {

inline float widen(bf16 x) {
  const uint32_t bits = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The Bf16TileKernel contract (kernels.h) for an MR x NR block.
template <int MR, int NR>
void tile_emulated(int64_t kp, const bf16* a, int64_t lda, const bf16* b, float* acc, int64_t ldacc) {
  float c[MR * NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * NR + j] = acc[i * ldacc + j];
  for (int64_t q = 0; q < kp / 2; ++q) {
    const bf16* pairs = b + q * NR * 2;
    float b0[NR], b1[NR];
    for (int j = 0; j < NR; ++j) {
      b0[j] = widen(pairs[2 * j]);
      b1[j] = widen(pairs[2 * j + 1]);
    }
    for (int i = 0; i < MR; ++i) {
      const float a0 = widen(a[i * lda + 2 * q]), a1 = widen(a[i * lda + 2 * q + 1]);
#pragma omp simd
      for (int j = 0; j < NR; ++j) c[i * NR + j] += a0 * b0[j] + a1 * b1[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i * ldacc + j] = c[i * NR + j];
}

#define DEEPKERN_STR2(x) #x
#define DEEPKERN_STR(x) DEEPKERN_STR2(x)

}  // namespace

namespace DEEPKERN_ISA_NS {
const Bf16GemmKernels gemm_bf16_emulated = {.name = "emulated " DEEPKERN_STR(DEEPKERN_ISA_NS) " 4x32",
                                            .mr = 4,
                                            .nr = 32,
                                            .k_align = 2,
                                            .mc = 128,
                                            .kc = 512,
                                            .nc = 256,
                                            .tile = &tile_emulated<4, 32>,
                                            .begin = nullptr,
                                            .end = nullptr,
                                            .peak_chains = nullptr,
                                            .peak_flops_per_iteration = 0};
}  // namespace DEEPKERN_ISA_NS

}  // namespace deepkern::cpu
