// 2-D convolution as implicit GEMMs (conv.h): the GEMM kernels' tiles (cuda/gemm/simt_tile.h for
// FP32, mma_tile.h for TF32/BF16) fed by loaders that compute each element's address from the
// convolution's geometry (an im2col address per element, zero for padding), so no im2col buffer
// exists. Blocks: x = tile (m fastest), y = group, z = split of K (weight gradient only).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda/conv/conv.h"
#include "cuda/conv/depthwise.h"
#include "cuda/conv/element_type.h"
#include "cuda/gemm/gemm_device.h"
#include "cuda/gemm/mma_tile.h"
#include "cuda/gemm/simt_tile.h"
#include "cuda/launch.h"
#include "cuda/ptx.h"

namespace deepkern::cuda {
namespace {

using gemm_device::from_float;
using gemm_device::to_float;

constexpr int kTile = 128;  // both tiles are 128 x 128 with 256 threads
constexpr int kThreads = 256;
static_assert(simt_tile::kTile == kTile && mma_tile::kTile == kTile && simt_tile::kThreads == kThreads &&
              mma_tile::kThreads == kThreads);
constexpr std::int64_t kSplitAlign = 32;  // a split of K is a multiple of every tile's slice depth

// An index as mixed-radix digits (d0, d1, d2) over radices (unbounded, r1, r2).
struct Digits {
  int d0, d1, d2;
};
struct Radix {
  int r1, r2;
  __device__ __forceinline__ Digits split(std::int64_t i) const {
    const std::int64_t plane = std::int64_t(r1) * r2;
    const int rest = static_cast<int>(i % plane);
    return {static_cast<int>(i / plane), rest / r2, rest % r2};
  }
  __device__ __forceinline__ void next(Digits& d) const {  // i + 1
    if (++d.d2 == r2) {
      d.d2 = 0;
      if (++d.d1 == r1) d.d1 = 0, ++d.d0;
    }
  }
};

// One GEMM operand of a convolution seen as an MN x K matrix over an NCHW-like array `data` whose
// planes are height x width. Row mn and depth k are split into digits (row_radix, tap_radix); the
// element is at plane offset base + row.d0 * row_s0 + tap.d0 * tap_s0 and position
//   (h, w) = (row.d1 * row_h + h_offset + tap.d1 * tap_h, row.d2 * row_w + w_offset + tap.d2 * tap_w)
// when inside the plane, else zero (padding). kTransposed (the data gradient's output-gradient
// gather): (h, w) = ((row.d1 * row_h + h_offset - tap.d1 * tap_h) / stride_h, same for w), zero
// unless the division is exact. Every operand of the three passes is one of these (a dense one is a
// 1 x width plane with zero steps along h).
template <class T, bool kTransposed>
struct Gather {
  const T* data;
  std::int64_t base, group_stride;  // the plane offset of group 0, and the step per group
  int height, width, stride_h, stride_w;
  Radix row_radix, tap_radix;
  std::int64_t row_s0, tap_s0;
  int row_h, row_w, h_offset, w_offset, tap_h, tap_w;

  struct Row {
    std::int64_t base;
    int h, w;
  };
  __device__ __forceinline__ Row row(std::int64_t mn, int group) const {
    const Digits d = row_radix.split(mn);
    return {base + group * group_stride + d.d0 * row_s0, d.d1 * row_h + h_offset, d.d2 * row_w + w_offset};
  }
  // The element at (row, tap), or nullptr for a zero.
  __device__ __forceinline__ const T* at(const Row& r, const Digits& t) const {
    int h, w;
    if constexpr (kTransposed) {
      const int hs = r.h - t.d1 * tap_h, ws = r.w - t.d2 * tap_w;
      if (hs < 0 || ws < 0 || hs % stride_h != 0 || ws % stride_w != 0) return nullptr;
      h = hs / stride_h, w = ws / stride_w;
    } else {
      h = r.h + t.d1 * tap_h, w = r.w + t.d2 * tap_w;
    }
    if (h < 0 || h >= height || w < 0 || w >= width) return nullptr;
    return data + r.base + t.d0 * tap_s0 + std::int64_t(h) * width + w;
  }
};

// Where a result (row, col) of group g's GEMM goes. rows_are_positions (forward, data gradient):
// row = image * plane + position, col = channel in group: out[image][g * group_channels + col]
// [position] (+ bias of that channel). Else (weight gradient): row = channel in group, col = the
// weight's (c, r, s): out[split][g * group_channels + row][col] with `plane` = N of the GEMM.
template <class T>
struct Output {
  void* data;
  bool to_workspace;  // float32 partial sums (weight gradient split along K), else T
  bool rows_are_positions;
  std::int64_t m, n, plane, channels, group_channels;
  const T* bias;  // per channel, or null

