// The update rules of SGD, Adam/AdamW and RMSprop, one element at a time, in loops the compiler
// vectorizes (#pragma omp simd). A per-ISA source (compiled once per ISA, in DEEPKERN_ISA_NS),
// always with -ffp-contract=off, so every multiply-add below is fused exactly where written
// (madd), as in PyTorch's vectorized CPU code: a true FMA where the ISA has one (at::vec::fmadd
// on AVX2 / AVX-512), a multiply then an add where it does not (the portable build). Each loop
// reads every input element once and writes every output once: param, grad and the states are
// each one stream.
//
// Contract of every kernel: updates elements [begin, end) of one OptimTensor in place; options
// are already validated; nothing is allocated.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cpu/optim/kernels.h"

namespace deepkern::cpu::optim::DEEPKERN_ISA_NS {
namespace {

template <class T>
inline T madd(T a, T b, T c) {  // a * b + c
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// torch.lerp(start, end, weight) for a scalar weight, as ATen computes it: start + w (end - start)
// when |w| < 0.5, else end - (1 - w)(end - start), each as one multiply-add.
template <class T>
struct Lerp {
  explicit Lerp(double weight)
      : coeff(std::abs(T(weight)) < T(0.5) ? T(weight) : T(weight) - T(1)), small(std::abs(T(weight)) < T(0.5)) {}
  T operator()(T start, T end) const { return madd(coeff, end - start, small ? start : end); }
  T coeff;
  bool small;
};

// max(a, b) that returns a NaN from either side (torch.maximum).
template <class T>
inline T maximum(T a, T b) {
  return a != a ? a : (a > b ? a : b);
}

// Runs loop(b0, b1) over [begin, end) in blocks of kBlock elements, first prefetching the block
// kAhead elements further on, line by line across every non-null stream: the hardware prefetchers
// alone left a large step short of the DRAM bandwidth (100M-parameter Adam at 2 threads: 61-63 ->
// 57-59 ms; 2 KB to 4 KB ahead was best, 16 KB ahead slower than none, and one stream's lines
// after another's gained half as much as this interleaved order).
template <class T, class Loop>
inline void in_prefetched_blocks(int64_t begin, int64_t end, std::initializer_list<const T*> streams, Loop loop) {
  constexpr int64_t kBlock = 128, kAhead = 1024, kLine = 64 / sizeof(T);
  for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
    const int64_t ahead = b0 + kAhead, ahead_end = std::min(end, ahead + kBlock);
    for (int64_t e = ahead; e < ahead_end; e += kLine)
      for (const T* stream : streams)
        if (stream) __builtin_prefetch(stream + e);
    loop(b0, std::min(end, b0 + kBlock));
  }
}

// Calls f(std::true_type / std::false_type): a run-time flag becomes a template argument, so each
// combination of options gets its own branch-free loop.
template <class F>
inline void with_flag(bool flag, F&& f) {
  if (flag)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// ---- SGD (ATen's fused CPU SGD) ----------------------------------------------------------------
// g = ±grad (+ wd p); buf = first ? g : momentum buf + (1 - dampening) g; g = nesterov ? g + momentum
// buf : buf; p -= lr g.
template <class T, bool kWd, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_loop(const SgdOptions& o, T* __restrict p, const T* __restrict grad, T* __restrict buf, int64_t n) {
  const T sign = o.maximize ? T(-1) : T(1), wd = T(o.weight_decay), mom = T(o.momentum);
  const T keep = T(1 - o.dampening), neg_lr = T(-o.lr);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] * sign;
    if constexpr (kWd) g = madd(p[i], wd, g);
    if constexpr (kMomentum) {
      const T b = kFirst ? g : madd(keep, g, buf[i] * mom);
      buf[i] = b;
      g = kNesterov ? madd(b, mom, g) : b;
    }
    p[i] = madd(g, neg_lr, p[i]);
  }
}

template <class T>
void sgd(const SgdOptions& o, const OptimTensor<T>& t, int64_t begin, int64_t end) {
  T* buf = o.momentum != 0 ? t.state[0] : nullptr;
  with_flag(o.weight_decay != 0, [&](auto wd) {
    with_flag(o.momentum != 0, [&](auto momentum) {
      with_flag(t.step != 0, [&](auto first) {
        with_flag(o.nesterov, [&](auto nesterov) {
          in_prefetched_blocks<T>(begin, end, {t.param, t.grad, buf}, [&](int64_t b0, int64_t b1) {
            sgd_loop<T, wd, momentum, momentum && first, momentum && nesterov>(o, t.param + b0, t.grad + b0,
                                                                               buf ? buf + b0 : nullptr, b1 - b0);
          });
        });
      });
    });
  });
}

// ---- Adam / AdamW (ATen's fused CPU Adam) --------------------------------------------------------
// g = ±grad (+ wd p: Adam's L2); p *= 1 - lr wd (AdamW); m = lerp(m, g, 1 - beta1);
// v = beta2 v + (1 - beta2) g g; vmax = max(vmax, v) (amsgrad);
// p += (-lr / (1 - beta1^step)) m / (sqrt(v or vmax) / sqrt(1 - beta2^step) + eps).
template <class T, bool kL2, bool kAmsgrad>
void adam_loop(const AdamOptions& o, int64_t step, T* __restrict p, const T* __restrict grad, T* __restrict m,
               T* __restrict v, T* __restrict vmax, int64_t n) {
  const double bias_correction1 = 1 - std::pow(o.beta1, double(step));
  const double bias_correction2 = 1 - std::pow(o.beta2, double(step));
  const T sign = o.maximize ? T(-1) : T(1), wd = T(o.weight_decay);
  const T decay = T(o.decoupled_weight_decay ? 1 - o.lr * o.weight_decay : 1.0);
  const Lerp<T> lerp(1 - o.beta1);
  const T beta2 = T(o.beta2), one_minus_beta2 = T(1 - o.beta2), eps = T(o.eps);
  const T neg_step_size = T(-(o.lr / bias_correction1)), bias_correction2_sqrt = T(std::sqrt(bias_correction2));
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] * sign;
    T param = p[i];
    if constexpr (kL2) g = madd(param, wd, g);
    param = param * decay;
    const T mi = lerp(m[i], g);
    const T vi = madd(one_minus_beta2 * g, g, v[i] * beta2);
    m[i] = mi;
    v[i] = vi;
    T vd = vi;
    if constexpr (kAmsgrad) {
      vd = maximum(vmax[i], vi);
      vmax[i] = vd;
    }
    const T denom = std::sqrt(vd) / bias_correction2_sqrt + eps;
    p[i] = param + neg_step_size * mi / denom;
  }
}

