// csrc/cuda/activation/ under the emulation: launch_activation on the caller's contiguous arrays,
// as the binding calls it after its checks.
// emulation-sources: csrc/cuda/activation/activation.cu
#include <cstdint>

#include "cuda/activation/activation.h"
#include "dk_emulation/driver.h"

// op: the ActivationOp code (relu, relu_backward, gelu, gelu_backward, gelu_tanh,
// gelu_tanh_backward); is_double: float64 arrays, else float32; grad null for the forward ops.
DK_EMULATION_EXPORT int dk_activation(std::int64_t op, std::int64_t is_double, const void* grad, const void* x,
                                      void* out, std::int64_t n) {
  return dk_emu::guarded([&] {
    const auto code = static_cast<deepkern::cuda::ActivationOp>(op);
    if (is_double)
      deepkern::cuda::launch_activation(code, static_cast<const double*>(grad), static_cast<const double*>(x),
                                        static_cast<double*>(out), n, nullptr);
    else
      deepkern::cuda::launch_activation(code, static_cast<const float*>(grad), static_cast<const float*>(x),
                                        static_cast<float*>(out), n, nullptr);
  });
}