  __device__ __forceinline__ void store(int g, int split, std::int64_t row, std::int64_t col, float v) const {
    if (row >= m || col >= n) return;
    std::int64_t index;
    if (rows_are_positions) {
      const std::int64_t image = row / plane, channel = g * group_channels + col;
      index = (image * channels + channel) * plane + (row - image * plane);
      if (bias != nullptr) v += to_float(bias[channel]);
    } else {
      index = (split * channels + g * group_channels + row) * plane + col;
    }
    if (to_workspace) {
      static_cast<float*>(data)[index] = v;
    } else {
      static_cast<T*>(data)[index] = from_float<T>(v);
    }
  }
};

// An operand that is a plain strided matrix per group (the forward pass's weights: row k' of
// group g at data + g * group_stride + k' * mn_stride), loaded by the GEMM's own loaders: 16-byte
// chunks where `vector` (mma) or kMode (simt) allows. Those walk K from 0: never split along K.
template <class T, simt_tile::Load kMode>
struct Strided {
  gemm_device::OperandView<T> view;  // group 0's
  std::int64_t group_stride;
  bool vector;
  __device__ __forceinline__ gemm_device::OperandView<T> for_group(int group) const {
    return {view.data + group * group_stride, view.mn_stride, view.k_stride};
  }
};

// One pass of a convolution: per group an M x N x K GEMM, A gathered, B gathered or strided,
// results stored.
template <class T, bool kTransposedA, class B = Gather<T, false>>
struct Pass {
  using Element = T;
  std::int64_t m, n, k;
  std::int64_t k_per_split;  // a multiple of kSplitAlign
  Gather<T, kTransposedA> a;
  B b;
  Output<T> out;

  __device__ __forceinline__ std::int64_t k_begin(int split) const { return split * k_per_split; }
  __device__ __forceinline__ std::int64_t k_end(int split) const {
    const std::int64_t end = k_begin(split) + k_per_split;
    return end < k ? end : k;
  }
};

// A thread's part of one gathered operand for the SIMT tile (simt_tile's scalar mapping: row
// thread_mn, depths thread_k + kScalarStep * j).
template <class G>
struct SimtGatherLoader {
  const G& g;
  typename G::Row row;
  bool inside;
  __device__ __forceinline__ SimtGatherLoader(const G& gather, int group, std::int64_t mn0, std::int64_t mn_extent)
      : g(gather) {
    const std::int64_t mn = mn0 + simt_tile::thread_mn<simt_tile::Load::scalar>();
    inside = mn < mn_extent;
    row = g.row(inside ? mn : 0, group);
  }
  __device__ __forceinline__ void fetch(std::int64_t k0, std::int64_t k_extent, float (&v)[4]) const {
    const std::int64_t k = k0 + simt_tile::thread_k<simt_tile::Load::scalar>();
    Digits tap = g.tap_radix.split(k);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float* p = inside && k + j * simt_tile::kScalarStep < k_extent ? g.at(row, tap) : nullptr;
      v[j] = p != nullptr ? __ldg(p) : 0.0f;
#pragma unroll
      for (int step = 0; step < simt_tile::kScalarStep; ++step) g.tap_radix.next(tap);
    }
  }
  __device__ __forceinline__ void stash(float* s, const float (&v)[4]) const {
    simt_tile::stash<simt_tile::Load::scalar>(s, v);
  }
};

// A thread's part of one gathered operand for the tensor-core tile, kept k-major: its two chunks'
// rows, each chunk's kChunk consecutive depths gathered element by element (cp.async of 4 bytes,
// zero-filled for padding, for float; loads and shared stores for bfloat16).
template <class T, class G>
struct MmaGatherLoader {
  using S = mma_tile::Slice<T>;
  using C = mma_tile::Chunks<T, mma_tile::Layout::k_major>;
  const G& g;
  std::int64_t mn[2];  // each chunk's row, or -1 outside the matrix (rows are split again per slice:
  int group;           // fewer live registers than keeping them split, where 128 is the budget)
  __device__ __forceinline__ MmaGatherLoader(const G& gather, int group_index, std::int64_t mn0, std::int64_t mn_extent)
      : g(gather), group(group_index) {
#pragma unroll
    for (int i = 0; i < 2; ++i) mn[i] = mn0 + C::mn(i) < mn_extent ? mn0 + C::mn(i) : -1;
  }
  __device__ __forceinline__ void load(T* s, std::int64_t k0, std::int64_t k_extent) const {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const std::int64_t k = k0 + C::k(i);
      T* dst = s + S::template index<mma_tile::Layout::k_major>(C::mn(i), C::k(i));
      const typename G::Row row = g.row(mn[i] >= 0 ? mn[i] : 0, group);
      Digits tap = g.tap_radix.split(k);
#pragma unroll
      for (int j = 0; j < S::kChunk; ++j) {
        const T* p = mn[i] >= 0 && k + j < k_extent ? g.at(row, tap) : nullptr;
        if constexpr (sizeof(T) == 4) {
          ptx::cp_async_4(dst + j, p != nullptr ? p : g.data, p != nullptr);
        } else {
          dst[j] = p != nullptr ? *p : from_float<T>(0.0f);
        }
        g.tap_radix.next(tap);
      }
    }
  }
};

