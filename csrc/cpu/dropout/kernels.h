// The dropout kernels of one ISA, as the table dropout.cpp dispatches on. The arrays do not overlap.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/dropout/philox.h"

namespace deepkern::cpu {

template <class T>
struct DropoutKernels {
  // Elements [begin, end) of the call's stream (begin a multiple of 4): mask[i] = whether element
  // i is kept, y[i] = x[i] * (mask[i] ? scale : 0). The pointers are the whole arrays' starts.
  void (*forward)(const philox::DropoutParams& d, const T* x, T* y, std::uint8_t* mask, int64_t begin, int64_t end,
                  T scale);
  // out[i] = grad[i] * (mask[i] ? scale : 0) for i in [0, n).
  void (*backward)(const T* grad, const std::uint8_t* mask, T* out, int64_t n, T scale);
};

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<DropoutKernels>, dropout_kernels)

}  // namespace deepkern::cpu
