// csrc/cuda/norm/ under the emulation: the launchers on the caller's C-contiguous arrays, as the
// binding calls them after its checks.
// emulation-sources: csrc/cuda/norm/norm.cu
#include <cstdint>

#include "cuda/norm/norm.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

template <class T>
void forward(const std::int64_t* shape, const void* x, const void* weight, const void* bias, void* running_mean,
             void* running_var, void* out, double* save_mean, double* save_invstd, bool training, double momentum,
             double eps) {
  dkc::launch_batch_norm_forward<T>({shape[0], shape[1], shape[2]}, static_cast<const T*>(x),
                                    static_cast<const T*>(weight), static_cast<const T*>(bias),
                                    static_cast<T*>(running_mean), static_cast<T*>(running_var), static_cast<T*>(out),
                                    save_mean, save_invstd, training, momentum, eps, nullptr);
}

template <class T>
void backward(const std::int64_t* shape, const void* grad_out, const void* x, const void* weight,
              const double* save_mean, const double* save_invstd, void* grad_x, void* grad_weight, void* grad_bias,
              bool training) {
  dkc::launch_batch_norm_backward<T>({shape[0], shape[1], shape[2]}, static_cast<const T*>(grad_out),
                                     static_cast<const T*>(x), static_cast<const T*>(weight), save_mean, save_invstd,
                                     static_cast<T*>(grad_x), static_cast<T*>(grad_weight), static_cast<T*>(grad_bias),
                                     training, nullptr);
}

}  // namespace

// shape: (n, c, s); weight, bias, running_mean, running_var may be null; float64 arrays when
// is_double, else float32 (save_mean and save_invstd: float64 always).
DK_EMULATION_EXPORT int dk_batch_norm_forward(std::int64_t is_double, const std::int64_t* shape, const void* x,
                                              const void* weight, const void* bias, void* running_mean,
                                              void* running_var, void* out, double* save_mean, double* save_invstd,
                                              std::int64_t training, double momentum, double eps) {
  return dk_emu::guarded([&] {
    (is_double ? forward<double> : forward<float>)(shape, x, weight, bias, running_mean, running_var, out, save_mean,
                                                   save_invstd, training != 0, momentum, eps);
  });
}

// weight, grad_x, grad_weight, grad_bias may be null.
DK_EMULATION_EXPORT int dk_batch_norm_backward(std::int64_t is_double, const std::int64_t* shape, const void* grad_out,
                                               const void* x, const void* weight, const double* save_mean,
                                               const double* save_invstd, void* grad_x, void* grad_weight,
                                               void* grad_bias, std::int64_t training) {
  return dk_emu::guarded([&] {
    (is_double ? backward<double> : backward<float>)(shape, grad_out, x, weight, save_mean, save_invstd, grad_x,
                                                     grad_weight, grad_bias, training != 0);
  });
}