// The loaders of each operand kind for the SIMT and the tensor-core tile.
template <bool kTransposed>
__device__ __forceinline__ SimtGatherLoader<Gather<float, kTransposed>> simt_loader(const Gather<float, kTransposed>& g,
                                                                                    int group, std::int64_t mn0,
                                                                                    std::int64_t mn_extent) {
  return {g, group, mn0, mn_extent};
}
template <simt_tile::Load kMode>
__device__ __forceinline__ simt_tile::StridedLoader<kMode> simt_loader(const Strided<float, kMode>& s, int group,
                                                                       std::int64_t mn0, std::int64_t mn_extent) {
  return {s.for_group(group), mn0, mn_extent};
}
template <class T, bool kTransposed>
__device__ __forceinline__ MmaGatherLoader<T, Gather<T, kTransposed>> mma_loader(const Gather<T, kTransposed>& g,
                                                                                 int group, std::int64_t mn0,
                                                                                 std::int64_t mn_extent) {
  return {g, group, mn0, mn_extent};
}
template <class T, simt_tile::Load kMode>
__device__ __forceinline__ mma_tile::SliceLoader<T, mma_tile::Layout::k_major> mma_loader(const Strided<T, kMode>& s,
                                                                                          int group, std::int64_t mn0,
                                                                                          std::int64_t mn_extent) {
  return {s.for_group(group), s.vector, mn0, mn_extent};
}

// Block (x, y, z): tile x (m fastest, tiles_m along m) of group group0 + y, K split z. FP32.
template <class P>
__global__ void __launch_bounds__(kThreads, 2) conv_simt_kernel(P p, unsigned tiles_m, int group0) {
  __shared__ simt_tile::SharedSlices shared;
  const int group = group0 + static_cast<int>(blockIdx.y), split = static_cast<int>(blockIdx.z);
  const std::int64_t m0 = std::int64_t(blockIdx.x % tiles_m) * kTile, n0 = std::int64_t(blockIdx.x / tiles_m) * kTile;
  auto a = simt_loader(p.a, group, m0, p.m);
  auto b = simt_loader(p.b, group, n0, p.n);
  float acc[8][8];
  simt_tile::multiply_tile(a, b, p.k_begin(split), p.k_end(split), shared, acc);
  simt_tile::for_each_result(acc, [&](int row, int col, float v) { p.out.store(group, split, m0 + row, n0 + col, v); });
}

