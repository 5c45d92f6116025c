// Element-wise activations on the CPU: relu and gelu, forward and backward.
//
// Every function reads n contiguous elements of each input and writes n contiguous elements of
// `out`; `out` overlaps no input, except that relu may run in place (out == x). T is float or double
// (relu and relu_backward: bfloat16 too).
// Threads split n into contiguous ranges
// (small n runs on the calling thread); each ISA has its own kernels (kernels.cpp), picked by
// dispatch(IsaFamily::activation).
//
// Definitions (PyTorch's, special values included):
//   relu(x)             = x < 0 ? 0 : x          (NaN -> NaN, -0 -> -0, as torch.relu)
//   relu_backward(g, x) = x <= 0 ? 0 : g         (threshold_backward on the input: 0 where
//                                                 x <= 0, g elsewhere, NaN x included)
//   gelu(x)             = x Phi(x), Phi the standard normal CDF
//   gelu tanh(x)        = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3)
//   gelu_backward(g, x) = g d gelu / dx:  Phi(x) + x phi(x) (phi the normal density), or for tanh
//                         (1 + tanh u) / 2 + x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 x^2) / 2
// At the infinities the results are those formulas in IEEE arithmetic, as PyTorch's float64
// kernels give: gelu(+inf) = +inf, gelu(-inf) = NaN (-inf * 0), gelu_backward(+-inf) = NaN
// (+-inf * 0); relu(+-inf) = +inf / 0. NaN gives NaN except in relu_backward (see above).
//
// Accuracy: float results lie within a few ulp of the exact values over the whole float range,
// tiny and subnormal results included (GELU's negative tail, where x Phi(x) underflows only
// below x = -14.3); kernels.cpp lists the measured maxima. double results are within ~5e-16
// relative (near the zeros of gelu's derivatives, x ~ -0.75, relative to the terms that cancel
// there; results below double's normal range, x < -37.5, only as precise as erfc's subnormals).
#pragma once
#include <cstdint>

#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::cpu {

enum class GeluApproximate { none, tanh };

template <class T>
void relu(const T* x, T* out, int64_t n);

template <class T>
void relu_backward(const T* grad, const T* x, T* out, int64_t n);

// relu and relu_backward on bfloat16 (the same definitions; exact, as they only select values).
void relu(const bf16* x, bf16* out, int64_t n);
void relu_backward(const bf16* grad, const bf16* x, bf16* out, int64_t n);

template <class T>
void gelu(const T* x, T* out, int64_t n, GeluApproximate approximate);

template <class T>
void gelu_backward(const T* grad, const T* x, T* out, int64_t n, GeluApproximate approximate);

}  // namespace deepkern::cpu
