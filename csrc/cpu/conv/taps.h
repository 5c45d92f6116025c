// Geometry shared by the convolution kernels.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu/conv/conv.h"

namespace deepkern::cpu {

// For a kernel column whose input column is q * stride_w + w_offset (w_offset = s * dilation_w -
// pad_w), the output columns [q_lo, q_hi) that read inside [0, W).
inline void valid_columns(const Conv2dShape& s, int64_t w_offset, int64_t& q_lo, int64_t& q_hi) {
  q_lo = w_offset >= 0 ? 0 : (-w_offset + s.stride_w - 1) / s.stride_w;
  q_hi = s.in_w - 1 - w_offset < 0 ? 0 : std::min(s.out_w, (s.in_w - 1 - w_offset) / s.stride_w + 1);
  q_lo = std::min(q_lo, q_hi);
}

}  // namespace deepkern::cpu
