// The update rules of SGD, Adam/AdamW and RMSprop for one element, shared by the CPU loops
// (rules.cpp, compiled once per ISA) and the CUDA kernels (cuda/optim/optim_kernels.cu), so both
// devices compute every element with the same operations in the same order.
//
// Each rule takes one element (its parameter and states, by value: the caller loads and stores only
// the states the options use, in the OptimTensor's order) and its gradient, and returns the element
// updated. Values in and out (no references) keep the CPU loops vectorizable. The
// hyperparameters come as T values prepared once per call by the *_scalars functions below (host
// code: they use std::pow and std::sqrt in double, as the CPU kernels always did).
//
// `Math` supplies madd(a, b, c) (a * b + c, fused or not as the caller's device does it) and
// sqrt; the caller's Math type also keeps the instantiations of each ISA's translation unit apart
// (defined in an unnamed namespace, it gives them internal linkage). Sources including this file
// are compiled without floating-point contraction (-ffp-contract=off, nvcc --fmad=false), so a
// multiply-add is fused exactly where a rule calls madd.
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/optim/optim.h"

#if defined(__CUDACC__)
#define DK_OPTIM_RULE __host__ __device__ __forceinline__
#else
#define DK_OPTIM_RULE inline
#endif

namespace deepkern::optim_rules {

// torch.lerp(start, end, weight) for a scalar weight, as ATen computes it: start + w (end - start)
// when |w| < 0.5, else end - (1 - w)(end - start), each as one multiply-add.
template <class T>
struct Lerp {
  T coeff;
  bool small;
};
template <class T>
Lerp<T> lerp_of(double weight) {
  const bool small = std::abs(T(weight)) < T(0.5);
  return {small ? T(weight) : T(weight) - T(1), small};
}
template <class Math, class T>
DK_OPTIM_RULE T lerp(const Lerp<T>& l, T start, T end) {
  return Math::madd(l.coeff, end - start, l.small ? start : end);
}

// One element of a parameter and its states (s0, s1, s2: OptimTensor::state[0..2]).
template <class T>
struct Element {
  T param, s0, s1, s2;
};

// max(a, b) that returns a NaN from either side (torch.maximum).
template <class T>
DK_OPTIM_RULE T maximum(T a, T b) {
  return a != a ? a : (a > b ? a : b);
}

// ---- SGD (ATen's fused CPU SGD) ----------------------------------------------------------------
// g = ±grad (+ wd p); buf = first ? g : momentum buf + (1 - dampening) g; g = nesterov ? g + momentum
// buf : buf; p -= lr g.
template <class T>
struct SgdScalars {
  T sign, wd, mom, keep, neg_lr;
};
template <class T>
SgdScalars<T> sgd_scalars(const cpu::SgdOptions& o) {
  return {o.maximize ? T(-1) : T(1), T(o.weight_decay), T(o.momentum), T(1 - o.dampening), T(-o.lr)};
}
// e.s0: momentum_buffer.
template <class Math, bool kWd, bool kMomentum, bool kFirst, bool kNesterov, class T>
DK_OPTIM_RULE Element<T> sgd_rule(const SgdScalars<T>& s, Element<T> e, T grad) {
  T g = grad * s.sign;
  if constexpr (kWd) g = Math::madd(e.param, s.wd, g);
  if constexpr (kMomentum) {
    const T b = kFirst ? g : Math::madd(s.keep, g, e.s0 * s.mom);
    e.s0 = b;
    g = kNesterov ? Math::madd(b, s.mom, g) : b;
  }
  e.param = Math::madd(g, s.neg_lr, e.param);
  return e;
}

// ---- Adam / AdamW (ATen's fused CPU Adam) --------------------------------------------------------
// g = ±grad (+ wd p: Adam's L2); p *= 1 - lr wd (AdamW); m = lerp(m, g, 1 - beta1);
// v = beta2 v + (1 - beta2) g g; vmax = max(vmax, v) (amsgrad);
// p += (-lr / (1 - beta1^step)) m / (sqrt(v or vmax) / sqrt(1 - beta2^step) + eps).
template <class T>
struct AdamScalars {
  T sign, wd, decay, beta2, one_minus_beta2, eps;
  Lerp<T> lerp;
};
template <class T>
AdamScalars<T> adam_scalars(const cpu::AdamOptions& o) {
  return {o.maximize ? T(-1) : T(1),
          T(o.weight_decay),
          T(o.decoupled_weight_decay ? 1 - o.lr * o.weight_decay : 1.0),
          T(o.beta2),
          T(1 - o.beta2),
          T(o.eps),
          lerp_of<T>(1 - o.beta1)};
}
// The scalars that depend on the step count (including this step, >= 1).
template <class T>
struct AdamStepScalars {
  T neg_step_size, bias_correction2_sqrt;
};
template <class T>
AdamStepScalars<T> adam_step_scalars(const cpu::AdamOptions& o, int64_t step) {
  const double bias_correction1 = 1 - std::pow(o.beta1, double(step));
  const double bias_correction2 = 1 - std::pow(o.beta2, double(step));
  return {T(-(o.lr / bias_correction1)), T(std::sqrt(bias_correction2))};
}
// e.s0: exp_avg, e.s1: exp_avg_sq, e.s2: max_exp_avg_sq.
template <class Math, bool kL2, bool kAmsgrad, class T>
DK_OPTIM_RULE Element<T> adam_rule(const AdamScalars<T>& s, const AdamStepScalars<T>& st, Element<T> e, T grad) {
  T g = grad * s.sign;
  if constexpr (kL2) g = Math::madd(e.param, s.wd, g);
  const T p = e.param * s.decay;
  e.s0 = lerp<Math>(s.lerp, e.s0, g);
  e.s1 = Math::madd(s.one_minus_beta2 * g, g, e.s1 * s.beta2);
  T vd = e.s1;
  if constexpr (kAmsgrad) {
    vd = maximum(e.s2, e.s1);
    e.s2 = vd;
  }
  const T denom = Math::sqrt(vd) / st.bias_correction2_sqrt + s.eps;
  e.param = p + st.neg_step_size * e.s0 / denom;
  return e;
}

// ---- RMSprop (torch.optim.RMSprop's foreach ops, fused) ------------------------------------------
// g = ±grad (+ wd p); sq = alpha sq + (1 - alpha) g g; centered: ga = lerp(ga, g, 1 - alpha),
// avg = sqrt(sq - ga ga) + eps, else avg = sqrt(sq) + eps; momentum: buf = momentum buf + g / avg,
// p -= lr buf; else p -= lr g / avg.
template <class T>
struct RmspropScalars {
  T sign, wd, alpha, one_minus_alpha, eps, mom, neg_lr;
  Lerp<T> lerp;
};
template <class T>
RmspropScalars<T> rmsprop_scalars(const cpu::RmspropOptions& o) {
  return {o.maximize ? T(-1) : T(1), T(o.weight_decay), T(o.alpha), T(1 - o.alpha), T(o.eps), T(o.momentum), T(-o.lr),
          lerp_of<T>(1 - o.alpha)};
}
// e.s0: square_avg, e.s1: momentum_buffer, e.s2: grad_avg.
template <class Math, bool kWd, bool kCentered, bool kMomentum, class T>
DK_OPTIM_RULE Element<T> rmsprop_rule(const RmspropScalars<T>& s, Element<T> e, T grad) {
  T g = grad * s.sign;
  if constexpr (kWd) g = Math::madd(e.param, s.wd, g);
  e.s0 = Math::madd(s.one_minus_alpha * g, g, e.s0 * s.alpha);  // addcmul
  T avg;
  if constexpr (kCentered) {
    e.s2 = lerp<Math>(s.lerp, e.s2, g);
    avg = Math::sqrt(Math::madd(-e.s2, e.s2, e.s0)) + s.eps;  // addcmul(value=-1)
  } else {
    avg = Math::sqrt(e.s0) + s.eps;
  }
  if constexpr (kMomentum) {
    e.s1 = e.s1 * s.mom + g / avg;
    e.param = Math::madd(e.s1, s.neg_lr, e.param);
  } else {
    e.param = e.param + s.neg_lr * g / avg;
  }
  return e;
}

}  // namespace deepkern::optim_rules
