// float32 <-> bfloat16 conversion of contiguous arrays (what autocast, the bfloat16 ops that compute
// through float32, and Tensor.to() spend on every bfloat16 activation and gradient).
#pragma once
#include <cstdint>

#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::cpu {

// dst[i] = src[i] for i < n: bfloat16 widened exactly, float32 rounded to nearest even (bf16_bits.h).
// The arrays must not overlap. Split over the threads above a few tens of thousands of values.
void convert(const bf16* src, int64_t n, float* dst);
void convert(const float* src, int64_t n, bf16* dst);

}  // namespace deepkern::cpu
