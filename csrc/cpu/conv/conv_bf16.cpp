// The bfloat16 convolution (conv_bf16.h): im2col (im2col.h, on the bf16 bits) and the bfloat16
// GEMM per block and group; a block is several small images side by side (up to kTargetColumns
// columns; Y and dY pass through a per-thread buffer) or output rows of one image:
//
//   forward      Y_g (Kg x PQ, bf16)       = W_g @ col(X_g) + bias       (gemm_bf16, bf16 C)
//   grad data    dX (float32, per image)   = sum over groups of col2im(W_g^T @ dY_g), rounded once
//   grad weight  dW (float32, per thread)  = sum over images of dY_g @ col(X_g)^T, summed, rounded once
//
// Blocks of images are spread over the threads (single-threaded GEMMs) when there are at least as
// many as threads, else they run one at a time with every thread inside each GEMM. Depthwise layers take
// the depthwise loops instead (depthwise.h: the float32 kernels plane by plane, each result rounded to
// bf16 once; the GEMM path would run Kg = 1 row products).
//
// Stride-1 layers of "same" width (writes_column_panels) write no im2col block: col(X) and col(X)^T
// go straight into the GEMM's packed panels (ShiftedColumnPanels), the weight gradient's blocks take
// ~kWeightGradientDepth pixels, and grad data, with enough input channels and finite weights, is the
// forward of dY with the taps reversed (data_gradient_as_forward).
#include "cpu/conv/conv_bf16.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/activation/activation.h"
#include "cpu/cast/cast.h"
#include "cpu/conv/column_panels.h"
#include "cpu/conv/conv_plan.h"
#include "cpu/conv/depthwise.h"
#include "cpu/conv/im2col.h"
#include "cpu/lstm/cell_kernels.h"

namespace deepkern::cpu {
namespace {

// Per-thread scratch: the im2col block, the float32 GEMM result of grad data, the float32 grad_x of
// a block's images, the block of Y or dY of several images.
struct ConvBf16Scratch;
enum Slot {
  kColumns,
  kColumnGrad,
  kImageGrad,
  kBlock,
  kRowOffsets,  // ShiftedColumnPanels' tables
  kRowTaps,
  kTapMaps,
  kReversedWeights,  // the data gradient's weights as a forward's (reversed_weights)
  kSlots
};
template <class T>
T* bf16_buffer(Slot which, int64_t count) {
  return thread_scratch<ConvBf16Scratch, kSlots, T>(which, count);
}

// Runs body(n0, n1, slot, gemm_threads) for every block of images [n0, n1): slot t takes blocks t,
// t + slots, ... with single-threaded GEMMs when spread, else slot 0 takes them all with every
// thread in the GEMMs.
template <class Body>
void for_each_image_block(const Conv2dShape& s, const Plan& sp, Body body) {
  auto run = [&](int64_t n0, int slot, int threads) { body(n0, std::min(s.batch, n0 + sp.images), slot, threads); };
  if (spread_over_slots(s, sp))
    run_on_threads(sp.slots, [&](int slot) {
      for (int64_t n0 = slot * sp.images; n0 < s.batch; n0 += sp.slots * sp.images) run(n0, slot, 1);
    });
  else
    for (int64_t n0 = 0; n0 < s.batch; n0 += sp.images) run(n0, 0, sp.slots);
}

// col(X) of images [n0, n1)'s group for output rows [p0, p1) (all rows for several images): the
// input planes when direct, else im2col into the thread's buffer, image after image along the
// columns (row stride (n1 - n0) * (p1 - p0) * Q).
StridedMatrix<const bf16> columns(const Conv2dShape& s, const Plan& sp, const bf16* x, int64_t n0, int64_t n1,
                                  int64_t group, int64_t p0, int64_t p1) {
  const uint16_t* planes = lanes(x) + (n0 * s.in_channels + group * sp.group_in) * sp.in_plane;
  if (sp.direct) return {x + (planes - lanes(x)) + p0 * s.out_w, sp.in_plane, 1};
  const int64_t per_image = (p1 - p0) * s.out_w, cols = (n1 - n0) * per_image;
  uint16_t* col = bf16_buffer<uint16_t>(kColumns, sp.col_rows * cols);
  for (int64_t n = n0; n < n1; ++n)
    im2col(s, planes + (n - n0) * s.in_channels * sp.in_plane, sp.group_in, p0, p1, col + (n - n0) * per_image, cols);
  return {reinterpret_cast<const bf16*>(col), cols, 1};
}

// Whether the forward's col(X) goes straight into the GEMM's panels (ShiftedColumnPanels): each row of
// col a shifted input plane (rows_are_shifted_planes), and not the input itself.
bool writes_column_panels(const Conv2dShape& s, const Plan& sp) { return rows_are_shifted_planes(s) && !sp.direct; }

// col(X) of images [n0, n1)'s group for output rows [p0, p1), or its transpose, as the GEMM's B panel writer
// (column_panels.h): its tables (each row's offset and tap, each tap's validity bitmap) live in
// the calling thread's scratch, the panels are written on whichever GEMM thread asks.
class ShiftedColumnPanels final : public Bf16PanelWriter {
 public:
  // transposed: B = col^T (the weight gradient's), else B = col (the forward's).
  ShiftedColumnPanels(const Conv2dShape& s, const Plan& sp, const bf16* x, int64_t n0, int64_t n1, int64_t group,
                      int64_t p0, int64_t p1, bool transposed = false)
      : kernels_(dispatch(IsaFamily::conv_columns, IsaTables{generic::column_panel_kernels, avx2::column_panel_kernels,
                                                             avx512::column_panel_kernels})),
        transposed_(transposed) {
    const int64_t taps = s.kernel_h * s.kernel_w, words = shifted_columns_words(s, p0, p1);
    columns_ = shifted_columns(
        s, sp.group_in, sp.in_plane, lanes(x) + (n0 * s.in_channels + group * sp.group_in) * sp.in_plane, n1 - n0, p0,
        p1, bf16_buffer<int64_t>(kRowOffsets, sp.col_rows), bf16_buffer<int32_t>(kRowTaps, sp.col_rows),
        bf16_buffer<uint64_t>(kTapMaps, taps * words));
  }

