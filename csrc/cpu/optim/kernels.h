// The element-wise optimizer kernels of one ISA, as a table optim.cpp dispatches on. Each kernel
// updates elements [begin, end) of one tensor in place (see optim.h for the arrays' roles).
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/optim/optim.h"

namespace deepkern::cpu::optim {

template <class T>
struct Kernels {
  void (*sgd)(const SgdOptions&, const OptimTensor<T>&, int64_t begin, int64_t end);
  void (*adam)(const AdamOptions&, const OptimTensor<T>&, int64_t begin, int64_t end);
  void (*rmsprop)(const RmspropOptions&, const OptimTensor<T>&, int64_t begin, int64_t end);
};

// Defined by rules.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<Kernels>, kernels)

}  // namespace deepkern::cpu::optim
