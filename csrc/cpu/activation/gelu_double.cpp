// The double GELUs, forward and backward (kernels.h): scalar loops over activation_math.h's double
// forms (std::erfc and std::exp with their arguments' rounding errors corrected for), one build
// that every ISA's table points to.
#include <cstdint>

#include "cpu/activation/activation_math.h"
#include "cpu/activation/kernels.h"

namespace deepkern::cpu::gelu_double {

namespace math = activation_math;

void gelu(const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = math::gelu(x[i]);
}

void gelu_tanh(const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = math::gelu_tanh(x[i]);
}

void gelu_backward(const double* grad, const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = grad[i] * math::gelu_grad(x[i]);
}

void gelu_tanh_backward(const double* grad, const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = grad[i] * math::gelu_tanh_grad(x[i]);
}

}  // namespace deepkern::cpu::gelu_double