// The same on the tensor cores: P::Element float (TF32) or __nv_bfloat16 (BF16);
// mma_tile::kSharedBytes of dynamic shared memory.
template <class P>
__global__ void __launch_bounds__(kThreads, 2) conv_mma_kernel(P p, unsigned tiles_m, int group0) {
  using T = typename P::Element;
  const int group = group0 + static_cast<int>(blockIdx.y), split = static_cast<int>(blockIdx.z);
  const std::int64_t m0 = std::int64_t(blockIdx.x % tiles_m) * kTile, n0 = std::int64_t(blockIdx.x / tiles_m) * kTile;
  auto a = mma_loader<T>(p.a, group, m0, p.m);
  auto b = mma_loader<T>(p.b, group, n0, p.n);
  float acc[4][4][4];
  mma_tile::multiply_tile<T, mma_tile::Layout::k_major, mma_tile::Layout::k_major>(a, b, p.k_begin(split),
                                                                                   p.k_end(split), acc);
  mma_tile::for_each_result(acc, [&](int row, int col, float v) { p.out.store(group, split, m0 + row, n0 + col, v); });
}

// out[i] = sum over s < splits of partial[s * count + i], in order of s (the weight gradient's
// split-K reduction).
template <class T>
__global__ void __launch_bounds__(kThreads)
    sum_splits_kernel(const float* partial, T* out, std::int64_t count, int splits) {
  for (std::int64_t i = blockIdx.x * std::int64_t(kThreads) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * kThreads) {
    float v = 0.0f;
    for (int s = 0; s < splits; ++s) v += partial[s * count + i];
    out[i] = from_float<T>(v);
  }
}

// grad_bias[channel0 + blockIdx.x] = the sum of grad_y over images and positions, in a fixed order
// (each thread strides over the channel's elements, then a tree in shared memory).
template <class T>
__global__ void __launch_bounds__(kThreads)
    bias_gradient_kernel(const T* grad_y, T* grad_bias, std::int64_t images, std::int64_t channels, std::int64_t plane,
                         std::int64_t channel0) {
  __shared__ float partial[kThreads];
  const std::int64_t channel = channel0 + blockIdx.x;
  float v = 0.0f;
  for (std::int64_t i = threadIdx.x; i < images * plane; i += kThreads) {
    const std::int64_t image = i / plane;
    v += to_float(grad_y[(image * channels + channel) * plane + (i - image * plane)]);
  }
  partial[threadIdx.x] = v;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) grad_bias[channel] = from_float<T>(partial[0]);
}

constexpr std::int64_t kMaxGridYZ = 65535;

// Launches pass `p` over `groups` groups and `splits` splits of K on the kernel of `precision`.
template <class P>
void run_pass(const char* name, const P& p, std::int64_t groups, int splits, GemmPrecision precision,
              cudaStream_t stream) {
  if (p.m == 0 || p.n == 0 || groups == 0) return;
  const std::int64_t tiles_m = (p.m + kTile - 1) / kTile, tiles = tiles_m * ((p.n + kTile - 1) / kTile);
  if (tiles >= (std::int64_t(1) << 31)) throw std::invalid_argument(std::string(name) + ": too many 128 x 128 tiles");
  for (std::int64_t group0 = 0; group0 < groups; group0 += kMaxGridYZ) {
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min(groups - group0, kMaxGridYZ)),
                    static_cast<unsigned>(splits));
    if constexpr (std::is_same_v<typename P::Element, float>) {
      if (precision == GemmPrecision::fp32) {
        launch(name, conv_simt_kernel<P>, grid, dim3(kThreads), 0, stream, p, static_cast<unsigned>(tiles_m),
               static_cast<int>(group0));
        continue;
      }
    }
    launch(name, conv_mma_kernel<P>, grid, dim3(kThreads), mma_tile::kSharedBytes, stream, p,
           static_cast<unsigned>(tiles_m), static_cast<int>(group0));
  }
}

using conv_detail::with_element_type;

int as_int(std::int64_t v) { return static_cast<int>(v); }

// The per-group sizes every pass's GEMM is made of.
struct GroupSizes {
  std::int64_t taps, group_in, group_out, in_plane, out_plane;
  explicit GroupSizes(const Conv2dShape& s)
      : taps(s.kernel_h * s.kernel_w),
        group_in(s.in_channels / s.groups),
        group_out(s.out_channels / s.groups),
        in_plane(s.in_h * s.in_w),
        out_plane(s.out_h * s.out_w) {}
};

