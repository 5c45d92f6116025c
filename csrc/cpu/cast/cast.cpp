// float32 <-> bfloat16 conversion: picks the active ISA's loops (kernels.h) and splits the values
// over threads in contiguous, cache-line-aligned ranges (run_on_ranges, core/threading.h).
#include "cpu/cast/cast.h"

#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/cast/kernels.h"

namespace deepkern::cpu {
namespace {

// A conversion moves 6 bytes per value and computes next to nothing; as relu (activation.cpp),
// a second thread pays for its start from a few tens of thousands of values on.
constexpr int64_t kMinPerThread = int64_t(1) << 15;

const CastKernels& kernels() {
  return dispatch(IsaFamily::cast, IsaTables{generic::cast_kernels, avx2::cast_kernels, avx512::cast_kernels});
}

}  // namespace

void convert(const bf16* src, int64_t n, float* dst) {
  const auto widen = kernels().widen;
  run_on_ranges(dst, n, kMinPerThread, [&](int64_t b, int64_t e) { widen(src + b, dst + b, e - b); });
}

void convert(const float* src, int64_t n, bf16* dst) {
  const auto narrow = kernels().narrow;
  run_on_ranges(dst, n, kMinPerThread, [&](int64_t b, int64_t e) { narrow(src + b, dst + b, e - b); });
}

}  // namespace deepkern::cpu
