// 2-D convolution: the entry points of conv.h. Depthwise layers go to direct loops
// (depthwise.cpp), float32 forwards of layers with few input channels (the stem) to the direct
// convolution (direct.cpp), 3x3 stride-1 layers with enough channels to Winograd (F(4x4, 3x3) or
// F(2x2, 3x3) forward, F(2x2, 3x3) backward; winograd.cpp) unless its operands hold Inf or NaN;
// everything else runs here as GEMMs per image and group (the blocked GEMM of csrc/cpu/gemm does the work):
//
//   forward      Y_g (Kg x PQ)    = W_g (Kg x CgRS) @ col(X_g) (CgRS x PQ)   + bias (per row)
//   grad data    dX_g             = col2im(W_g^T (CgRS x Kg) @ dY_g (Kg x PQ))
//   grad weight  dW_g (Kg x CgRS) = sum over images of dY_g @ col(X_g)^T
//
// col(X) is the im2col matrix: row (c, r, s), column (p, q) holds x[c][p*sh - ph + r*dh]
// [q*sw - pw + s*dw], zero outside the image. It is built per thread for one block of columns at
// a time (at most kMaxColumnBytes), so no full-size im2col buffer is ever allocated: a block is
// a range of output rows of one image, or, for small images, several whole images side by side
// (so the GEMM has enough columns; Y and dY of such blocks pass through a per-thread buffer).
// A 1x1 convolution with stride 1 and no padding needs no im2col: the input planes are col(X).
// Blocks are spread over threads (one single-threaded GEMM each) when there are at least as many
// blocks as threads; otherwise they run one at a time with the threads inside each GEMM (and
// each im2col, split by input channels).
// Inference batches (forward, batch <= kInferenceBatch, images of at least kTargetColumns
// pixels) cut each image into row blocks whose im2col block stays in L2 (kRowBlockBytes) and
// spread the (image, row block) pairs over the threads: the split over images alone leaves
// threads idle, and the im2col of a whole image runs on one thread and out of cache. Their small
// blocks run as Y^T = col^T W^T when they have fewer pixels than output channels (col^T built row by
// row from zero-bordered input rows, im2col_rows, where the GEMM's dot path reads it and W in place or
// W^T was packed once by the caller, ConvPackedWeights::gemm; else the GEMM computes Y = W col on
// the im2col block), and the stride-2
// im2col of a layer with few output channels writes the GEMM's packed panels (see make_plan).
#include "cpu/conv/conv.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/activation/activation.h"
#include "cpu/conv/depthwise.h"
#include "cpu/conv/direct.h"
#include "cpu/conv/conv_plan.h"
#include "cpu/conv/im2col.h"
#include "cpu/conv/taps.h"
#include "cpu/conv/winograd.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {
namespace {

// One block of the batch: images [n0, n1), output rows [p0, p1) (all rows when n1 - n0 > 1).
struct Block {
  int64_t n0, n1, p0, p1;
  int64_t columns(const Conv2dShape& s) const { return (n1 - n0) * (p1 - p0) * s.out_w; }
};

// Runs body(block, slot, gemm_threads) for every block of the plan. With at least as many blocks
// of images as slots, slot t takes image blocks t, t + slots, ... (each with all its row blocks,
// so two threads never add into the same image's grad_x) with single-threaded GEMMs; otherwise
// blocks run in order in slot 0 with every thread inside each GEMM.
// With plan.row_blocks_spread, slot t takes its equal share of the (image, row block) pairs.
template <class Body>
void for_each_block(const Conv2dShape& s, const Plan& plan, Body body) {
  auto run_image_block = [&](int64_t n0, int slot, int gemm_threads) {
    for (int64_t p0 = 0; p0 < s.out_h; p0 += plan.rows)
      body(Block{n0, std::min(s.batch, n0 + plan.images), p0, std::min(s.out_h, p0 + plan.rows)}, slot, gemm_threads);
  };
  if (plan.row_blocks_spread) {
    const int64_t total = s.batch * plan.row_blocks;
    run_on_threads(plan.slots, [&](int slot) {
      for (int64_t i = total * slot / plan.slots; i < total * (slot + 1) / plan.slots; ++i) {
        const int64_t n = i / plan.row_blocks, j = i % plan.row_blocks;
        body(Block{n, n + 1, s.out_h * j / plan.row_blocks, s.out_h * (j + 1) / plan.row_blocks}, slot, 1);
      }
    });
  } else if (spread_over_slots(s, plan)) {
    run_on_threads(plan.slots, [&](int slot) {
      for (int64_t n0 = slot * plan.images; n0 < s.batch; n0 += plan.slots * plan.images) run_image_block(n0, slot, 1);
    });
  } else {
    for (int64_t n0 = 0; n0 < s.batch; n0 += plan.images) run_image_block(n0, 0, plan.slots);
  }
}

// Pointer to channel `channel`, output row p0 of image n in an (N, channels, P*Q) array.
template <class T>
T* plane_at(T* base, const Conv2dShape& s, int64_t channels, int64_t n, int64_t channel, int64_t p0) {
  return base + ((n * channels + channel) * s.out_h + p0) * s.out_w;
}

// Copies `rows` channel rows of a block of several whole images between the (N, K, P*Q) tensor
// and the block matrix (rows x images*P*Q).
template <class T>
void gather_images(const Conv2dShape& s, const Block& b, const T* tensor, int64_t channels, int64_t channel0,
                   int64_t rows, T* block, int64_t ld) {
  const int64_t pixels = s.out_h * s.out_w;
  for (int64_t n = b.n0; n < b.n1; ++n)
    for (int64_t k = 0; k < rows; ++k)
      std::memcpy(block + k * ld + (n - b.n0) * pixels, plane_at(tensor, s, channels, n, channel0 + k, 0),
                  sizeof(T) * pixels);
}

// Copies the block matrix (`rows` x b.columns(s); element (k, j) at block.data[k * row_stride + j *
// col_stride], column j running over the block's images and then its pixels) into channels channel0 ..
// channel0 + rows of the (N, channels, P*Q) tensor, the rows split over `threads`.
template <class T>
void scatter_block(const Conv2dShape& s, const Block& b, StridedMatrix<const T> block, int64_t rows, T* tensor,
                   int64_t channels, int64_t channel0, int threads) {
  const int64_t per_image = (b.p1 - b.p0) * s.out_w, rs = block.row_stride, cs = block.col_stride;
  const int team = static_cast<int>(std::clamp<int64_t>(rows / 16, 1, threads));
  run_on_threads(team, [&](int part) {
    for (int64_t n = b.n0; n < b.n1; ++n)
      for (int64_t k = rows * part / team; k < rows * (part + 1) / team; ++k) {
        T* dst = plane_at(tensor, s, channels, n, channel0 + k, b.p0);
        const T* src = block.data + k * rs + (n - b.n0) * per_image * cs;
        if (cs == 1) {
          std::memcpy(dst, src, sizeof(T) * per_image);
        } else {
          for (int64_t j = 0; j < per_image; ++j) dst[j] = src[j * cs];
        }
      }
  });
}

// col(X) of a block for one group: the input planes themselves when the plan is direct, else
// im2col into the thread's buffer. A block computed by `threads` threads together (its GEMM's) has
// its im2col split over them by input channels (a batch-1 layer otherwise builds the whole matrix on
// one thread while the other waits for the GEMM).
template <class T>
StridedMatrix<const T> block_columns(const Conv2dShape& s, const Plan& plan, const Block& b, const T* x, int64_t group,
                                     int threads = 1) {
  const int64_t channel0 = group * plan.group_in;
  if (plan.direct) return {x + (b.n0 * s.in_channels + channel0) * plan.in_plane + b.p0 * s.out_w, plan.in_plane, 1};
  const int64_t cols = b.columns(s), per_image = (b.p1 - b.p0) * s.out_w, taps = s.kernel_h * s.kernel_w;
  T* col = thread_buffer<T>(0, plan.col_rows * cols);
  const int team = static_cast<int>(std::clamp<int64_t>(plan.group_in, 1, threads));  // 1 for no channels
  run_on_threads(team, [&](int part) {
    const int64_t c0 = plan.group_in * part / team, c1 = plan.group_in * (part + 1) / team;
    for (int64_t n = b.n0; n < b.n1; ++n)
      im2col(s, x + (n * s.in_channels + channel0 + c0) * plan.in_plane, c1 - c0, b.p0, b.p1,
             col + c0 * taps * cols + (n - b.n0) * per_image, cols);
  });
  return {col, cols, 1};
}

// col(X) of a block for one group written as the GEMM's packed B panels of nr columns (packed_b_layout,
// zero past the block's columns): one image's row block by the split-row im2col (plan.packed_columns),
// or by column_panels.h's kernel (plan.shifted_panels, float32), its panels split over `threads`.
template <class T>
void write_column_panels(const Conv2dShape& s, const Plan& plan, const Block& b, const T* x, int64_t group, int nr,
                         T* panels, int threads) {
  const T* x_g = x + (b.n0 * s.in_channels + group * plan.group_in) * plan.in_plane;
  const int64_t cols = b.columns(s), panel_count = (cols + nr - 1) / nr;
  if (plan.packed_columns) {
    const ColumnLayout<T> layout{panels, 0, nr, plan.col_rows};
    im2col_stride2(s, x_g, plan.group_in, b.p0, b.p1, layout);
    for (int64_t row = 0; row < plan.col_rows; ++row) layout.put(row, cols, nullptr, panel_count * nr - cols);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    const int64_t words = s.kernel_h * s.kernel_w * shifted_columns_words(s, b.p0, b.p1);
    const ShiftedColumns columns = shifted_columns(
        s, plan.group_in, plan.in_plane, x_g, b.n1 - b.n0, b.p0, b.p1, thread_buffer<int64_t>(0, plan.col_rows),
        thread_buffer<int32_t>(0, plan.col_rows), thread_buffer<uint64_t>(0, words));
    const ColumnPanelKernels& kern =
        dispatch(IsaFamily::conv_columns,
                 IsaTables{generic::column_panel_kernels, avx2::column_panel_kernels, avx512::column_panel_kernels});
    const int team = static_cast<int>(std::min<int64_t>(threads, panel_count));
    run_on_threads(team, [&](int part) {
      const int64_t q0 = panel_count * part / team, q1 = panel_count * (part + 1) / team;
      if (q1 > q0)
        kern.pack_shifted_float(columns, q0 * nr, std::min(cols, q1 * nr) - q0 * nr, nr,
                                panels + q0 * nr * plan.col_rows);
    });
  }
}

// col(X)^T of a transposed block for one group in the thread's buffer (cols x CgRS, rows along CgRS):
// each image's input rows the block reads copied with zero borders, then im2col_rows; both steps split
// over `threads` (channels, then rows of col^T).
template <class T>
StridedMatrix<const T> block_rows(const Conv2dShape& s, const Plan& plan, const Block& b, const T* x, int64_t group,
                                  int threads) {
  const BorderedRows rows_read(s, b.p0, b.p1);
  const int64_t images = b.n1 - b.n0, per_image = (b.p1 - b.p0) * s.out_w, cols = images * per_image;
  const int64_t image_size = plan.group_in * rows_read.plane();
  T* bordered = thread_buffer<T>(2, images * image_size);
  T* col_t = thread_buffer<T>(3, cols * plan.col_rows);
  const T* x_g = x + (b.n0 * s.in_channels + group * plan.group_in) * plan.in_plane;
  run_on_threads(threads, [&](int part) {
    const int64_t c0 = plan.group_in * part / threads, c1 = plan.group_in * (part + 1) / threads;
    for (int64_t n = 0; n < images; ++n)
      border_rows(s, rows_read, x_g + n * s.in_channels * plan.in_plane, c0, c1, bordered + n * image_size);
  });
  run_on_threads(threads, [&](int part) {
    const int64_t j0 = cols * part / threads, j1 = cols * (part + 1) / threads;
    for (int64_t n = j0 / std::max<int64_t>(per_image, 1); n < images && n * per_image < j1; ++n) {
      const int64_t first = std::max(j0, n * per_image), last = std::min(j1, (n + 1) * per_image);
      im2col_rows(s, rows_read, bordered + n * image_size, plan.group_in, first - n * per_image, last - n * per_image,
                  col_t + first * plan.col_rows, plan.col_rows);
    }
  });
  return {col_t, plan.col_rows, 1};
}

// Y^T (cols x Kg, into y_t) = col^T W_g^T for one group of a transposed block (col_t: its cols x CgRS
// matrix; w_g: the group's Kg x CgRS weights; the epilogue's bias runs along Kg): on W_g^T packed
// beforehand when w_t_packed is given (ConvPackedWeights::gemm), else on W_g in place. There, with
// several threads, each takes a share of the depth CgRS into its own partial product (the first with
// the bias), the partials are added, then the ReLU: the GEMM's own split of the Kg columns had every
// thread pack all of col^T (512 channels at 7x7, batch 4, 2 threads: 2.45 -> 2.34 ms, and 3.29 -> 2.75
// ms in a window of contended memory; batch 1 0.99 -> 0.93 ms).
template <class T>
void transposed_product(const Plan& plan, StridedMatrix<const T> col_t, int64_t cols, const T* w_g, const T* w_t_packed,
                        const GemmEpilogue<T>& epilogue, T* y_t, int threads) {
  const int64_t width = plan.group_out, depth = plan.col_rows;
  const StridedMatrix<T> out{y_t, width, 1};
  if (w_t_packed)
    return gemm_prepacked<T>(cols, T(1), col_t, packed_b_layout<T>(depth, width, w_t_packed), T(0), out, epilogue,
                             threads);
  if (threads < 2 || gemm_takes_dot_path<T>(cols, width, depth))
    return gemm<T>(cols, width, depth, T(1), col_t, {w_g, 1, depth}, T(0), out, epilogue, threads);
  const int64_t size = cols * width;
  T* partials = thread_buffer<T>(2, (threads - 1) * size);  // parts 1 .. threads - 1 (part 0 writes y_t)
  GemmEpilogue<T> bias_only = epilogue;  // the bias with part 0's product; the ReLU once the partials are in
  bias_only.relu = false;
  run_on_threads(threads, [&](int part) {
    const int64_t p0 = depth * part / threads, p1 = depth * (part + 1) / threads;
    const StridedMatrix<const T> share{col_t.data + p0 * col_t.col_stride, col_t.row_stride, col_t.col_stride};
    T* into = part == 0 ? y_t : partials + (part - 1) * size;
    gemm<T>(cols, width, p1 - p0, T(1), share, {w_g + p0, 1, depth}, T(0), {into, width, 1},
            part == 0 ? bias_only : GemmEpilogue<T>{}, 1);
  });
  run_on_ranges(y_t, size, int64_t(1) << 14, [&](int64_t begin, int64_t end) {  // the partials added into y_t
    for (int q = 0; q + 1 < threads; ++q) {
      const T* other = partials + q * size;
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y_t[i] += other[i];
    }
  });
  if (epilogue.relu) relu(y_t, y_t, size);
}

// grad_bias[k] = sum of grad_y over images and pixels, channels spread over the threads.
template <class T>
void bias_gradient(const Conv2dShape& s, const T* grad_y, T* grad_bias) {
  const int64_t pixels = s.out_h * s.out_w;
  const bool small = s.batch * s.out_channels * pixels < (int64_t(1) << 16);
  const int team = small ? 1 : static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(s.out_channels, 1)));
  run_on_threads(team, [&](int t) {
    for (int64_t k = t; k < s.out_channels; k += team) {
      T sum = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* dy = grad_y + (n * s.out_channels + k) * pixels;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < pixels; ++i) sum += dy[i];
      }
      grad_bias[k] = sum;
    }
  });
}

}  // namespace

