// The attention kernels of one ISA, as the table attention.cpp dispatches on: each works on one row
// of a block of scores (contiguous, `cols` elements). Entries at c >= valid are masked out (causal);
// `mask` (null: none) is the row's additive mask, element c at mask[c * mask_stride].
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"
#include "cpu/dropout/philox.h"

namespace deepkern::cpu {

template <class T>
struct AttentionKernels {
  // The forward's online softmax step: x_c = s_c + mask_c; with the running max *m and sum *l of the
  // row, m' = max(*m, max_c x_c), s_c = exp(x_c - m') (0 when m' = -inf), *l = *l e^(*m - m') +
  // sum_c s_c, *m = m', and the row's accumulated output o (ev elements) is multiplied by e^(*m - m').
  void (*online_softmax)(T* s, int64_t cols, int64_t valid, const T* mask, int64_t mask_stride, T* m, T* l, T* o,
                         int64_t ev);
  // The backward's probabilities: s_c = exp((s_c + mask_c - shift) - log_sum), all 0 when shift = -inf
  // (shift = lse and log_sum = 0, or the row's max and log of its sum where lse lost the latter).
  void (*probabilities)(T* s, int64_t cols, int64_t valid, const T* mask, int64_t mask_stride, T shift, T log_sum);
  // The score gradient: dp_c = p_c (dp_c - d).
  void (*score_grad)(const T* p, T* dp, int64_t cols, T d);
  // Dropout: x_c *= (element first + c kept ? scale : 0), the Philox rule of philox.h.
  void (*dropout)(T* x, int64_t cols, std::uint64_t first, const philox::DropoutParams& d, T scale);
};

// Defined in kernels.cpp, compiled once per ISA.
DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<AttentionKernels>, attention_kernels)

}  // namespace deepkern::cpu