// Runs the pass build(T{}, sizes) returns, T the element type of `precision`, over every group.
template <class Build>
void run_built_pass(const char* name, const Conv2dShape& s, GemmPrecision precision, int splits, cudaStream_t stream,
                    Build&& build) {
  with_element_type(
      precision, [&](auto zero) { run_pass(name, build(zero, GroupSizes(s)), s.groups, splits, precision, stream); });
}

// x seen through the forward pass's taps: rows (image, p, q) when `rows_are_outputs` (forward A),
// else (c, r, s) with taps (image, p, q) (weight gradient B).
template <class T>
Gather<T, false> input_windows(const Conv2dShape& s, const void* x, bool rows_are_outputs) {
  const std::int64_t plane = s.in_h * s.in_w, group_channels = s.in_channels / s.groups;
  Gather<T, false> g{};
  g.data = static_cast<const T*>(x);
  g.base = 0;
  g.group_stride = group_channels * plane;
  g.height = as_int(s.in_h), g.width = as_int(s.in_w), g.stride_h = 1, g.stride_w = 1;
  g.h_offset = as_int(-s.pad_h), g.w_offset = as_int(-s.pad_w);
  const Radix outputs{as_int(s.out_h), as_int(s.out_w)}, taps{as_int(s.kernel_h), as_int(s.kernel_w)};
  const std::int64_t image_step = s.in_channels * plane, channel_step = plane;
  const int sh = as_int(s.stride_h), sw = as_int(s.stride_w), dh = as_int(s.dilation_h), dw = as_int(s.dilation_w);
  if (rows_are_outputs) {
    g.row_radix = outputs, g.row_s0 = image_step, g.row_h = sh, g.row_w = sw;
    g.tap_radix = taps, g.tap_s0 = channel_step, g.tap_h = dh, g.tap_w = dw;
  } else {
    g.row_radix = taps, g.row_s0 = channel_step, g.row_h = dh, g.row_w = dw;
    g.tap_radix = outputs, g.tap_s0 = image_step, g.tap_h = sh, g.tap_w = sw;
  }
  return g;
}

// A matrix with rows `row_s0` apart and, along k, digits (d0, -, d2) over radix (1, inner):
// element (mn, k) at data[base + g * group_stride + mn * row_s0 + (k / inner) * tap_s0 + k % inner].
template <class T>
Gather<T, false> dense(const void* data, std::int64_t group_stride, std::int64_t row_s0, std::int64_t inner,
                       std::int64_t tap_s0) {
  Gather<T, false> g{};
  g.data = static_cast<const T*>(data);
  g.group_stride = group_stride;
  g.height = 1, g.width = as_int(inner), g.stride_h = 1, g.stride_w = 1;
  g.row_radix = {1, 1}, g.row_s0 = row_s0;
  g.tap_radix = {1, as_int(inner)}, g.tap_s0 = tap_s0, g.tap_w = 1;
  return g;
}

template <class T>
Output<T> output_planes(void* data, std::int64_t m, std::int64_t n, std::int64_t plane, std::int64_t channels,
                        const void* bias) {
  return {data, false, true, m, n, plane, channels, n, static_cast<const T*>(bias)};
}

std::atomic<Conv2dPath> last_path{Conv2dPath::none};

// The path of the forward pass and the data gradient for `s` (conv.h).
Conv2dPath path_of(const Conv2dShape& s) {
  if (depthwise_takes(s)) return Conv2dPath::depthwise;
  if (s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 &&
      s.groups == 1)
    return Conv2dPath::gemm_1x1;
  return Conv2dPath::implicit_gemm;
}

// offsets[i] = i * x_image and offsets[count + i] = i * y_image: the batch offsets of gemm_1x1.
__global__ void __launch_bounds__(kThreads)
    batch_offsets_kernel(std::int64_t* offsets, std::int64_t count, std::int64_t x_image, std::int64_t y_image) {
  for (std::int64_t i = blockIdx.x * std::int64_t(kThreads) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * kThreads) {
    offsets[i] = i * x_image;
    offsets[count + i] = i * y_image;
  }
}