namespace {
std::atomic<const char*> last_forward_path{""};
}  // namespace

const char* last_conv2d_forward_path() { return last_forward_path.load(); }

void record_conv2d_forward_path(const char* path) { last_forward_path = path; }

int64_t conv2d_winograd_weights_size(const Conv2dShape& s) { return winograd_weights_size(s); }

template <class T>
WinogradWeightsLayout conv2d_winograd_layout(const Conv2dShape& s) {
  return winograd_forward_layout<T>(s);
}

std::array<int64_t, 3> conv2d_winograd_weights_shape(const Conv2dShape& s, WinogradWeightsLayout layout) {
  return winograd_weights_shape(s, layout);
}

template <class T>
bool conv2d_pack_winograd_weights(const Conv2dShape& s, WinogradWeightsLayout layout, const T* w, T* packed) {
  return winograd_transform_weights(s.out_channels, s.in_channels, layout, w, packed);
}

// The panel width of the packed GEMM weights a forward of this shape runs on: the GEMM's B width for
// transposed blocks, its A height for blocks writing col(X) as B panels; 0 when it runs on none.
template <class T>
int64_t gemm_weights_width(const Conv2dShape& s, const Plan& plan) {
  if (s.batch == 0 || is_depthwise(s) || winograd_applies(s)) return 0;
  if constexpr (std::is_same_v<T, float>)
    if (direct_applies(s)) return 0;
  if (plan.transposed) return packed_b_width<T>();
  if (plan.packed_columns || plan.shifted_panels) return packed_a_height<T>();
  return 0;
}