  void pack(int64_t j0, int64_t cols, int64_t k_padded, bf16* dst) const override {
    (transposed_ ? kernels_.pack_shifted_transposed : kernels_.pack_shifted)(columns_, j0, cols, k_padded, lanes(dst));
  }

 private:
  const ColumnPanelKernels& kernels_;
  bool transposed_;
  ShiftedColumns columns_;
};

// Group `group`'s output channels of images [n0, n1), rows [p0, p1) (all rows for several images),
// of an (N, K, P, Q) array as a Kg x columns matrix: the array itself for one image (row stride
// P * Q), else the thread's block buffer (row stride (n1 - n0) * P * Q), for output_block_planes to
// fill or empty.
StridedMatrix<bf16> output_block(const Conv2dShape& s, const Plan& sp, bf16* base, int64_t n0, int64_t n1,
                                 int64_t group, int64_t p0) {
  if (n1 - n0 == 1)
    return {base + ((n0 * s.out_channels + group * sp.group_out) * s.out_h + p0) * s.out_w, sp.pixels, 1};
  const int64_t cols = (n1 - n0) * sp.pixels;
  return {bf16_buffer<bf16>(kBlock, sp.group_out * cols), cols, 1};
}

// Runs copy(array offset, block offset) for every P * Q plane of a block of several images (above).
template <class Copy>
void output_block_planes(const Conv2dShape& s, const Plan& sp, int64_t n0, int64_t n1, int64_t group, Copy copy) {
  const int64_t cols = (n1 - n0) * sp.pixels;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t k = 0; k < sp.group_out; ++k)
      copy((n * s.out_channels + group * sp.group_out + k) * sp.pixels, k * cols + (n - n0) * sp.pixels);
}

// grad_y's output_block, filled.
StridedMatrix<const bf16> gathered(const Conv2dShape& s, const Plan& sp, const bf16* grad_y, int64_t n0, int64_t n1,
                                   int64_t group, int64_t p0) {
  const StridedMatrix<bf16> block = output_block(s, sp, const_cast<bf16*>(grad_y), n0, n1, group, p0);
  if (n1 - n0 > 1)
    output_block_planes(s, sp, n0, n1, group, [&](int64_t at, int64_t to) {
      std::memcpy(block.data + to, grad_y + at, sizeof(bf16) * sp.pixels);
    });
  return {block.data, block.row_stride, block.col_stride};
}

// grad_bias[k] = the sum of grad_y's planes of channel k, in float32, rounded once.
void bias_gradient(const Conv2dShape& s, const bf16* grad_y, bf16* grad_bias) {
  const int64_t pixels = s.out_h * s.out_w;
  // Each plane summed in kLanes interleaved float32 sums (one chain would wait on every add's latency).
  constexpr int64_t kLanes = 16;
  std::vector<float> bias_sums(static_cast<size_t>(s.out_channels), 0.0f);
  const Lane<bf16>* dy = lanes(grad_y);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t k = 0; k < s.out_channels; ++k) {
      const Lane<bf16>* plane = dy + (n * s.out_channels + k) * pixels;
      float part[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= pixels; i += kLanes)
        for (int64_t l = 0; l < kLanes; ++l) part[l] += widen<bf16>(plane[i + l]);
      for (; i < pixels; ++i) part[i % kLanes] += widen<bf16>(plane[i]);
      float sum = 0.0f;
      for (const float p : part) sum += p;
      bias_sums[k] += sum;
    }
  convert(bias_sums.data(), s.out_channels, grad_bias);
}