// A strided batch of matrices: image i's at data + offsets[i] = data + i * image (elements).
GemmOperand batch_operand(const void* data, std::int64_t row_stride, const std::int64_t* offsets, std::int64_t image) {
  GemmOperand op;
  op.data = data, op.row_stride = row_stride, op.col_stride = 1;
  op.offsets = offsets, op.offset_divisor = image, op.strided_batch = true, op.batch_stride = image;
  return op;
}

// The gemm_1x1 pass: per image, out (rows x H*W) = w or w^T (rows x depth) @ in (depth x H*W) +
// bias. `data_gradient` picks w^T, grad_y as `in` and grad_x as `out`.
void gemm_1x1(const Conv2dShape& s, GemmPrecision precision, bool data_gradient, const void* in, const void* w,
              const void* bias, void* out, void* workspace, cudaStream_t stream) {
  const std::int64_t plane = s.in_h * s.in_w, x_image = s.in_channels * plane, y_image = s.out_channels * plane;
  if (s.batch == 0 || plane == 0) return;
  auto* offsets = static_cast<std::int64_t*>(workspace);
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((s.batch + kThreads - 1) / kThreads, 4096));
  launch("conv2d (1x1 batch offsets)", batch_offsets_kernel, dim3(blocks), dim3(kThreads), 0, stream, offsets, s.batch,
         x_image, y_image);
  const std::int64_t* x_offsets = offsets;
  const std::int64_t* y_offsets = offsets + s.batch;
  GemmProblem g;
  g.batch = s.batch, g.n = plane, g.precision = precision;
  g.dtype = precision == GemmPrecision::bf16 ? DType::bfloat16 : DType::float32;
  g.a.data = w, g.a.offset_divisor = 0, g.a.strided_batch = true;
  if (data_gradient) {  // grad_x[n] (C x HW) = w^T (C x K) @ grad_y[n] (K x HW)
    g.m = s.in_channels, g.k = s.out_channels;
    g.a.row_stride = 1, g.a.col_stride = s.in_channels;
    g.b = batch_operand(in, plane, y_offsets, y_image);
    g.c = out, g.c_offsets = x_offsets, g.c_offset_divisor = x_image;
  } else {  // y[n] (K x HW) = w (K x C) @ x[n] (C x HW) + bias per row
    g.m = s.out_channels, g.k = s.in_channels;
    g.a.row_stride = s.in_channels, g.a.col_stride = 1;
    g.b = batch_operand(in, plane, x_offsets, x_image);
    g.c = out, g.c_offsets = y_offsets, g.c_offset_divisor = y_image;
    g.bias = bias, g.bias_axis = bias != nullptr ? BiasAxis::rows : BiasAxis::none;
  }
  g.c_row_stride = plane, g.c_col_stride = 1;
  gemm(g, stream);
}

}  // namespace

bool conv2d_indices_fit(const Conv2dShape& s) {
  constexpr std::int64_t kLimit = std::int64_t(1) << 31;
  for (const std::int64_t v : {s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.kernel_h, s.kernel_w, s.out_h,
                               s.out_w, s.in_h * s.in_w, s.out_h * s.out_w, s.kernel_h * s.kernel_w})
    if (v >= kLimit) return false;
  const std::int64_t reach_h = s.in_h + s.pad_h + std::max<std::int64_t>(s.out_h - 1, 0) * s.stride_h +
                               std::max<std::int64_t>(s.kernel_h - 1, 0) * s.dilation_h;
  const std::int64_t reach_w = s.in_w + s.pad_w + std::max<std::int64_t>(s.out_w - 1, 0) * s.stride_w +
                               std::max<std::int64_t>(s.kernel_w - 1, 0) * s.dilation_w;
  return reach_h < kLimit && reach_w < kLimit;
}

Conv2dPath last_conv2d_path() { return last_path.load(); }

const char* conv2d_path_name(Conv2dPath path) {
  switch (path) {
    case Conv2dPath::implicit_gemm: return "implicit_gemm";
    case Conv2dPath::depthwise: return "depthwise";
    case Conv2dPath::gemm_1x1: return "gemm_1x1";
    default: return "none";
  }
}

std::int64_t conv2d_workspace_bytes(const Conv2dShape& s) {
  return path_of(s) == Conv2dPath::gemm_1x1 ? 2 * s.batch * std::int64_t(sizeof(std::int64_t)) : 0;
}

