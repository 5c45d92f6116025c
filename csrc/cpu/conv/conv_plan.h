// How a convolution's GEMM paths cut a call into blocks (conv.cpp in float32/float64, conv_bf16.cpp
// in bfloat16): the Plan of a shape, made in one place. Each translation unit keeps its own copy.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/threading.h"
#include "cpu/gemm/gemm.h"
#include "cpu/conv/conv.h"
#include "cpu/conv/im2col.h"

namespace deepkern::cpu {
namespace {

// Bound on each thread's im2col block.
constexpr int64_t kMaxColumnBytes = int64_t(8) << 20;
// Small images are batched until a GEMM has about this many columns (16 AVX-512 panels), so a
// 7x7 layer does not run 49-column GEMMs that leave a third of the last panel empty.
constexpr int64_t kTargetColumns = 512;
// The inference plan (see the top of the file): batches up to this size, im2col row blocks of about
// this many bytes, but at least kMinRowBlockColumns columns (a GEMM narrower than that loses more
// in packing than it gains in cache).
constexpr int64_t kInferenceBatch = 4;
constexpr int64_t kRowBlockBytes = int64_t(512) << 10;
constexpr int64_t kMinRowBlockColumns = 256;
// The GEMM's A block (mc rows): the most columns a transposed block may have, and the most output
// channels whose row blocks have im2col write the GEMM's B panels (see make_plan).
constexpr int64_t kGemmRowBlock = 240;

// How the batch is cut into GEMMs: blocks of `images` whole images, or (images == 1) of `rows`
// output rows of one image; blocks are spread over `slots` threads.
struct Plan {
  int64_t group_in, group_out;  // Cg, Kg
  int64_t col_rows;             // Cg * R * S
  int64_t pixels;               // P * Q
  int64_t in_plane;             // H * W
  bool direct;                  // 1x1, stride 1, no padding, one image per block: col(X) is X
  int64_t images, rows;         // block size
  bool row_blocks_spread;       // the inference plan: (image, row block) pairs spread over slots
  int64_t row_blocks;           // with row_blocks_spread: blocks per image, of equal rows (+-1)
  bool transposed;              // forward blocks computed as Y^T = col^T W^T (see conv2d_forward)
  bool packed_columns;          // forward row blocks whose im2col writes the GEMM's packed B panels
  bool shifted_panels;          // float32 forward blocks whose col(X) the column_panels kernels write as B panels
  int slots;
};

// The plan of a call; `forward` allows the inference plan (its row blocks of one image are
// computed by different threads, which only the forward's disjoint outputs allow).
template <class T>
Plan make_plan(const Conv2dShape& s, bool forward = false) {
  Plan plan;
  plan.group_in = s.in_channels / s.groups;
  plan.group_out = s.out_channels / s.groups;
  plan.col_rows = plan.group_in * s.kernel_h * s.kernel_w;
  plan.pixels = s.out_h * s.out_w;
  plan.in_plane = s.in_h * s.in_w;
  plan.slots = num_threads();
  const int64_t column_bytes = std::max<int64_t>(1, plan.col_rows * int64_t(sizeof(T)));
  plan.images = 1;
  if (plan.pixels < kTargetColumns && s.batch > 1) {
    const int64_t per_slot = (s.batch + plan.slots - 1) / plan.slots;
    int64_t images = std::min(per_slot, (kTargetColumns + plan.pixels - 1) / plan.pixels);
    images =
        std::max<int64_t>(1, std::min(images, kMaxColumnBytes / (column_bytes * std::max<int64_t>(plan.pixels, 1))));
    const int64_t blocks_per_slot = (per_slot + images - 1) / images;
    plan.images = (per_slot + blocks_per_slot - 1) / blocks_per_slot;  // equal blocks per slot
    // An inference batch whose weights outnumber its columns (512 channels at 7 x 7, batch 4) is one
    // block computed by all threads: blocks spread over the threads would each read all the weights.
    const bool weights_dominate = plan.group_out > s.batch * plan.pixels;
    if (forward && s.batch <= kInferenceBatch && weights_dominate &&
        column_bytes * s.batch * plan.pixels <= kMaxColumnBytes)
      plan.images = s.batch;
  }
  plan.direct = plan.images == 1 && columns_are_input(s);
  plan.rows = plan.images > 1 || plan.direct ? s.out_h : rows_within(s, column_bytes, kMaxColumnBytes);
  plan.row_blocks_spread = forward && s.batch <= kInferenceBatch && plan.pixels >= kTargetColumns;
  plan.row_blocks = 1;
  if (plan.row_blocks_spread) {
    const int64_t min_rows = (kMinRowBlockColumns + s.out_w - 1) / std::max<int64_t>(s.out_w, 1);
    plan.rows = std::max(rows_within(s, column_bytes, kRowBlockBytes), std::min(min_rows, s.out_h));
    plan.row_blocks = (s.out_h + plan.rows - 1) / plan.rows;
    // Every slot gets as many blocks (a 28-row image in blocks of 18 + 10 rows kept one of two threads
    // idle a third of the time): the next count up to twice as many that the slots share evenly.
    for (int64_t blocks = plan.row_blocks; blocks <= std::min(2 * plan.row_blocks, s.out_h); ++blocks)
      if (s.batch * blocks % plan.slots == 0) {
        plan.row_blocks = blocks;
        break;
      }
    if (s.batch * plan.row_blocks < plan.slots) plan.row_blocks_spread = false;  // one block: threads in the GEMM
  }
  // A forward block with fewer columns (pixels) than each thread's share of the output channels, all
  // of them in one row panel block of the GEMM, runs transposed: the pixels become the GEMM's short
  // side (rows, tiles of 12 with short tiles for the rest, where 49 columns filled two 32-wide panels to
  // 77%) and each thread packs its share of the weights once, just before use. (With a share smaller
  // than the pixels, 256 channels at 14 x 14 on 2 threads, the plain GEMM was 1.3x faster.)
  const int64_t block_columns = std::min(plan.images, std::max<int64_t>(s.batch, 1)) * plan.rows * s.out_w;
  plan.transposed = forward && !plan.row_blocks_spread && s.batch <= kInferenceBatch &&
                    block_columns * plan.slots < plan.group_out && block_columns <= kGemmRowBlock;
  // The split-row im2col of a layer with few output channels (the 7x7/2 stem: 64) writes the GEMM's B
  // panels itself: the GEMM would otherwise copy each column panel again for only 64 rows of A.
  plan.packed_columns = plan.row_blocks_spread && plan.group_out <= kGemmRowBlock && splits_rows(s);
  // Other float32 forward blocks whose col(X) rows are shifted input planes have them written into the
  // GEMM's packed B panels by column_panels.h's masked loads: im2col's copy and fills per tap and output
  // row took a fifth of an 8 x 8 layer's time at batch 1.
  plan.shifted_panels = forward && std::is_same_v<T, float> && rows_are_shifted_planes(s) && !plan.direct &&
                        !plan.transposed && !plan.packed_columns;
  return plan;
}

// True when the blocks are spread over the slots (see for_each_block).
bool spread_over_slots(const Conv2dShape& s, const Plan& plan) {
  const int64_t image_blocks = (s.batch + plan.images - 1) / plan.images;
  return plan.slots > 1 && image_blocks >= plan.slots;
}

// The GEMM epilogue of a group's output rows (channels k0 ...): its bias per row, or none.
template <class T>
GemmEpilogue<T> group_bias(const T* bias, int64_t k0) {
  GemmEpilogue<T> epilogue;
  if (bias) {
    epilogue.bias = bias + k0;
    epilogue.bias_axis = BiasAxis::rows;
  }
  return epilogue;
}

}  // namespace
}  // namespace deepkern::cpu
