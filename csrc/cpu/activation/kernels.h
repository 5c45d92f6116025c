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

// relu and its backward on bfloat16 values, as their 16-bit patterns (both only select values, so
// they are exact without widening): relu(x) = 0 for x < 0 (sign set, magnitude 1 up to the
// infinity's), else x; relu_backward(g, x) = g for x > 0 (sign clear, nonzero) or NaN (magnitude
// above the infinity's), else +0.
struct Bf16ReluKernels {
  void (*relu)(const uint16_t* x, uint16_t* out, int64_t n);
  void (*relu_backward)(const uint16_t* grad, const uint16_t* x, uint16_t* out, int64_t n);
};

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<ActivationKernels>, activation_kernels)
DEEPKERN_DECLARE_ISA_TABLES(Bf16ReluKernels, relu_bf16_kernels)

}  // namespace deepkern::cpu