void conv2d_forward(const Conv2dShape& s, GemmPrecision precision, const void* x, const void* w, const void* bias,
                    void* y, void* workspace, cudaStream_t stream) {
  const Conv2dPath path = path_of(s);
  last_path.store(path);
  if (path == Conv2dPath::depthwise) return depthwise_forward(s, precision, x, w, bias, y, stream);
  if (path == Conv2dPath::gemm_1x1) return gemm_1x1(s, precision, false, x, w, bias, y, workspace, stream);
  with_element_type(precision, [&](auto zero) {
    using T = decltype(zero);
    const GroupSizes z(s);
    const std::int64_t depth = z.group_in * z.taps, chunk = 16 / sizeof(T);
    // The weights of group g: a group_out x depth row-major matrix, 16-byte rows when depth allows.
    const bool rows_aligned = reinterpret_cast<std::uintptr_t>(w) % 16 == 0 && depth % chunk == 0;
    auto run = [&](auto mode) {
      Pass<T, false, Strided<T, decltype(mode)::value>> p;
      p.m = s.batch * z.out_plane, p.n = z.group_out, p.k = depth, p.k_per_split = depth;
      p.a = input_windows<T>(s, x, true);
      p.b = {{static_cast<const T*>(w), depth, 1}, z.group_out * depth, rows_aligned};
      p.out = output_planes<T>(y, p.m, p.n, z.out_plane, s.out_channels, bias);
      run_pass("conv2d_forward", p, s.groups, 1, precision, stream);
    };
    using simt_tile::Load;
    if constexpr (std::is_same_v<T, float>) {
      if (precision == GemmPrecision::fp32 && rows_aligned) {  // the SIMT tile's float4 loads along k
        run(std::integral_constant<Load, Load::k_vector>{});
        return;
      }
    }
    run(std::integral_constant<Load, Load::scalar>{});  // the mma tile reads `vector` at run time
  });
}

void conv2d_backward_data(const Conv2dShape& s, GemmPrecision precision, const void* grad_y, const void* w,
                          void* grad_x, void* workspace, cudaStream_t stream) {
  const Conv2dPath path = path_of(s);
  last_path.store(path);
  if (path == Conv2dPath::depthwise) return depthwise_backward_data(s, precision, grad_y, w, grad_x, stream);
  if (path == Conv2dPath::gemm_1x1) return gemm_1x1(s, precision, true, grad_y, w, nullptr, grad_x, workspace, stream);
  run_built_pass("conv2d_backward_data", s, precision, 1, stream, [&](auto zero, const GroupSizes& z) {
    using T = decltype(zero);
    Pass<T, true> p;
    p.m = s.batch * z.in_plane, p.n = z.group_in, p.k = z.group_out * z.taps, p.k_per_split = p.k;
    // A: grad_y at the outputs whose taps reached input (image, h, w), over taps (k', r, s).
    Gather<T, true>& a = p.a;
    a = {};
    a.data = static_cast<const T*>(grad_y);
    a.group_stride = z.group_out * z.out_plane;
    a.height = as_int(s.out_h), a.width = as_int(s.out_w);
    a.stride_h = as_int(s.stride_h), a.stride_w = as_int(s.stride_w);
    a.row_radix = {as_int(s.in_h), as_int(s.in_w)}, a.row_s0 = s.out_channels * z.out_plane, a.row_h = 1, a.row_w = 1;
    a.h_offset = as_int(s.pad_h), a.w_offset = as_int(s.pad_w);
    a.tap_radix = {as_int(s.kernel_h), as_int(s.kernel_w)}, a.tap_s0 = z.out_plane;
    a.tap_h = as_int(s.dilation_h), a.tap_w = as_int(s.dilation_w);
    // B: w[g * group_out + k'][c][r][s] at row c, depth (k', r, s).
    p.b = dense<T>(w, z.group_out * z.group_in * z.taps, z.taps, z.taps, z.group_in * z.taps);
    p.out = output_planes<T>(grad_x, p.m, p.n, z.in_plane, s.in_channels, nullptr);
    return p;
  });
}

