// Optimizer steps: dispatches to the active ISA's kernels (kernels.h) and splits the work over threads.
//
// How work is split: the tensors of one call are laid end to end as one index space of `total`
// elements, cut into `threads` equal ranges on 16-element (64-byte float) boundaries; each thread
// walks the tensors its range covers and runs the kernel on each piece. So a list of hundreds of
// small tensors costs one parallel region, and one large tensor is split evenly. Fewer threads run
// when there are under kMinPerThread elements per thread: below that a thread start costs more than
// it saves (Adam on the project's 2-core machine, whole op call: 32K elements 34 -> 25 us with two
// threads, 16K 23 -> 23 us).
//
// Denormals: the steps run with flush-to-zero and denormals-are-zero set (then restored) on x86.
// Adam's exp_avg of a parameter whose gradient stays zero (e.g. a dead ReLU's weights) decays by
// beta1 each step into the denormal range after ~800 steps, where every multiply takes ~100 cycles:
// on `deepkern train digits-cnn` the Adam step became 6x slower from epoch 14 on (5.5 -> 35 ms per
// epoch). A value below 1.2e-38 in the state changes an update by less than float32 rounding.
#include "cpu/optim/optim.h"

#include <algorithm>
#include <cstdint>

#include "core/cpu_features.h"
#if DEEPKERN_X86
#include <immintrin.h>
#endif

#include "core/threading.h"
#include "cpu/optim/kernels.h"

namespace deepkern::cpu {
namespace {

constexpr int64_t kMinPerThread = int64_t(1) << 14;

// Sets flush-to-zero and denormals-are-zero for the calling thread while it lives.
class FlushDenormals {
 public:
#if DEEPKERN_X86
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};
constexpr int64_t kAlign = 16;

template <class T>
const optim::Kernels<T>& dispatched_kernels() {
  return dispatch(IsaFamily::optim, IsaTables{optim::generic::kernels, optim::avx2::kernels, optim::avx512::kernels})
      .of<T>();
}

// Runs kernel(options, tensor, begin, end) over every element of every tensor, split as above.
template <class T, class Options>
void run_split(void (*kernel)(const Options&, const OptimTensor<T>&, int64_t, int64_t), const Options& options,
               const OptimTensor<T>* tensors, int64_t count) {
  int64_t total = 0;
  for (int64_t i = 0; i < count; ++i) total += tensors[i].size;
  if (total == 0) return;
  const int threads = static_cast<int>(std::clamp<int64_t>(total / kMinPerThread, 1, num_threads()));
  run_on_threads(threads, [&](int t) {
    const FlushDenormals flush;
    const auto cut = [&](int k) { return k == threads ? total : total * k / threads / kAlign * kAlign; };
    const int64_t lo = cut(t), hi = cut(t + 1);
    int64_t start = 0;  // index of tensors[i]'s first element
    for (int64_t i = 0; i < count && start < hi; start += tensors[i].size, ++i) {
      const int64_t begin = std::max(lo, start), end = std::min(hi, start + tensors[i].size);
      if (end > begin) kernel(options, tensors[i], begin - start, end - start);
    }
  });
}

}  // namespace

template <class T>
void sgd_step(const SgdOptions& options, const OptimTensor<T>* tensors, int64_t count) {
  run_split(dispatched_kernels<T>().sgd, options, tensors, count);
}

template <class T>
void adam_step(const AdamOptions& options, const OptimTensor<T>* tensors, int64_t count) {
  run_split(dispatched_kernels<T>().adam, options, tensors, count);
}

template <class T>
void rmsprop_step(const RmspropOptions& options, const OptimTensor<T>* tensors, int64_t count) {
  run_split(dispatched_kernels<T>().rmsprop, options, tensors, count);
}

template void sgd_step<float>(const SgdOptions&, const OptimTensor<float>*, int64_t);
template void sgd_step<double>(const SgdOptions&, const OptimTensor<double>*, int64_t);
template void adam_step<float>(const AdamOptions&, const OptimTensor<float>*, int64_t);
template void adam_step<double>(const AdamOptions&, const OptimTensor<double>*, int64_t);
template void rmsprop_step<float>(const RmspropOptions&, const OptimTensor<float>*, int64_t);
template void rmsprop_step<double>(const RmspropOptions&, const OptimTensor<double>*, int64_t);

}  // namespace deepkern::cpu
