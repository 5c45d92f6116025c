// The emulated bfloat16 kernel (compiled once per ISA, vectorized by the compiler): each bfloat16
// is widened to float32 exactly and the products are summed with float32 multiply-adds.
#include <type_traits>

#include "cpu/cast/bf16_bits.h"
#include "cpu/gemm_bf16/kernels.h"

namespace deepkern::cpu {
namespace {

inline float widen(float x) { return x; }
inline float widen(bf16 x) { return bf16_bits_to_float(x.bits); }

// float32 to OutT, bfloat16 rounded to nearest even (a NaN stays a NaN, made quiet).
template <class OutT>
inline OutT narrow(float x) {
  if constexpr (std::is_same_v<OutT, float>) {
    return x;
  } else {
    return bf16{float_to_bf16_bits(x)};
  }
}

// The Bf16MergeRow contract (kernels.h). The fields are copied to locals first (a store to a float
// row could otherwise alias them, and the loops would reload them and stay scalar). A unit stride
// gets loops of their own (the compiler vectorizes them) with beta and the column bias known at
// compile time (true_type/false_type); a strided row takes them as bools.
template <class OutT>
void merge_row(const Bf16MergeRow<OutT>& r) {
  const float* const acc = r.acc;
  const OutT* const col_bias = r.col_bias;
  OutT* const dst = r.dst;
  const int64_t n = r.n;
  const float alpha = r.alpha, beta = r.beta, row_bias = r.row_bias;
  const bool relu = r.relu;
  const auto run = [&](auto stride, auto with_beta, auto with_bias) {
    for (int64_t j = 0; j < n; ++j) {
      OutT& out = dst[j * stride];
      float v = alpha * acc[j];
      if (with_beta) v += beta * widen(out);
      v += row_bias;
      if (with_bias) v += widen(col_bias[j]);
      if (relu && v < 0.0f) v = 0.0f;
      out = narrow<OutT>(v);
    }
  };
  using Yes = std::true_type;
  using No = std::false_type;
  const std::integral_constant<int64_t, 1> unit;
  if (r.stride != 1)
    run(r.stride, beta != 0.0f, col_bias != nullptr);
  else if (beta != 0.0f && col_bias)
    run(unit, Yes{}, Yes{});
  else if (beta != 0.0f)
    run(unit, Yes{}, No{});
  else if (col_bias)
    run(unit, No{}, Yes{});
  else
    run(unit, No{}, No{});
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
const Bf16MergeKernels gemm_bf16_merge = {.to_float = &merge_row<float>, .to_bf16 = &merge_row<bf16>};
}  // namespace DEEPKERN_ISA_NS

}  // namespace deepkern::cpu
