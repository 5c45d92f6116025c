// csrc/cuda/dropout/ under the emulation: launch_dropout and launch_dropout_backward on the
// caller's contiguous arrays, as the binding calls them after its checks.
// emulation-sources: csrc/cuda/dropout/dropout.cu
#include <cstdint>

#include "cuda/dropout/dropout.h"
#include "dk_emulation/driver.h"

// is_double: float64 arrays, else float32; mask one byte per element.
DK_EMULATION_EXPORT int dk_dropout(std::int64_t is_double, const void* x, void* y, void* mask, std::int64_t n, double p,
                                   std::uint64_t seed, std::uint64_t offset) {
  return dk_emu::guarded([&] {
    auto* m = static_cast<std::uint8_t*>(mask);
    if (is_double)
      deepkern::cuda::launch_dropout(static_cast<const double*>(x), static_cast<double*>(y), m, n, p, seed, offset,
                                     nullptr);
    else
      deepkern::cuda::launch_dropout(static_cast<const float*>(x), static_cast<float*>(y), m, n, p, seed, offset,
                                     nullptr);
  });
}

DK_EMULATION_EXPORT int dk_dropout_backward(std::int64_t is_double, const void* grad, const void* mask, void* out,
                                            std::int64_t n, double p) {
  return dk_emu::guarded([&] {
    const auto* m = static_cast<const std::uint8_t*>(mask);
    if (is_double)
      deepkern::cuda::launch_dropout_backward(static_cast<const double*>(grad), m, static_cast<double*>(out), n, p,
                                              nullptr);
    else
      deepkern::cuda::launch_dropout_backward(static_cast<const float*>(grad), m, static_cast<float*>(out), n, p,
                                              nullptr);
  });
}
