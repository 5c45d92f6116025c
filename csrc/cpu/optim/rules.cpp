// The optimizer loops of one ISA: each streams a block of elements through the shared per-element
// rules (rules.h), in loops the compiler vectorizes (#pragma omp simd). A per-ISA source (compiled
// once per ISA, in DEEPKERN_ISA_NS), always with -ffp-contract=off, so every multiply-add is fused
// exactly where a rule calls madd, as in PyTorch's vectorized CPU code: a true FMA where the ISA
// has one (at::vec::fmadd on AVX2 / AVX-512), a multiply then an add where it does not (the
// portable build). Each loop reads every input element once and writes every output once: param,
// grad and the states are each one stream.
//
// Contract of every kernel: updates elements [begin, end) of one OptimTensor in place; options
// are already validated; nothing is allocated.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cpu/optim/kernels.h"
#include "cpu/optim/rules.h"

namespace deepkern::cpu::optim::DEEPKERN_ISA_NS {
namespace {

// The rules' arithmetic on this ISA (defined here, in an unnamed namespace: each ISA's
// instantiations of the rules stay its own).
struct Math {
  template <class T>
  static T madd(T a, T b, T c) {  // a * b + c
#ifdef __FMA__
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
  }
  template <class T>
  static T sqrt(T x) {
    return std::sqrt(x);
  }
};

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

// ---- SGD -------------------------------------------------------------------------------------
template <class T, bool kWd, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_loop(const optim_rules::SgdScalars<T> s, T* __restrict p, const T* __restrict grad, T* __restrict buf,
              int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const optim_rules::Element<T> e = optim_rules::sgd_rule<Math, kWd, kMomentum, kFirst, kNesterov>(
        s, {p[i], kMomentum && !kFirst ? buf[i] : T(0), T(0), T(0)}, grad[i]);
    p[i] = e.param;
    if constexpr (kMomentum) buf[i] = e.s0;
  }
}

template <class T>
void sgd(const SgdOptions& o, const OptimTensor<T>& t, int64_t begin, int64_t end) {
  const auto s = optim_rules::sgd_scalars<T>(o);
  T* buf = o.momentum != 0 ? t.state[0] : nullptr;
  with_flag(o.weight_decay != 0, [&](auto wd) {
    with_flag(o.momentum != 0, [&](auto momentum) {
      with_flag(t.step != 0, [&](auto first) {
        with_flag(o.nesterov, [&](auto nesterov) {
          in_prefetched_blocks<T>(begin, end, {t.param, t.grad, buf}, [&](int64_t b0, int64_t b1) {
            sgd_loop<T, wd, momentum, momentum && first, momentum && nesterov>(s, t.param + b0, t.grad + b0,
                                                                               buf ? buf + b0 : nullptr, b1 - b0);
          });
        });
      });
    });
  });
}

// ---- Adam / AdamW ------------------------------------------------------------------------------
template <class T, bool kL2, bool kAmsgrad>
void adam_loop(const optim_rules::AdamScalars<T> s, const optim_rules::AdamStepScalars<T> st, T* __restrict p,
               const T* __restrict grad, T* __restrict m, T* __restrict v, T* __restrict vmax, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const optim_rules::Element<T> e =
        optim_rules::adam_rule<Math, kL2, kAmsgrad>(s, st, {p[i], m[i], v[i], kAmsgrad ? vmax[i] : T(0)}, grad[i]);
    p[i] = e.param;
    m[i] = e.s0;
    v[i] = e.s1;
    if constexpr (kAmsgrad) vmax[i] = e.s2;
  }
}

template <class T>
void adam(const AdamOptions& o, const OptimTensor<T>& t, int64_t begin, int64_t end) {
  const auto s = optim_rules::adam_scalars<T>(o);
  const auto st = optim_rules::adam_step_scalars<T>(o, t.step);
  T* vmax = o.amsgrad ? t.state[2] : nullptr;
  with_flag(o.weight_decay != 0 && !o.decoupled_weight_decay, [&](auto l2) {
    with_flag(o.amsgrad, [&](auto amsgrad) {
      in_prefetched_blocks<T>(begin, end, {t.param, t.grad, t.state[0], t.state[1], vmax}, [&](int64_t b0, int64_t b1) {
        adam_loop<T, l2, amsgrad>(s, st, t.param + b0, t.grad + b0, t.state[0] + b0, t.state[1] + b0,
                                  vmax ? vmax + b0 : nullptr, b1 - b0);
      });
    });
  });
}

// ---- RMSprop -----------------------------------------------------------------------------------
template <class T, bool kWd, bool kCentered, bool kMomentum>
void rmsprop_loop(const optim_rules::RmspropScalars<T> s, T* __restrict p, const T* __restrict grad, T* __restrict sq,
                  T* __restrict buf, T* __restrict ga, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const optim_rules::Element<T> e = optim_rules::rmsprop_rule<Math, kWd, kCentered, kMomentum>(
        s, {p[i], sq[i], kMomentum ? buf[i] : T(0), kCentered ? ga[i] : T(0)}, grad[i]);
    p[i] = e.param;
    sq[i] = e.s0;
    if constexpr (kMomentum) buf[i] = e.s1;
    if constexpr (kCentered) ga[i] = e.s2;
  }
}

template <class T>
void rmsprop(const RmspropOptions& o, const OptimTensor<T>& t, int64_t begin, int64_t end) {
  const auto s = optim_rules::rmsprop_scalars<T>(o);
  T* buf = o.momentum > 0 ? t.state[1] : nullptr;
  T* ga = o.centered ? t.state[2] : nullptr;
  with_flag(o.weight_decay != 0, [&](auto wd) {
    with_flag(o.centered, [&](auto centered) {
      with_flag(o.momentum > 0, [&](auto momentum) {
        in_prefetched_blocks<T>(begin, end, {t.param, t.grad, t.state[0], buf, ga}, [&](int64_t b0, int64_t b1) {
          rmsprop_loop<T, wd, centered, momentum>(s, t.param + b0, t.grad + b0, t.state[0] + b0,
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