template <class T>
void adam(const AdamOptions& o, const OptimTensor<T>& t, int64_t begin, int64_t end) {
  T* vmax = o.amsgrad ? t.state[2] : nullptr;
  with_flag(o.weight_decay != 0 && !o.decoupled_weight_decay, [&](auto l2) {
    with_flag(o.amsgrad, [&](auto amsgrad) {
      in_prefetched_blocks<T>(begin, end, {t.param, t.grad, t.state[0], t.state[1], vmax}, [&](int64_t b0, int64_t b1) {
        adam_loop<T, l2, amsgrad>(o, t.step, t.param + b0, t.grad + b0, t.state[0] + b0, t.state[1] + b0,
                                  vmax ? vmax + b0 : nullptr, b1 - b0);
      });
    });
  });
}

// ---- RMSprop (torch.optim.RMSprop's foreach ops, fused) ------------------------------------------
// g = ±grad (+ wd p); sq = alpha sq + (1 - alpha) g g; centered: ga = lerp(ga, g, 1 - alpha),
// avg = sqrt(sq - ga ga) + eps, else avg = sqrt(sq) + eps; momentum: buf = momentum buf + g / avg,
// p -= lr buf; else p -= lr g / avg.
template <class T, bool kWd, bool kCentered, bool kMomentum>
void rmsprop_loop(const RmspropOptions& o, T* __restrict p, const T* __restrict grad, T* __restrict sq,
                  T* __restrict buf, T* __restrict ga, int64_t n) {
  const T sign = o.maximize ? T(-1) : T(1), wd = T(o.weight_decay), alpha = T(o.alpha);
  const T one_minus_alpha = T(1 - o.alpha), eps = T(o.eps), mom = T(o.momentum), neg_lr = T(-o.lr);
  const Lerp<T> lerp(1 - o.alpha);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T g = grad[i] * sign;
    if constexpr (kWd) g = madd(p[i], wd, g);
    T s = sq[i] * alpha;
    s = madd(one_minus_alpha * g, g, s);  // addcmul
    sq[i] = s;
    T avg;
    if constexpr (kCentered) {
      const T a = lerp(ga[i], g);
      ga[i] = a;
      avg = std::sqrt(madd(-a, a, s)) + eps;  // addcmul(value=-1)
    } else {
      avg = std::sqrt(s) + eps;
    }
    if constexpr (kMomentum) {
      T b = buf[i] * mom;
      b = b + g / avg;
      buf[i] = b;
      p[i] = madd(b, neg_lr, p[i]);
    } else {
      p[i] = p[i] + neg_lr * g / avg;
    }
  }
}

template <class T>
void rmsprop(const RmspropOptions& o, const OptimTensor<T>& t, int64_t begin, int64_t end) {
  T* buf = o.momentum > 0 ? t.state[1] : nullptr;
  T* ga = o.centered ? t.state[2] : nullptr;
  with_flag(o.weight_decay != 0, [&](auto wd) {
    with_flag(o.centered, [&](auto centered) {
      with_flag(o.momentum > 0, [&](auto momentum) {
        in_prefetched_blocks<T>(begin, end, {t.param, t.grad, t.state[0], buf, ga}, [&](int64_t b0, int64_t b1) {
          rmsprop_loop<T, wd, centered, momentum>(o, t.param + b0, t.grad + b0, t.state[0] + b0,
                                                  buf ? buf + b0 : nullptr, ga ? ga + b0 : nullptr, b1 - b0);
        });
      });
    });
  });
}

template <class T>
constexpr Kernels<T> kernels_of = {.sgd = &sgd<T>, .adam = &adam<T>, .rmsprop = &rmsprop<T>};

}  // namespace

const KernelsByType<Kernels> kernels = {.f32 = kernels_of<float>, .f64 = kernels_of<double>};

}  // namespace deepkern::cpu::optim::DEEPKERN_ISA_NS