// The weight gradient's GEMMs with col(X)^T written as panels sum over about this many pixels each
// (whole images; at least one): its float32 dW is read and written once per GEMM, and B's packed
// panels (a block of 256 of col's rows by this depth) stay in L2.
constexpr int64_t kWeightGradientDepth = 2048;

// The weight gradient's blocks when col(X)^T is written as panels: no im2col block to bound, so
// about kWeightGradientDepth pixels: whole images, the same count for every slot, or blocks of
// output rows of one image (a larger image would make B's packed panels as deep as the image).
Plan weight_gradient_plan(const Conv2dShape& s, Plan sp) {
  const int64_t per_slot = std::max<int64_t>(1, (s.batch + sp.slots - 1) / sp.slots);
  const int64_t images = std::clamp<int64_t>(kWeightGradientDepth / std::max<int64_t>(sp.pixels, 1), 1, per_slot);
  const int64_t blocks = (per_slot + images - 1) / images;
  sp.images = (per_slot + blocks - 1) / blocks;
  const int64_t rows =
      std::clamp<int64_t>(kWeightGradientDepth / std::max<int64_t>(s.out_w, 1), 1, std::max<int64_t>(s.out_h, 1));
  sp.rows = sp.images > 1 ? s.out_h : rows;
  return sp;
}

// The least input channels per group for which the data gradient runs as a forward convolution
// (data_gradient_as_forward): that forward's GEMM has them as rows, and the register tile has 12.
constexpr int64_t kMinForwardGradientRows = 12;

// Whether grad_x may be computed as the forward convolution of grad_y with the weights reversed
// (reversed_weights, reversed_shape): a stride-1 layer of "same" width without dilation along it,
// where that forward is itself one whose col(X) goes straight into the GEMM's panels. (The sums then
// also run over the taps that read grad_y's padding, so the weights must be finite: see
// reversed_weights.)
bool data_gradient_as_forward(const Conv2dShape& s, const Plan& sp) {
  return writes_column_panels(s, sp) && s.pad_h <= (s.kernel_h - 1) * s.dilation_h &&
         sp.group_in >= kMinForwardGradientRows;
}

// The forward convolution whose output is grad_x (data_gradient_as_forward): grad_y's K channels in,
// the C channels of x out, the taps reversed, the padding what reaches every tap of an output that reads it.
Conv2dShape reversed_shape(const Conv2dShape& s) {
  Conv2dShape r = s;
  r.in_channels = s.out_channels, r.in_h = s.out_h, r.in_w = s.out_w;
  r.out_channels = s.in_channels, r.out_h = s.in_h, r.out_w = s.in_w;
  r.pad_h = (s.kernel_h - 1) * s.dilation_h - s.pad_h;
  r.pad_w = (s.kernel_w - 1) * s.dilation_w - s.pad_w;
  return r;
}