template <class T>
std::array<int64_t, 4> conv2d_gemm_weights_shape(const Conv2dShape& s) {
  const Plan plan = make_plan<T>(s, true);
  const int64_t width = gemm_weights_width<T>(s, plan);
  if (width == 0) return {0, 0, 0, 0};
  return {s.groups, (plan.group_out + width - 1) / width, plan.col_rows, width};
}

template <class T>
void conv2d_pack_gemm_weights(const Conv2dShape& s, const T* w, T* packed) {
  const Plan plan = make_plan<T>(s, true);
  const bool as_b = plan.transposed;
  const int64_t group_size =
      as_b ? packed_b_size<T>(plan.col_rows, plan.group_out) : packed_a_size<T>(plan.group_out, plan.col_rows);
  for (int64_t group = 0; group < s.groups; ++group) {
    const T* w_g = w + group * plan.group_out * plan.col_rows;
    if (as_b)  // B = W_g^T: B(p, j) = w_g[j][p]
      pack_b_matrix<T>(plan.col_rows, plan.group_out, {w_g, 1, plan.col_rows}, packed + group * group_size);
    else
      pack_a_matrix<T>(plan.group_out, plan.col_rows, {w_g, plan.col_rows, 1}, packed + group * group_size);
  }
}

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                    const ConvPackedWeights<T>& packed, bool relu) {
  // The direct loops and Winograd's output transform add the bias; relu is then one pass over y
  // (in cache at inference batches). The GEMM paths apply it in their epilogue.
  if constexpr (std::is_same_v<T, float>) {
    if (!is_depthwise(s) && direct_applies(s)) {
      last_forward_path = "direct";
      return direct_forward(s, x, w, bias, y, relu);
    }
  }
  const char* path = nullptr;
  if (is_depthwise(s)) {
    depthwise_forward(s, x, w, bias, y);
    path = "depthwise";
  } else if (winograd_applies(s) && winograd_forward(s, x, w, bias, y, packed.winograd, packed.winograd_layout)) {
    const WinogradWeightsLayout runs = winograd_forward_layout<T>(s);  // the layout winograd_forward read
    const bool prepacked =
        packed.winograd && packed.winograd_layout.tile == runs.tile && packed.winograd_layout.width == runs.width;
    path = prepacked ? "winograd_prepacked" : "winograd";
  }
  if (path) {
    last_forward_path = path;
    if (relu) cpu::relu(y, y, s.batch * s.out_channels * s.out_h * s.out_w);
    return;
  }
  const Plan plan = make_plan<T>(s, true);
  // W packed beforehand (the transposed blocks' B = W^T, the panel blocks' A = W), when packed for the
  // width this plan's GEMM takes.
  const int64_t width = gemm_weights_width<T>(s, plan);
  const bool packed_weights = packed.gemm && width && packed.gemm_panel_width == width;
  const T* packed_w = packed.gemm;
  const int64_t group_panels_size = (plan.group_out + width - 1) / std::max<int64_t>(width, 1) * width * plan.col_rows;
  static constexpr const char* kPaths[][2] = {{"im2col_packed_panels", "im2col_packed_panels_prepacked"},
                                              {"im2col_shifted_panels", "im2col_shifted_panels_prepacked"},
                                              {"im2col_transposed", "im2col_transposed_prepacked"}};
  last_forward_path = plan.packed_columns      ? kPaths[0][packed_weights]
                      : plan.shifted_panels    ? kPaths[1][packed_weights]
                      : plan.row_blocks_spread ? "im2col_row_blocks"
                      : plan.transposed        ? kPaths[2][packed_weights]
                                               : "im2col";
  for_each_block(s, plan, [&](const Block& b, int, int gemm_threads) {
    const int64_t cols = b.columns(s);
    for (int64_t group = 0; group < s.groups; ++group) {
      const int64_t k0 = group * plan.group_out;
      GemmEpilogue<T> epilogue = group_bias(bias, k0);
      epilogue.relu = relu;
      const StridedMatrix<const T> weights{w + k0 * plan.col_rows, plan.col_rows, 1};
      if (plan.transposed) {  // Y^T (cols x Kg) = col^T W^T into the thread's buffer, then into y
        if (bias) epilogue.bias_axis = BiasAxis::cols;
        T* y_t = thread_buffer<T>(1, cols * plan.group_out);
        const T* w_t_packed = packed_weights ? packed_w + group * group_panels_size : nullptr;
        // col^T's rows where the GEMM reads them in place (its dot path) or packs them against W^T packed
        // beforehand; else the im2col block, whose transpose the GEMM turns into Y = W col (no W^T to pack).
        StridedMatrix<const T> col_t{};
        if (w_t_packed || gemm_takes_dot_path<T>(cols, plan.group_out, plan.col_rows)) {
          col_t = block_rows(s, plan, b, x, group, gemm_threads);
        } else {
          const StridedMatrix<const T> columns = block_columns(s, plan, b, x, group, gemm_threads);
          col_t = {columns.data, columns.col_stride, columns.row_stride};
        }
        transposed_product<T>(plan, col_t, cols, weights.data, w_t_packed, epilogue, y_t, gemm_threads);
        scatter_block<T>(s, b, {y_t, 1, plan.group_out}, plan.group_out, y, s.out_channels, k0, gemm_threads);
        continue;
      }
      // Y = W col(X): into y for one image, else through the thread's block buffer.
      const bool one_image = b.n1 - b.n0 == 1;
      StridedMatrix<T> out{plane_at(y, s, s.out_channels, b.n0, k0, b.p0), plan.pixels, 1};
      if (!one_image) out = {thread_buffer<T>(1, plan.group_out * cols), cols, 1};
      if (plan.packed_columns || plan.shifted_panels) {  // col(X) written as the B panels, then the GEMM on them
        T* panels = thread_buffer<T>(0, packed_b_size<T>(plan.col_rows, cols));
        const PackedB<T> columns = packed_b_layout<T>(plan.col_rows, cols, panels);
        write_column_panels(s, plan, b, x, group, columns.nr, panels, gemm_threads);
        if (packed_weights)
          gemm_prepacked<T>(packed_a_layout<T>(plan.group_out, plan.col_rows, packed_w + group * group_panels_size),
                            T(1), columns, T(0), out, epilogue, gemm_threads);
        else
          gemm_prepacked<T>(plan.group_out, T(1), weights, columns, T(0), out, epilogue, gemm_threads);
      } else {
        const StridedMatrix<const T> columns = block_columns(s, plan, b, x, group, gemm_threads);
        gemm<T>(plan.group_out, cols, plan.col_rows, T(1), weights, columns, T(0), out, epilogue, gemm_threads);
      }
      if (!one_image) scatter_block<T>(s, b, {out.data, cols, 1}, plan.group_out, y, s.out_channels, k0, gemm_threads);
    }
  });
}

