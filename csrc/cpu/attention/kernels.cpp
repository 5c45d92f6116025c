// The attention row kernels of one ISA: this source is compiled once per ISA (DEEPKERN_ISA_NS =
// avx512, avx2, generic) and the compiler vectorizes its loops for that ISA's registers. The float
// exponential is written without a library call (core/vmath.h's pieces) so the loops vectorize; the
// double one is std::exp. Dropout's words come from philox.h, as the dropout kernels draw them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/vmath.h"
#include "cpu/attention/kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// e^v for v <= 0 (a score minus its row's max or log-sum-exp; a rounding error above 0 is fine):
// below -87 (under the smallest normal float) 0, NaN stays NaN. Error: vmath's exp_reduced (< 1 ulp)
// plus the reduction's (2^-24 |v| relative at most).
[[gnu::always_inline]] inline float exp_nonpositive(float v) {
  constexpr float kLow = -87.0f;
  const float c = v > kLow ? v : kLow;
  const float n = vmath::round_near(c * vmath::kLog2e);
  const float r = (c - n * vmath::kLn2Hi) - n * vmath::kLn2Lo;
  const float y = vmath::exp_reduced(r) * vmath::pow2i(static_cast<int32_t>(n));
  return v > kLow ? y : (v == v ? 0.0f : v);
}
[[gnu::always_inline]] inline double exp_nonpositive(double v) { return std::exp(v); }

constexpr double kInf = std::numeric_limits<double>::infinity();

// s_c += mask_c for c < valid (mask null: nothing; mask_stride 0: one value for the row).
template <class T>
void add_mask(T* __restrict s, int64_t valid, const T* __restrict mask, int64_t mask_stride) {
  if (mask == nullptr) return;
  if (mask_stride == 0) {
    const T value = mask[0];
#pragma omp simd
    for (int64_t c = 0; c < valid; ++c) s[c] += value;
  } else if (mask_stride == 1) {
#pragma omp simd
    for (int64_t c = 0; c < valid; ++c) s[c] += mask[c];
  } else {
    for (int64_t c = 0; c < valid; ++c) s[c] += mask[c * mask_stride];
  }
}

template <class T>
void online_softmax(T* __restrict s, int64_t cols, int64_t valid, const T* __restrict mask, int64_t mask_stride, T* m,
                    T* l, T* __restrict o, int64_t ev) {
  add_mask(s, valid, mask, mask_stride);
  T block_max = -kInf;
#pragma omp simd reduction(max : block_max)
  for (int64_t c = 0; c < valid; ++c) block_max = s[c] > block_max ? s[c] : block_max;  // NaN skipped
  const T m_new = std::max(*m, block_max);
  const T base = m_new == T(-kInf) ? T(0) : m_new;  // a row masked so far: every exp is 0
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < valid; ++c) {
    const T e = exp_nonpositive(s[c] - base);
    s[c] = e;
    sum += e;
  }
  std::fill(s + valid, s + cols, T(0));
  const T factor = exp_nonpositive(*m - base);
  *l = *l * factor + sum;
  *m = m_new;
  if (factor != T(1)) {
#pragma omp simd
    for (int64_t c = 0; c < ev; ++c) o[c] *= factor;
  }
}

template <class T>
void probabilities(T* __restrict s, int64_t cols, int64_t valid, const T* __restrict mask, int64_t mask_stride, T shift,
                   T log_sum) {
  if (shift == T(-kInf)) valid = 0;  // a fully masked row: no probabilities, no gradient
  add_mask(s, valid, mask, mask_stride);
#pragma omp simd
  for (int64_t c = 0; c < valid; ++c) s[c] = exp_nonpositive((s[c] - shift) - log_sum);
  std::fill(s + valid, s + cols, T(0));
}

template <class T>
void score_grad(const T* __restrict p, T* __restrict dp, int64_t cols, T d) {
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) dp[c] = p[c] * (dp[c] - d);
}

// Elements per tile: the Philox words of one tile stay in L1 between the two loops.
constexpr int64_t kTile = 256;

template <class T>
void dropout(T* __restrict x, int64_t cols, std::uint64_t first, const philox::DropoutParams& d, T scale) {
  alignas(64) std::uint32_t words[kTile + 4];
  for (int64_t t = 0; t < cols; t += kTile) {
    const int64_t len = std::min(kTile, cols - t);
    const std::uint64_t start = first + static_cast<std::uint64_t>(t);
    const int64_t lead = static_cast<int64_t>(start % 4);  // the tile's first word within its block
    const int64_t blocks = (lead + len + 3) / 4;
    const std::uint64_t block0 = start / 4;
#pragma omp simd
    for (int64_t b = 0; b < blocks; ++b) {
      const philox::Words w = philox::dropout_block(d, block0 + static_cast<std::uint64_t>(b));
      for (int k = 0; k < 4; ++k) words[4 * b + k] = w.w[k];
    }
#pragma omp simd
    for (int64_t j = 0; j < len; ++j)
      x[t + j] = philox::dropout_apply(x[t + j], philox::dropout_keeps(d, words[lead + j]), scale);
  }
}

template <class T>
constexpr AttentionKernels<T> table() {
  return {.online_softmax = &online_softmax<T>,
          .probabilities = &probabilities<T>,
          .score_grad = &score_grad<T>,
          .dropout = &dropout<T>};
}

}  // namespace

const KernelsByType<AttentionKernels> attention_kernels = {.f32 = table<float>(), .f64 = table<double>()};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