// w (K, C/g, R, S) as the reversed forward's weights (C, K/g, R, S): w'[c][k][r][t] =
// w[k][c][R-1-r][S-1-t] within each group, in the calling thread's scratch; null when w holds an Inf or
// a NaN (the forward would multiply them by grad_y's zero padding: NaN where the data gradient sums
// only the taps that read x).
const bf16* reversed_weights(const Conv2dShape& s, const Plan& sp, const bf16* w) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  uint16_t* reversed = bf16_buffer<uint16_t>(kReversedWeights, s.out_channels * sp.col_rows);
  const uint16_t* from = lanes(w);
  uint16_t infinite = 0;          // 0x7f80 once an exponent is all ones (an Inf or a NaN)
  constexpr int64_t kBlock = 16;  // k per pass: 16 rows of w read in order, w' written in order
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t k0 = 0; k0 < sp.group_out; k0 += kBlock)
      for (int64_t c = 0; c < sp.group_in; ++c)
        for (int64_t k = k0; k < std::min(sp.group_out, k0 + kBlock); ++k) {
          const uint16_t* src = from + ((g * sp.group_out + k) * sp.group_in + c) * taps;
          uint16_t* dst = reversed + ((g * sp.group_in + c) * sp.group_out + k) * taps;
          for (int64_t i = 0; i < taps; ++i) {
            dst[i] = src[taps - 1 - i];
            infinite |= static_cast<uint16_t>((dst[i] & 0x7f80u) == 0x7f80u ? 0x7f80u : 0u);
          }
        }
  return !infinite ? reinterpret_cast<const bf16*>(reversed) : nullptr;
}

}  // namespace

template <>
void conv2d_forward<bf16>(const Conv2dShape& s, const bf16* x, const bf16* w, const bf16* bias, bf16* y,
                          const ConvPackedWeights<bf16>&, bool relu) {
  if (is_depthwise(s)) {
    record_conv2d_forward_path("depthwise");
    depthwise_forward(s, x, w, bias, y);
    if (relu) cpu::relu(y, y, s.batch * s.out_channels * s.out_h * s.out_w);
    return;
  }
  const Plan sp = make_plan<bf16>(s);
  for_each_image_block(s, sp, [&](int64_t n0, int64_t n1, int, int threads) {
    for (int64_t p0 = 0; p0 < s.out_h; p0 += sp.rows) {
      const int64_t p1 = std::min(s.out_h, p0 + sp.rows), cols = (n1 - n0) * (p1 - p0) * s.out_w;
      for (int64_t group = 0; group < s.groups; ++group) {
        const int64_t k0 = group * sp.group_out;
        GemmEpilogue<bf16> epilogue = group_bias(bias, k0);
        epilogue.relu = relu;
        const StridedMatrix<bf16> out = output_block(s, sp, y, n0, n1, group, p0);
        const StridedMatrix<const bf16> weights{w + k0 * sp.col_rows, sp.col_rows, 1};
        if (writes_column_panels(s, sp))
          gemm_bf16<bf16>(sp.group_out, cols, sp.col_rows, 1.0f, weights,
                          ShiftedColumnPanels(s, sp, x, n0, n1, group, p0, p1), 0.0f, out, epilogue, threads);
        else
          gemm_bf16<bf16>(sp.group_out, cols, sp.col_rows, 1.0f, weights, columns(s, sp, x, n0, n1, group, p0, p1),
                          0.0f, out, epilogue, threads);
        if (n1 - n0 > 1)
          output_block_planes(s, sp, n0, n1, group, [&](int64_t at, int64_t from) {
            std::memcpy(y + at, out.data + from, sizeof(bf16) * sp.pixels);
          });
      }
    }
  });
}

