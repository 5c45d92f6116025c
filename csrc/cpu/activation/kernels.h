// The activation kernels of one ISA, as the table activation.cpp dispatches on. Each kernel
// computes elements [0, n) of its arrays (the driver passes one thread's range); the arrays do not
// overlap.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

template <class T>
struct ActivationKernels {
  void (*relu)(const T* x, T* out, int64_t n);
  void (*relu_backward)(const T* grad, const T* x, T* out, int64_t n);
  void (*gelu)(const T* x, T* out, int64_t n);
  void (*gelu_tanh)(const T* x, T* out, int64_t n);
  void (*gelu_backward)(const T* grad, const T* x, T* out, int64_t n);
  void (*gelu_tanh_backward)(const T* grad, const T* x, T* out, int64_t n);
};

// The double GELUs: scalar std::erfc / std::exp (double is the gradient-check path), one build
// that every ISA's table points to (gelu_double.cpp).
namespace gelu_double {
void gelu(const double* x, double* out, int64_t n);
void gelu_tanh(const double* x, double* out, int64_t n);
void gelu_backward(const double* grad, const double* x, double* out, int64_t n);
void gelu_tanh_backward(const double* grad, const double* x, double* out, int64_t n);
}  // namespace gelu_double

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<ActivationKernels>, activation_kernels)

}  // namespace deepkern::cpu
