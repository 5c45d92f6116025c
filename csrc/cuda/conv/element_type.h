// The element type of a convolution's precision, shared by the conv family's kernels (include from
// .cu files only).
#pragma once
#include <cuda_bf16.h>

#include <utility>

#include "cuda/gemm/gemm.h"

namespace deepkern::cuda::conv_detail {

// Calls run(T{}) with the element type of `precision`: __nv_bfloat16 for bf16, else float.
template <class Run>
void with_element_type(GemmPrecision precision, Run&& run) {
  if (precision == GemmPrecision::bf16) {
    std::forward<Run>(run)(__nv_bfloat16{});
  } else {
    std::forward<Run>(run)(float{});
  }
}

}  // namespace deepkern::cuda::conv_detail
