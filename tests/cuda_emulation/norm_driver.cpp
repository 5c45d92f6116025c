// csrc/cuda/norm/ under the emulation: the launchers on the caller's C-contiguous arrays, as the
// binding calls them after its checks.
// emulation-sources: csrc/cuda/norm/norm.cu csrc/cuda/norm/layer_norm.cu
#include <cstdint>
#include <vector>

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

// A host "device" workspace of `bytes` bytes (float64-aligned).
std::vector<double> workspace(std::int64_t bytes) {
  return std::vector<double>(static_cast<std::size_t>(bytes) / sizeof(double));
}

// Layer norm (shape (rows, len)) or group norm (shape (n, c, s, groups)), forward and backward:
// the launchers with the caller's arrays (weights and gradients may be null), float64 when
// is_double, else float32.
template <class T>
void row_norm(bool group, bool backward, const std::int64_t* shape, const void* a, const void* b, const void* weight,
              const void* bias, double* save_mean, double* save_rstd, void* out, void* grad_weight, void* grad_bias,
              double eps) {
  const auto c = [](const void* p) { return static_cast<const T*>(p); };
  const auto m = [](void* p) { return static_cast<T*>(p); };
  if (!group) {
    const deepkern::cpu::LayerNormShape s{shape[0], shape[1]};
    if (!backward)
      return dkc::launch_layer_norm_forward<T>(s, c(a), c(weight), c(bias), m(out), save_mean, save_rstd, eps, nullptr);
    std::vector<double> ws = workspace(dkc::layer_norm_backward_workspace_bytes(s));
    return dkc::launch_layer_norm_backward<T>(s, c(a), c(b), c(weight), save_mean, save_rstd, m(out), m(grad_weight),
                                              m(grad_bias), ws.data(), nullptr);
  }
  const deepkern::cpu::GroupNormShape s{shape[0], shape[1], shape[2], shape[3]};
  if (!backward)
    return dkc::launch_group_norm_forward<T>(s, c(a), c(weight), c(bias), m(out), save_mean, save_rstd, eps, nullptr);
  std::vector<double> ws = workspace(dkc::group_norm_backward_workspace_bytes(s));
  dkc::launch_group_norm_backward<T>(s, c(a), c(b), c(weight), save_mean, save_rstd, m(out), m(grad_weight),
                                     m(grad_bias), ws.data(), nullptr);
}

}  // namespace

// Layer norm (group == 0, shape (rows, len)) or group norm (group == 1, shape (n, c, s, groups)).
// Forward (backward == 0): a = x, out = y, save_mean and save_rstd written. Backward: a =
// grad_out, b = x, out = grad_x, grad_weight, grad_bias (each may be null), save_mean and
// save_rstd read. float64 arrays when is_double, else float32 (the statistics: float64 always).
DK_EMULATION_EXPORT int dk_row_norm(std::int64_t is_double, std::int64_t group, std::int64_t backward,
                                    const std::int64_t* shape, const void* a, const void* b, const void* weight,
                                    const void* bias, double* save_mean, double* save_rstd, void* out,
                                    void* grad_weight, void* grad_bias, double eps) {
  return dk_emu::guarded([&] {
    (is_double ? row_norm<double> : row_norm<float>)(group != 0, backward != 0, shape, a, b, weight, bias, save_mean,
                                                     save_rstd, out, grad_weight, grad_bias, eps);
  });
}

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
