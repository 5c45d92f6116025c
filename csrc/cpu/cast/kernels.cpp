// The conversion loops (kernels.h), compiled once per ISA: plain loops over the bits, which the
// compiler vectorizes (16 values per step with AVX-512).
#include "cpu/cast/kernels.h"

#include "cpu/cast/bf16_bits.h"

namespace deepkern::cpu {
namespace {

void widen(const bf16* src, float* dst, int64_t n) {
  const auto* __restrict from = reinterpret_cast<const uint16_t*>(src);
  float* __restrict to = dst;
  for (int64_t i = 0; i < n; ++i) to[i] = bf16_bits_to_float(from[i]);
}

void narrow(const float* src, bf16* dst, int64_t n) {
  const float* __restrict from = src;
  auto* __restrict to = reinterpret_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) to[i] = float_to_bf16_bits(from[i]);
}

}  // namespace

namespace DEEPKERN_ISA_NS {
const CastKernels cast_kernels = {.widen = &widen, .narrow = &narrow};
}  // namespace DEEPKERN_ISA_NS

}  // namespace deepkern::cpu