template <class T>
void conv2d_backward_data(const Conv2dShape& s, const T* grad_y, const T* w, T* grad_x) {
  if (is_depthwise(s)) return depthwise_backward_data(s, grad_y, w, grad_x);
  if (winograd_applies(s) && winograd_backward_data(s, grad_y, w, grad_x)) return;
  const Plan plan = make_plan<T>(s);
  if (!plan.direct) std::fill(grad_x, grad_x + s.batch * s.in_channels * plan.in_plane, T(0));
  for_each_block(s, plan, [&](const Block& b, int, int gemm_threads) {
    const int64_t cols = b.columns(s), per_image = (b.p1 - b.p0) * s.out_w;
    for (int64_t group = 0; group < s.groups; ++group) {
      const int64_t k0 = group * plan.group_out, c0 = group * plan.group_in;
      const StridedMatrix<const T> w_t{w + k0 * plan.col_rows, 1, plan.col_rows};
      StridedMatrix<const T> dy{plane_at(grad_y, s, s.out_channels, b.n0, k0, b.p0), plan.pixels, 1};
      if (b.n1 - b.n0 > 1) {
        T* gathered = thread_buffer<T>(1, plan.group_out * cols);
        gather_images(s, b, grad_y, s.out_channels, k0, plan.group_out, gathered, cols);
        dy = {gathered, cols, 1};
      }
      T* dx_g = grad_x + (b.n0 * s.in_channels + c0) * plan.in_plane;
      if (plan.direct) {
        gemm<T>(plan.group_in, cols, plan.group_out, T(1), w_t, dy, T(0), {dx_g + b.p0 * s.out_w, plan.in_plane, 1}, {},
                gemm_threads);
        continue;
      }
      T* dcol = thread_buffer<T>(0, plan.col_rows * cols);
      gemm<T>(plan.col_rows, cols, plan.group_out, T(1), w_t, dy, T(0), {dcol, cols, 1}, {}, gemm_threads);
      for (int64_t n = b.n0; n < b.n1; ++n)
        col2im_add(s, dcol + (n - b.n0) * per_image, plan.group_in, b.p0, b.p1, cols,
                   grad_x + (n * s.in_channels + c0) * plan.in_plane);
    }
  });
}

