// csrc/cuda/optim/optim_kernels.cu under the emulation: its launchers called with OptimTensor lists
// built from the caller's addresses. The build flags are nvcc's for that file (CMakeLists.txt:
// --fmad=false --ftz=true) in g++'s words: no contraction of a * b + c (so a multiply-add is fused
// only where a rule calls madd, std::fma/fmaf being one correctly rounded operation on either
// side), and float32 steps run with FTZ|DAZ set in MXCSR (see FlushFloat32Denormals).
// emulation-flags: -ffp-contract=off
#include "cuda/optim/optim_kernels.cu"

#include <xmmintrin.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dk_emulation/driver.h"

namespace {

using deepkern::cpu::OptimTensor;

// The list of `count` tensors described by rows of 7 int64: the addresses of param, grad and
// state[0..2] (0: the state is not used), the size, the step.
template <class T>
std::vector<OptimTensor<T>> tensor_list(const std::int64_t* rows, std::int64_t count) {
  std::vector<OptimTensor<T>> list(static_cast<size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t* r = rows + 7 * i;
    OptimTensor<T>& t = list[static_cast<size_t>(i)];
    t.param = reinterpret_cast<T*>(r[0]);
    t.grad = reinterpret_cast<const T*>(r[1]);
    for (int k = 0; k < 3; ++k) t.state[k] = reinterpret_cast<T*>(r[2 + k]);
    t.size = r[5];
    t.step = r[6];
  }
  return list;
}

// nvcc's --ftz=true for the float32 kernels: sets FTZ (bit 15) and DAZ (bit 6) of MXCSR on the
// calling thread while it lives. A launch's threads start from this thread and inherit its MXCSR,
// so every float32 operation of the kernel flushes denormal inputs and results to zero, as the
// GPU's .ftz instructions do. float64 keeps its denormals, as on the GPU.
class FlushFloat32Denormals {
 public:
  FlushFloat32Denormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushFloat32Denormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
};

// Calls step(list) with the tensor list of the element type `itemsize` names (4: float, 8: double).
template <class Step>
int run_step(std::int64_t itemsize, const std::int64_t* rows, std::int64_t count, Step step) {
  return dk_emu::guarded([&] {
    if (itemsize == 4) {
      const FlushFloat32Denormals flush;
      step(tensor_list<float>(rows, count));
    } else if (itemsize == 8) {
      step(tensor_list<double>(rows, count));
    } else {
      throw std::invalid_argument("itemsize " + std::to_string(itemsize) + " is neither 4 nor 8");
    }
  });
}

}  // namespace

DK_EMULATION_EXPORT int dk_sgd_step(std::int64_t itemsize, const std::int64_t* rows, std::int64_t count, double lr,
                                    double momentum, double dampening, double weight_decay, std::int64_t nesterov,
                                    std::int64_t maximize) {
  const deepkern::cpu::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov != 0, maximize != 0};
  return run_step(itemsize, rows, count, [&](const auto& list) {
    deepkern::cuda::sgd_step(o, list.data(), static_cast<std::int64_t>(list.size()), nullptr);
  });
}

DK_EMULATION_EXPORT int dk_adam_step(std::int64_t itemsize, const std::int64_t* rows, std::int64_t count, double lr,
                                     double beta1, double beta2, double eps, double weight_decay, std::int64_t amsgrad,
                                     std::int64_t maximize, std::int64_t decoupled_weight_decay) {
  const deepkern::cpu::AdamOptions o{lr,           beta1,        beta2,         eps,
                                     weight_decay, amsgrad != 0, maximize != 0, decoupled_weight_decay != 0};
  return run_step(itemsize, rows, count, [&](const auto& list) {
    deepkern::cuda::adam_step(o, list.data(), static_cast<std::int64_t>(list.size()), nullptr);
  });
}

DK_EMULATION_EXPORT int dk_rmsprop_step(std::int64_t itemsize, const std::int64_t* rows, std::int64_t count, double lr,
                                        double alpha, double eps, double weight_decay, double momentum,
                                        std::int64_t centered, std::int64_t maximize) {
  const deepkern::cpu::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered != 0, maximize != 0};
  return run_step(itemsize, rows, count, [&](const auto& list) {
    deepkern::cuda::rmsprop_step(o, list.data(), static_cast<std::int64_t>(list.size()), nullptr);
  });
}
