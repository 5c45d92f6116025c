// csrc/cuda/softmax/ under the emulation: the launchers on the caller's contiguous arrays, as the
// binding calls them after its checks. is_double: float64 arrays, else float32; weight may be null;
// bad: two int64 the caller zeroed (the kernels record a bad target there).
// emulation-sources: csrc/cuda/softmax/softmax.cu
#include <cstdint>

#include "cuda/softmax/softmax.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

}  // namespace

DK_EMULATION_EXPORT int dk_softmax(std::int64_t is_double, const void* x, void* out, std::int64_t outer,
                                   std::int64_t length, std::int64_t inner, std::int64_t log) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    dkc::launch_softmax(static_cast<const T*>(x), static_cast<T*>(out), {outer, length, inner}, log != 0, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_softmax_backward(std::int64_t is_double, const void* grad, const void* y, void* out,
                                            std::int64_t outer, std::int64_t length, std::int64_t inner,
                                            std::int64_t log) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    dkc::launch_softmax_backward(static_cast<const T*>(grad), static_cast<const T*>(y), static_cast<T*>(out),
                                 {outer, length, inner}, log != 0, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_cross_entropy_forward(std::int64_t is_double, const void* x, const std::int64_t* target,
                                                 const void* weight, void* loss, void* stats, std::int64_t batch,
                                                 std::int64_t classes, std::int64_t inner, std::int64_t ignore_index,
                                                 double label_smoothing, std::int64_t* bad) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    dkc::launch_cross_entropy_forward(static_cast<const T*>(x), target, static_cast<const T*>(weight),
                                      static_cast<T*>(loss), static_cast<T*>(stats), {batch, classes, inner},
                                      {ignore_index, label_smoothing, bad}, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_cross_entropy_backward(std::int64_t is_double, const void* grad, std::int64_t grad_count,
                                                  const void* x, const std::int64_t* target, const void* weight,
                                                  const void* stats, void* out, std::int64_t batch,
                                                  std::int64_t classes, std::int64_t inner, std::int64_t ignore_index,
                                                  double label_smoothing, std::int64_t* bad) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    dkc::launch_cross_entropy_backward(static_cast<const T*>(grad), grad_count, static_cast<const T*>(x), target,
                                       static_cast<const T*>(weight), static_cast<const T*>(stats),
                                       static_cast<T*>(out), {batch, classes, inner},
                                       {ignore_index, label_smoothing, bad}, nullptr);
  });
}
