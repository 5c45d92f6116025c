// csrc/cuda/embedding/ under the emulation: launch_embedding and launch_embedding_backward on the
// caller's contiguous arrays, as the binding calls them after its checks (grad_weight zeroed by the
// caller, bad two zeroed int64).
// emulation-sources: csrc/cuda/embedding/embedding.cu
#include <cstdint>

#include "cuda/embedding/embedding.h"
#include "dk_emulation/driver.h"

// is_double: float64 arrays, else float32.
DK_EMULATION_EXPORT int dk_embedding(std::int64_t is_double, const void* weight, std::int64_t rows, std::int64_t dim,
                                     const void* indices, std::int64_t n, void* out, void* bad) {
  return dk_emu::guarded([&] {
    const auto* idx = static_cast<const std::int64_t*>(indices);
    auto* flag = static_cast<std::int64_t*>(bad);
    if (is_double)
      deepkern::cuda::launch_embedding(static_cast<const double*>(weight), rows, dim, idx, n, static_cast<double*>(out),
                                       flag, nullptr);
    else
      deepkern::cuda::launch_embedding(static_cast<const float*>(weight), rows, dim, idx, n, static_cast<float*>(out),
                                       flag, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_embedding_backward(std::int64_t is_double, const void* grad, const void* indices,
                                              std::int64_t n, std::int64_t rows, std::int64_t dim,
                                              std::int64_t padding_idx, void* grad_weight, void* bad) {
  return dk_emu::guarded([&] {
    const auto* idx = static_cast<const std::int64_t*>(indices);
    auto* flag = static_cast<std::int64_t*>(bad);
    if (is_double)
      deepkern::cuda::launch_embedding_backward(static_cast<const double*>(grad), idx, n, rows, dim, padding_idx,
                                                static_cast<double*>(grad_weight), flag, nullptr);
    else
      deepkern::cuda::launch_embedding_backward(static_cast<const float*>(grad), idx, n, rows, dim, padding_idx,
                                                static_cast<float*>(grad_weight), flag, nullptr);
  });
}