int conv2d_weight_splits(const Conv2dShape& s, int sm_count) {
  if (depthwise_takes(s)) return depthwise_weight_splits(s, sm_count);
  const std::int64_t m = s.out_channels / s.groups, n = (s.in_channels / s.groups) * s.kernel_h * s.kernel_w;
  const std::int64_t k = s.batch * s.out_h * s.out_w;
  const std::int64_t blocks = ((m + kTile - 1) / kTile) * ((n + kTile - 1) / kTile) * s.groups;
  const std::int64_t wanted = 2 * std::int64_t(std::max(sm_count, 1));  // two blocks per multiprocessor
  constexpr std::int64_t kMinDepth = 2048;  // per split: enough slices to amortize the partial sums
  if (blocks >= wanted || k < 2 * kMinDepth) return 1;
  return static_cast<int>(std::min({(wanted + blocks - 1) / blocks, k / kMinDepth, kMaxGridYZ}));
}

std::int64_t conv2d_weight_workspace_bytes(const Conv2dShape& s, int splits) {
  if (depthwise_takes(s)) return depthwise_weight_workspace_bytes(s, splits);
  if (splits <= 1) return 0;
  return std::int64_t(splits) * s.out_channels * (s.in_channels / s.groups) * s.kernel_h * s.kernel_w * 4;
}

// The weight gradient's K per split: whole slices, about K / splits.
std::int64_t weight_split_depth(const Conv2dShape& s, int splits) {
  const std::int64_t k = s.batch * s.out_h * s.out_w;
  const std::int64_t depth = std::max<std::int64_t>((k + splits - 1) / splits, 1);
  return (depth + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
}

void conv2d_backward_weight(const Conv2dShape& s, GemmPrecision precision, const void* grad_y, const void* x,
                            void* grad_w, void* grad_bias, int splits, void* workspace, cudaStream_t stream) {
  if (splits < 1) throw std::invalid_argument("conv2d_backward_weight: splits must be >= 1");
  if (depthwise_takes(s)) {
    last_path.store(Conv2dPath::depthwise);
    return depthwise_backward_weight(s, precision, grad_y, x, grad_w, grad_bias, splits, workspace, stream);
  }
  last_path.store(Conv2dPath::implicit_gemm);
  // Splits that have work (fewer than asked when K is short); 1 writes grad_w directly.
  const std::int64_t depth = weight_split_depth(s, splits), k = s.batch * s.out_h * s.out_w;
  const int used = splits > 1 ? static_cast<int>(std::max<std::int64_t>((k + depth - 1) / depth, 1)) : 1;
  run_built_pass("conv2d_backward_weight", s, precision, used, stream, [&](auto zero, const GroupSizes& z) {
    using T = decltype(zero);
    Pass<T, false> p;
    p.m = z.group_out, p.n = z.group_in * z.taps, p.k = k,
    p.k_per_split = used > 1 ? depth : std::max<std::int64_t>(k, 1);
    // A: grad_y[image][g * group_out + k'][position] at row k', depth (image, position).
    p.a = dense<T>(grad_y, z.group_out * z.out_plane, z.out_plane, z.out_plane, s.out_channels * z.out_plane);
    p.b = input_windows<T>(s, x, false);
    p.out = {used > 1 ? workspace : grad_w, used > 1, false, p.m, p.n, p.n, s.out_channels, z.group_out, nullptr};
    return p;
  });
  with_element_type(precision, [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t count = s.out_channels * (s.in_channels / s.groups) * s.kernel_h * s.kernel_w;
    if (used > 1 && count > 0) {
      const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((count + kThreads - 1) / kThreads, 4096));
      launch("conv2d_backward_weight (split sums)", sum_splits_kernel<T>, dim3(blocks), dim3(kThreads), 0, stream,
             static_cast<const float*>(workspace), static_cast<T*>(grad_w), count, used);
    }
    for (std::int64_t c0 = 0; grad_bias != nullptr && c0 < s.out_channels; c0 += kMaxGridYZ)
      launch("conv2d_backward_weight (bias)", bias_gradient_kernel<T>,
             dim3(static_cast<unsigned>(std::min(s.out_channels - c0, kMaxGridYZ))), dim3(kThreads), 0, stream,
             static_cast<const T*>(grad_y), static_cast<T*>(grad_bias), s.batch, s.out_channels, s.out_h * s.out_w, c0);
  });
}

}  // namespace deepkern::cuda