template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* grad_y, const T* x, T* grad_w, T* grad_bias) {
  if (grad_bias) bias_gradient(s, grad_y, grad_bias);
  if (is_depthwise(s)) return depthwise_backward_weight(s, grad_y, x, grad_w);
  if (winograd_applies_to_weight_grad(s) && winograd_backward_weight(s, grad_y, x, grad_w)) return;
  const Plan plan = make_plan<T>(s);
  const int64_t weight_size = s.out_channels * plan.col_rows;
  // Slot 0 accumulates into grad_w; the others into zeroed partial sums, added at the end.
  const int partial_count = spread_over_slots(s, plan) ? plan.slots - 1 : 0;
  std::vector<T> partials(static_cast<size_t>(partial_count * weight_size), T(0));
  std::fill(grad_w, grad_w + weight_size, T(0));
  for_each_block(s, plan, [&](const Block& b, int slot, int gemm_threads) {
    T* dw = slot == 0 ? grad_w : partials.data() + (slot - 1) * weight_size;
    const int64_t cols = b.columns(s);
    for (int64_t group = 0; group < s.groups; ++group) {
      const int64_t k0 = group * plan.group_out;
      const StridedMatrix<const T> columns = block_columns(s, plan, b, x, group, gemm_threads);
      StridedMatrix<const T> dy{plane_at(grad_y, s, s.out_channels, b.n0, k0, b.p0), plan.pixels, 1};
      if (b.n1 - b.n0 > 1) {
        T* gathered = thread_buffer<T>(1, plan.group_out * cols);
        gather_images(s, b, grad_y, s.out_channels, k0, plan.group_out, gathered, cols);
        dy = {gathered, cols, 1};
      }
      const StridedMatrix<const T> columns_t{columns.data, columns.col_stride, columns.row_stride};
      gemm<T>(plan.group_out, plan.col_rows, cols, T(1), dy, columns_t, T(1),
              {dw + k0 * plan.col_rows, plan.col_rows, 1}, {}, gemm_threads);
    }
  });
  for (int part = 0; part < partial_count; ++part) {
    const T* partial = partials.data() + part * weight_size;
#pragma omp simd
    for (int64_t i = 0; i < weight_size; ++i) grad_w[i] += partial[i];
  }
}

