// The element-wise optimizer kernels of one ISA, as a table optim.cpp dispatches on. Each kernel
// updates elements [begin, end) of one tensor in place (see optim.h for the arrays' roles).
#pragma once
#include <cstdint>

#include "cpu/optim/optim.h"

namespace deepkern::cpu::optim {

template <class T>
struct Kernels {
  void (*sgd)(const SgdOptions&, const OptimTensor<T>&, int64_t begin, int64_t end);
  void (*adam)(const AdamOptions&, const OptimTensor<T>&, int64_t begin, int64_t end);
  void (*rmsprop)(const RmspropOptions&, const OptimTensor<T>&, int64_t begin, int64_t end);
};

// Defined in kernels_<isa>.cpp, each compiled with that ISA's flags from rules.h.
namespace avx512 { extern const Kernels<float> kernels_f32; extern const Kernels<double> kernels_f64; }
namespace avx2 { extern const Kernels<float> kernels_f32; extern const Kernels<double> kernels_f64; }
namespace generic { extern const Kernels<float> kernels_f32; extern const Kernels<double> kernels_f64; }

}  // namespace deepkern::cpu::optim
