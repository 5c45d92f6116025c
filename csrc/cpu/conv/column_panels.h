// col(X) written straight into the GEMMs' packed B panels, for the convolutions whose im2col rows are
// shifted input planes (im2col.h's im2col_shifted_planes: stride 1, dilation_w 1, Q == W): no im2col
// buffer is written and read back. bfloat16: the bfloat16 GEMM's panels (kernels.h's layout, panels
// of kBf16PanelWidth columns, VNNI pair rows), col(X) for the forward and col(X)^T for the weight
// gradient; float32: the float GEMM's panels (gemm.h's packed_b_layout) of col(X). One table per ISA
// (column_panels_kernels.cpp, compiled per ISA).
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

// col(X) of a block of whole images' output rows p0 .. p1 (per_image = (p1 - p0) * Q columns per
// image, image after image). With Q == W, row (c, r, t) of col at an image's pixel i (its output
// row p0 + i / Q) is x[row_offset + i] of that image, or zero where the tap reads padding.
struct ShiftedColumns {
  const void* x;              // the block's first image's first channel plane (of the group)
  int64_t image_stride;       // elements from one image's planes to the next's
  int64_t per_image;          // columns per image
  int64_t images;             // images of the block: images * per_image columns
  int64_t k;                  // rows of col: Cg * R * S
  const int64_t* row_offset;  // per row of col: the element (from x) that pixel 0 reads (may lie outside)
  const int32_t* row_tap;     // per row of col: its tap (r * S + t)
  int taps;                   // R * S
  // Per tap, tap_words words of bits: bit i set where pixel i reads inside the image (per_image bits,
  // then at least 64 spare ones of any value).
  const uint64_t* tap_valid;
  int64_t tap_words;
};

struct ColumnPanelKernels {
  // Writes B = col(X)'s columns j0 .. j0 + cols (any, across images) as the GEMM's packed panels:
  // panel q at dst + q * k_padded * 32, B(p, j) at panel[(p / 2 * 32 + j) * 2 + p % 2]; zero past
  // k rows (up to k_padded, even) and past cols (up to the last panel's end).
  void (*pack_shifted)(const ShiftedColumns& b, int64_t j0, int64_t cols, int64_t k_padded, uint16_t* dst);
  // The same for B = col(X)^T (the weight gradient's): B's columns j0 .. j0 + cols are rows of col,
  // its k_padded rows the block's columns (pairs of them: VNNI pairs run along col's rows), zero past
  // images * per_image and past cols.
  void (*pack_shifted_transposed)(const ShiftedColumns& b, int64_t j0, int64_t cols, int64_t k_padded, uint16_t* dst);
  // float32 x: writes B = col(X)'s columns j0 .. j0 + cols as the float GEMM's packed panels of nr <= 32
  // columns: panel q at dst + q * k * nr, B(p, j) at panel[p * nr + (j - j0) % nr]; zero past cols (up to
  // the last panel's end).
  void (*pack_shifted_float)(const ShiftedColumns& b, int64_t j0, int64_t cols, int nr, float* dst);
};

DEEPKERN_DECLARE_ISA_TABLES(ColumnPanelKernels, column_panel_kernels)

}  // namespace deepkern::cpu
