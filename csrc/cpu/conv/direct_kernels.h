// The direct convolution's micro-kernel (direct.cpp drives it), as one table per ISA:
// direct_kernels.cpp is compiled once per ISA, its vectors that ISA's registers.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

struct DirectConvKernels {
  int channels;      // output channels per row tile
  int vector_width;  // floats per vector
  int max_vectors;   // vectors per row tile: a tile is at most vector_width * max_vectors pixels wide
  // One tile of an output row, `channels` (of the table) output channels by `width` pixels (1 <= width <=
  // vector_width * max_vectors):
  //   out[k * ldo + q] = relu?(bias[k] + sum over taps t of w[t * channels + k] * rows[offsets[t] + q])
  // for k < channels (the tile's other channels are computed and not stored) and q < width, relu keeping
  // NaN and -0 (torch.relu); bias null: 0. rows[offsets[t] + q] is read for q up to `width` rounded up to
  // vector_width: the caller's rows extend that far. The sums are taken in order of t.
  void (*row_tile)(int64_t taps, const int64_t* offsets, const float* rows, const float* w, const float* bias,
                   int channels, int64_t width, bool relu, float* out, int64_t ldo);
};

DEEPKERN_DECLARE_ISA_TABLES(DirectConvKernels, direct_conv_kernels)

}  // namespace deepkern::cpu