template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*,
                                    const ConvPackedWeights<float>&, bool);
template void conv2d_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*,
                                     const ConvPackedWeights<double>&, bool);
template std::array<int64_t, 4> conv2d_gemm_weights_shape<float>(const Conv2dShape&);
template std::array<int64_t, 4> conv2d_gemm_weights_shape<double>(const Conv2dShape&);
template void conv2d_pack_gemm_weights<float>(const Conv2dShape&, const float*, float*);
template void conv2d_pack_gemm_weights<double>(const Conv2dShape&, const double*, double*);
template WinogradWeightsLayout conv2d_winograd_layout<float>(const Conv2dShape&);
template WinogradWeightsLayout conv2d_winograd_layout<double>(const Conv2dShape&);
template bool conv2d_pack_winograd_weights<float>(const Conv2dShape&, WinogradWeightsLayout, const float*, float*);
template bool conv2d_pack_winograd_weights<double>(const Conv2dShape&, WinogradWeightsLayout, const double*, double*);
template void conv2d_backward_data<float>(const Conv2dShape&, const float*, const float*, float*);
template void conv2d_backward_data<double>(const Conv2dShape&, const double*, const double*, double*);
template void conv2d_backward_weight<float>(const Conv2dShape&, const float*, const float*, float*, float*);
template void conv2d_backward_weight<double>(const Conv2dShape&, const double*, const double*, double*, double*);

}  // namespace deepkern::cpu