template <>
void conv2d_backward_data<bf16>(const Conv2dShape& s, const bf16* grad_y, const bf16* w, bf16* grad_x) {
  if (is_depthwise(s)) return depthwise_backward_data(s, grad_y, w, grad_x);
  const Plan sp = make_plan<bf16>(s);
  const int64_t image = s.in_channels * sp.in_plane;
  if (data_gradient_as_forward(s, sp))
    if (const bf16* reversed = reversed_weights(s, sp, w))
      return conv2d_forward<bf16>(reversed_shape(s), grad_y, reversed, nullptr, grad_x, {});
  for_each_image_block(s, sp, [&](int64_t n0, int64_t n1, int, int threads) {
    bf16* dx = grad_x + n0 * image;
    // The direct case needs no col2im: each group's GEMM writes its planes of grad_x, rounded once.
    float* acc = sp.direct ? nullptr : bf16_buffer<float>(kImageGrad, (n1 - n0) * image);
    if (acc) std::fill(acc, acc + (n1 - n0) * image, 0.0f);
    for (int64_t group = 0; group < s.groups; ++group) {
      const int64_t k0 = group * sp.group_out, c0 = group * sp.group_in;
      const StridedMatrix<const bf16> w_t{w + k0 * sp.col_rows, 1, sp.col_rows};
      for (int64_t p0 = 0; p0 < s.out_h; p0 += sp.rows) {
        const int64_t p1 = std::min(s.out_h, p0 + sp.rows), per_image = (p1 - p0) * s.out_w;
        const int64_t cols = (n1 - n0) * per_image;
        const StridedMatrix<const bf16> dy = gathered(s, sp, grad_y, n0, n1, group, p0);
        if (sp.direct) {
          gemm_bf16<bf16>(sp.group_in, cols, sp.group_out, 1.0f, w_t, dy, 0.0f,
                          {dx + c0 * sp.in_plane + p0 * s.out_w, sp.in_plane, 1}, {}, threads);
          continue;
        }
        float* dcol = bf16_buffer<float>(kColumnGrad, sp.col_rows * cols);
        gemm_bf16<float>(sp.col_rows, cols, sp.group_out, 1.0f, w_t, dy, 0.0f, {dcol, cols, 1}, {}, threads);
        for (int64_t n = n0; n < n1; ++n)
          col2im_add(s, dcol + (n - n0) * per_image, sp.group_in, p0, p1, cols,
                     acc + (n - n0) * image + c0 * sp.in_plane);
      }
    }
    if (acc) convert(acc, (n1 - n0) * image, dx);
  });
}

template <>
void conv2d_backward_weight<bf16>(const Conv2dShape& s, const bf16* grad_y, const bf16* x, bf16* grad_w,
                                  bf16* grad_bias) {
  if (is_depthwise(s)) {
    depthwise_backward_weight(s, grad_y, x, grad_w);
    if (grad_bias) bias_gradient(s, grad_y, grad_bias);
    return;
  }
  const Plan im2col_plan = make_plan<bf16>(s);
  const bool panels = writes_column_panels(s, im2col_plan);
  const Plan sp = panels ? weight_gradient_plan(s, im2col_plan) : im2col_plan;
  const int64_t weight_size = s.out_channels * sp.col_rows;
  // One float32 sum per slot (the images it takes), added together and rounded at the end.
  std::vector<float> sums(static_cast<size_t>((spread_over_slots(s, sp) ? sp.slots : 1) * weight_size), 0.0f);
  for_each_image_block(s, sp, [&](int64_t n0, int64_t n1, int slot, int threads) {
    float* dw = sums.data() + slot * weight_size;
    for (int64_t group = 0; group < s.groups; ++group) {
      const int64_t k0 = group * sp.group_out;
      for (int64_t p0 = 0; p0 < s.out_h; p0 += sp.rows) {
        const int64_t p1 = std::min(s.out_h, p0 + sp.rows), cols = (n1 - n0) * (p1 - p0) * s.out_w;
        const StridedMatrix<const bf16> dy = gathered(s, sp, grad_y, n0, n1, group, p0);
        const StridedMatrix<float> dw_g{dw + k0 * sp.col_rows, sp.col_rows, 1};
        if (panels) {
          gemm_bf16<float>(sp.group_out, sp.col_rows, cols, 1.0f, dy,
                           ShiftedColumnPanels(s, sp, x, n0, n1, group, p0, p1, true), 1.0f, dw_g, {}, threads);
          continue;
        }
        const StridedMatrix<const bf16> col = columns(s, sp, x, n0, n1, group, p0, p1);
        gemm_bf16<float>(sp.group_out, sp.col_rows, cols, 1.0f, dy, {col.data, col.col_stride, col.row_stride}, 1.0f,
                         dw_g, {}, threads);
      }
    }
  });
  for (size_t part = 1; part * weight_size < sums.size(); ++part)
    for (int64_t i = 0; i < weight_size; ++i) sums[i] += sums[part * weight_size + i];
  convert(sums.data(), weight_size, grad_w);
  if (grad_bias) bias_gradient(s, grad_y, grad_bias);
}

}  // namespace deepkern::cpu
