// The conversion loops of one ISA, as the table cast.cpp dispatches on. Each converts elements
// [0, n) (the driver passes one thread's range); the arrays do not overlap.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/gemm_bf16/gemm_bf16.h"

namespace deepkern::cpu {

struct CastKernels {
  void (*widen)(const bf16* src, float* dst, int64_t n);
  void (*narrow)(const float* src, bf16* dst, int64_t n);
};

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(CastKernels, cast_kernels)

}  // namespace deepkern::cpu
