// Depthwise convolution kernels (depthwise.h). The forward pass and the data gradient are one
// "sweep" kernel: each output element is a sum over taps of weight * source, where the source index
// along an axis is (output * step + offset + tap * dilation) / divisor when that division is exact:
//   forward        step = stride, offset = -pad, divisor 1, weights as they are, one source plane
//   data gradient  step = 1, offset = pad - (taps - 1) * dilation, divisor = stride, flipped weights,
//                  `multiplier` source planes (the output gradients of the input channel)
// The weight gradient is a per-(channel, tap) reduction over N*P*Q in two passes.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/conv/depthwise.h"
#include "cuda/conv/element_type.h"
#include "cuda/gemm/gemm_device.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

using cpu::Conv2dShape;
using gemm_device::from_float;
using gemm_device::to_float;

constexpr int kMaxThreads = 256;     // per sweep block
constexpr int kPerThread = 4;        // outputs per thread along W
constexpr int kChannelThreads = 64;  // at most, per channel of a sweep block
constexpr int kMaxColThreads = 16;   // threads along W per channel (64 outputs)
constexpr std::int64_t kMaxSharedBytes = 48 * 1024;
constexpr std::int64_t kMaxBlocksPerLaunch = std::int64_t(1) << 30;

__host__ __device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// One spatial axis of a sweep: output a and tap t read source index (a * step + offset + t * dilation)
// / divisor when the division is exact and the index lies in [0, sources), else zero.
struct Axis {
  int outputs, sources, step, offset, dilation, divisor, taps;
  int tile;    // outputs per block
  int staged;  // source indices staged per block: enough for every tile
  __host__ __device__ __forceinline__ int first_source(int a0) const { return floor_div(a0 * step + offset, divisor); }
  void plan(int outputs_per_block) {
    tile = outputs_per_block;
    const int reach = (tile - 1) * step + (taps - 1) * dilation;
    staged = divisor == 1 ? reach + 1 : reach / divisor + 2;  // floor(a + b) <= floor(a) + floor(b) + 1
  }
};

// The geometry and tiling of a sweep. Output channel o sums, over s < planes, weight channel
// o * planes + s against source plane (o * planes + s) / ratio.
struct Geometry {
  std::int64_t images;
  int channels, source_channels, planes, ratio;
  bool flip;  // the weights reversed along both axes
  Axis rows, cols;
  int col_threads, slot_threads, slots;  // a block: `slots` channels of slot_threads threads each
  std::int64_t tiles_rows, tiles_cols, channel_tiles, blocks;

  __host__ __device__ std::int64_t slot_floats() const { return std::int64_t(rows.staged) * cols.staged; }
  std::int64_t shared_bytes() const { return slots * slot_floats() * 4; }

  // Chooses the tiles: 4 outputs per thread along W, power-of-two thread counts covering the
  // output plane up to 64 threads per channel, then as many channels per block as 256 threads and
  // 48 KiB of staged floats allow. False when one channel's tile does not fit.
  bool plan() {
    const int col_outputs = std::max((cols.outputs + kPerThread - 1) / kPerThread, 1);
    col_threads = 1;
    while (col_threads < col_outputs && col_threads < kMaxColThreads) col_threads *= 2;
    int row_threads = 1;
    while (row_threads < rows.outputs && col_threads * row_threads < kChannelThreads) row_threads *= 2;
    rows.plan(row_threads);
    cols.plan(col_threads * kPerThread);
    slot_threads = col_threads * row_threads;
    slots = kMaxThreads / slot_threads;
    while (slots > 1 && (shared_bytes() > kMaxSharedBytes || slots / 2 >= channels)) slots /= 2;
    tiles_rows = (rows.outputs + rows.tile - 1) / rows.tile;
    tiles_cols = (cols.outputs + cols.tile - 1) / cols.tile;
    channel_tiles = (channels + slots - 1) / slots;
    blocks = images * channel_tiles * tiles_rows * tiles_cols;
    return shared_bytes() <= kMaxSharedBytes;
  }
};

// The forward pass (data_gradient false) or the data gradient as a sweep, planned.
Geometry sweep_geometry(const Conv2dShape& s, bool data_gradient) {
  const int multiplier = static_cast<int>(s.out_channels / s.in_channels);
  auto axis = [&](std::int64_t outputs, std::int64_t sources, std::int64_t stride, std::int64_t pad,
                  std::int64_t dilation, std::int64_t taps) {
    Axis a{};
    a.outputs = static_cast<int>(outputs), a.sources = static_cast<int>(sources);
    a.dilation = static_cast<int>(dilation), a.taps = static_cast<int>(taps);
    if (data_gradient) {
      a.step = 1, a.offset = static_cast<int>(pad - (taps - 1) * dilation), a.divisor = static_cast<int>(stride);
    } else {
      a.step = static_cast<int>(stride), a.offset = static_cast<int>(-pad), a.divisor = 1;
    }
    return a;
  };
  Geometry g{};
  g.images = s.batch;
  if (data_gradient) {
    g.channels = static_cast<int>(s.in_channels), g.source_channels = static_cast<int>(s.out_channels);
    g.planes = multiplier, g.ratio = 1, g.flip = true;
    g.rows = axis(s.in_h, s.out_h, s.stride_h, s.pad_h, s.dilation_h, s.kernel_h);
    g.cols = axis(s.in_w, s.out_w, s.stride_w, s.pad_w, s.dilation_w, s.kernel_w);
  } else {
    g.channels = static_cast<int>(s.out_channels), g.source_channels = static_cast<int>(s.in_channels);
    g.planes = 1, g.ratio = multiplier, g.flip = false;
    g.rows = axis(s.out_h, s.in_h, s.stride_h, s.pad_h, s.dilation_h, s.kernel_h);
    g.cols = axis(s.out_w, s.in_w, s.stride_w, s.pad_w, s.dilation_w, s.kernel_w);
  }
  g.plan();
  return g;
}

template <class T>
struct Sweep {
  Geometry g;
  const T* source;  // (images, source_channels, rows.sources, cols.sources)
  const T* weight;  // (channels * planes, rows.taps, cols.taps)
  const T* bias;    // per output channel, or null
  T* out;           // (images, channels, rows.outputs, cols.outputs)
};

// Block b (block0 + blockIdx.x) = ((image * channel_tiles + channel tile) * tiles_rows + tile row)
// * tiles_cols + tile col. Thread: slot (channel of the tile), then row, then 4 columns. KH, KW:
// the kernel size (its weights in registers), or 0 for any size (weights read from memory);
// kExact: both divisors are 1.
template <class T, int KH, int KW, bool kExact>
__global__ void __launch_bounds__(kMaxThreads) sweep_kernel(Sweep<T> p, std::int64_t block0) {
  const Geometry& g = p.g;
  float* staged = dynamic_shared_memory<float>();
  const std::int64_t block = block0 + blockIdx.x, spatial = g.tiles_rows * g.tiles_cols;
  const std::int64_t image = block / (spatial * g.channel_tiles), tile = block % spatial;
  const int channel_tile = static_cast<int>(block / spatial % g.channel_tiles);
  const int r0 = static_cast<int>(tile / g.tiles_cols) * g.rows.tile;
  const int c0 = static_cast<int>(tile % g.tiles_cols) * g.cols.tile;
  const int lo_r = g.rows.first_source(r0), lo_c = g.cols.first_source(c0);
  const int tid = static_cast<int>(threadIdx.x), slot_floats = static_cast<int>(g.slot_floats());
  const int slot = tid / g.slot_threads, within = tid % g.slot_threads;
  const int channel = channel_tile * g.slots + slot;
  const int a = r0 + within / g.col_threads, b0 = c0 + (within % g.col_threads) * kPerThread;
  const int kh = KH > 0 ? KH : g.rows.taps, kw = KW > 0 ? KW : g.cols.taps, taps = kh * kw;
  float acc[kPerThread] = {};
  for (int plane = 0; plane < g.planes; ++plane) {
    if (plane > 0) __syncthreads();  // the previous plane's reads are done
    // Stage every slot's source tile (zero outside the plane), converted to float.
    for (int e = tid; e < g.slots * slot_floats; e += static_cast<int>(blockDim.x)) {
      const int es = e / slot_floats, er = e % slot_floats / g.cols.staged, ec = e % g.cols.staged;
      const int ch = channel_tile * g.slots + es, hr = lo_r + er, wc = lo_c + ec;
      float v = 0.0f;
      if (ch < g.channels && hr >= 0 && hr < g.rows.sources && wc >= 0 && wc < g.cols.sources) {
        const std::int64_t source = (std::int64_t(ch) * g.planes + plane) / g.ratio;
        v = to_float(p.source[((image * g.source_channels + source) * g.rows.sources + hr) * g.cols.sources + wc]);
      }
      staged[e] = v;
    }
    __syncthreads();
    if (channel >= g.channels) continue;
    const T* w = p.weight + (std::int64_t(channel) * g.planes + plane) * taps;
    float regs[KH > 0 ? KH * KW : 1];
    if constexpr (KH > 0) {
#pragma unroll
      for (int t = 0; t < KH * KW; ++t) regs[t] = to_float(w[g.flip ? KH * KW - 1 - t : t]);
    }
    const float* tile_of_slot = staged + slot * slot_floats;
#pragma unroll(KH > 0 ? KH : 1)  // a kernel of any size: no unrolling, fewer live registers
    for (int i = 0; i < kh; ++i) {
      const int nr = a * g.rows.step + g.rows.offset + i * g.rows.dilation;
      const int hr = kExact ? nr : floor_div(nr, g.rows.divisor);
      if (!kExact && hr * g.rows.divisor != nr) continue;
      const float* row = tile_of_slot + (hr - lo_r) * g.cols.staged;
#pragma unroll(KW > 0 ? KW : 1)
      for (int j = 0; j < kw; ++j) {
        const int t = i * kw + j;
        const float wv = KH > 0 ? regs[t] : to_float(w[g.flip ? taps - 1 - t : t]);
#pragma unroll
        for (int e = 0; e < kPerThread; ++e) {
          const int nc = (b0 + e) * g.cols.step + g.cols.offset + j * g.cols.dilation;
          const int wc = kExact ? nc : floor_div(nc, g.cols.divisor);
          if (kExact || wc * g.cols.divisor == nc) acc[e] = fmaf(wv, row[wc - lo_c], acc[e]);
        }
      }
    }
  }
  if (channel >= g.channels || a >= g.rows.outputs) return;
  const float bias = p.bias != nullptr ? to_float(p.bias[channel]) : 0.0f;
  T* out = p.out + ((image * g.channels + channel) * g.rows.outputs + a) * g.cols.outputs;
#pragma unroll
  for (int e = 0; e < kPerThread; ++e)
    if (b0 + e < g.cols.outputs) out[b0 + e] = from_float<T>(acc[e] + bias);
}

template <class T, int KH, int KW, bool kExact>
void launch_sweep(const char* name, const Sweep<T>& p, cudaStream_t stream) {
  const dim3 block(static_cast<unsigned>(p.g.slots * p.g.slot_threads));
  for (std::int64_t b0 = 0; b0 < p.g.blocks; b0 += kMaxBlocksPerLaunch)
    launch(name, sweep_kernel<T, KH, KW, kExact>,
           dim3(static_cast<unsigned>(std::min(p.g.blocks - b0, kMaxBlocksPerLaunch))), block,
           static_cast<std::size_t>(p.g.shared_bytes()), stream, p, b0);
}

template <class T, int KH, int KW>
void launch_sized(const char* name, const Sweep<T>& p, cudaStream_t stream) {
  if (p.g.rows.divisor == 1 && p.g.cols.divisor == 1) {
    launch_sweep<T, KH, KW, true>(name, p, stream);
  } else {
    launch_sweep<T, KH, KW, false>(name, p, stream);
  }
}

// Runs sweep `p` with the kernel of its size: 3x3 and 5x5 keep their weights in registers.
template <class T>
void run_sweep(const char* name, const Sweep<T>& p, cudaStream_t stream) {
  if (p.g.blocks == 0) return;
  if (p.g.shared_bytes() > kMaxSharedBytes)
    throw std::invalid_argument(std::string(name) + ": the depthwise tile does not fit in shared memory");
  const int kh = p.g.rows.taps, kw = p.g.cols.taps;
  if (kh == 3 && kw == 3) {
    launch_sized<T, 3, 3>(name, p, stream);
  } else if (kh == 5 && kw == 5) {
    launch_sized<T, 5, 5>(name, p, stream);
  } else {
    launch_sized<T, 0, 0>(name, p, stream);
  }
}

using conv_detail::with_element_type;

// --- weight gradient ---------------------------------------------------------------------------

constexpr int kWeightThreads = 256;
constexpr int kTapGroup = 9;                  // taps per block (accumulators per thread): a 3x3 kernel in one
constexpr std::int64_t kMinPositions = 4096;  // per split: enough work to amortize its partial sums
constexpr int kMaxSplits = 1024;

template <class T>
struct WeightPass {
  const T* grad_y;
  const T* x;
  float* partial;  // (splits, channels, taps + 1): the split's sums, the bias gradient's last
  int channels, in_channels, multiplier, in_h, in_w, out_h, out_w, kernel_w, taps;
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  std::int64_t positions, per_split;  // N*P*Q, and per split
  int splits, tap_groups;
};

// Block (block0 + blockIdx.x) = (channel * tap_groups + tap group) * splits + split: the sums of
// grad_y * x over the split's positions for up to 9 taps of the channel (and of grad_y for the
// bias, tap group 0), each thread over positions tid, tid + 256, ... then the warps' shuffles and
// the 8 warps in order.
template <class T>
__global__ void __launch_bounds__(kWeightThreads) weight_partial_kernel(WeightPass<T> p, std::int64_t block0) {
  __shared__ float warp_sums[kTapGroup + 1][kWeightThreads / 32];
  const std::int64_t block = block0 + blockIdx.x;
  const int split = static_cast<int>(block % p.splits), group = static_cast<int>(block / p.splits % p.tap_groups);
  const int channel = static_cast<int>(block / (std::int64_t(p.splits) * p.tap_groups));
  const int t0 = group * kTapGroup, count = p.taps - t0 < kTapGroup ? p.taps - t0 : kTapGroup;
  int dh[kTapGroup], dw[kTapGroup];  // each tap's input offset from the window's corner
#pragma unroll
  for (int t = 0; t < kTapGroup; ++t) {
    const int tap = t0 + (t < count ? t : 0);
    dh[t] = tap / p.kernel_w * p.dilation_h - p.pad_h, dw[t] = tap % p.kernel_w * p.dilation_w - p.pad_w;
  }
  float acc[kTapGroup + 1] = {};  // the taps, then the bias
  const std::int64_t plane = std::int64_t(p.out_h) * p.out_w, in_plane = std::int64_t(p.in_h) * p.in_w;
  const std::int64_t begin = split * p.per_split;
  const std::int64_t end = begin + p.per_split < p.positions ? begin + p.per_split : p.positions;
  for (std::int64_t pos = begin + threadIdx.x; pos < end; pos += kWeightThreads) {
    const std::int64_t image = pos / plane;
    const int pq = static_cast<int>(pos - image * plane), pr = pq / p.out_w, qc = pq % p.out_w;
    const float gv = to_float(p.grad_y[(image * p.channels + channel) * plane + pq]);
    acc[kTapGroup] += gv;
    const T* xp = p.x + (image * p.in_channels + channel / p.multiplier) * in_plane;
    const int h0 = pr * p.stride_h, w0 = qc * p.stride_w;
#pragma unroll
    for (int t = 0; t < kTapGroup; ++t) {
      const int h = h0 + dh[t], w = w0 + dw[t];
      if (t < count && h >= 0 && h < p.in_h && w >= 0 && w < p.in_w)
        acc[t] = fmaf(gv, to_float(xp[std::int64_t(h) * p.in_w + w]), acc[t]);
    }
  }
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
#pragma unroll
  for (int t = 0; t <= kTapGroup; ++t) {
    float v = acc[t];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) warp_sums[t][warp] = v;
  }
  __syncthreads();
  const int t = static_cast<int>(threadIdx.x);
  if (t < count || (t == kTapGroup && group == 0)) {
    float sum = 0.0f;
    for (int w = 0; w < kWeightThreads / 32; ++w) sum += warp_sums[t][w];
    const int index = t < kTapGroup ? t0 + t : p.taps;
    p.partial[(std::int64_t(split) * p.channels + channel) * (p.taps + 1) + index] = sum;
  }
}

// Element i of (channels, taps + 1): the splits' partial sums added in order of split, to grad_w
// (tap < taps) or grad_bias (the last, when not null).
template <class T>
__global__ void __launch_bounds__(kWeightThreads)
    weight_sum_kernel(const float* partial, T* grad_w, T* grad_bias, std::int64_t channels, int taps, int splits) {
  const std::int64_t count = channels * (taps + 1);
  for (std::int64_t i = blockIdx.x * std::int64_t(kWeightThreads) + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * kWeightThreads) {
    float sum = 0.0f;
    for (int s = 0; s < splits; ++s) sum += partial[s * count + i];
    const std::int64_t channel = i / (taps + 1);
    const int tap = static_cast<int>(i % (taps + 1));
    if (tap < taps) {
      grad_w[channel * taps + tap] = from_float<T>(sum);
    } else if (grad_bias != nullptr) {
      grad_bias[channel] = from_float<T>(sum);
    }
  }
}

int tap_groups_of(const Conv2dShape& s) {
  return static_cast<int>((s.kernel_h * s.kernel_w + kTapGroup - 1) / kTapGroup);
}

}  // namespace

bool depthwise_takes(const Conv2dShape& s) {
  if (s.groups != s.in_channels || s.groups < 2) return false;
  const Geometry forward = sweep_geometry(s, false), data = sweep_geometry(s, true);
  return forward.shared_bytes() <= kMaxSharedBytes && data.shared_bytes() <= kMaxSharedBytes;
}

void depthwise_forward(const Conv2dShape& s, GemmPrecision precision, const void* x, const void* w, const void* bias,
                       void* y, cudaStream_t stream) {
  with_element_type(precision, [&](auto zero) {
    using T = decltype(zero);
    const Sweep<T> p{sweep_geometry(s, false), static_cast<const T*>(x), static_cast<const T*>(w),
                     static_cast<const T*>(bias), static_cast<T*>(y)};
    run_sweep("conv2d_forward (depthwise)", p, stream);
  });
}

void depthwise_backward_data(const Conv2dShape& s, GemmPrecision precision, const void* grad_y, const void* w,
                             void* grad_x, cudaStream_t stream) {
  with_element_type(precision, [&](auto zero) {
    using T = decltype(zero);
    const Sweep<T> p{sweep_geometry(s, true), static_cast<const T*>(grad_y), static_cast<const T*>(w), nullptr,
                     static_cast<T*>(grad_x)};
    run_sweep("conv2d_backward_data (depthwise)", p, stream);
  });
}

int depthwise_weight_splits(const Conv2dShape& s, int sm_count) {
  const std::int64_t blocks = s.out_channels * tap_groups_of(s), positions = s.batch * s.out_h * s.out_w;
  const std::int64_t wanted = 4 * std::int64_t(std::max(sm_count, 1));  // a few blocks per multiprocessor
  if (blocks >= wanted || positions < 2 * kMinPositions) return 1;
  return static_cast<int>(
      std::min({(wanted + blocks - 1) / blocks, positions / kMinPositions, static_cast<std::int64_t>(kMaxSplits)}));
}

std::int64_t depthwise_weight_workspace_bytes(const Conv2dShape& s, int splits) {
  return std::int64_t(std::max(splits, 1)) * s.out_channels * (s.kernel_h * s.kernel_w + 1) * 4;
}

void depthwise_backward_weight(const Conv2dShape& s, GemmPrecision precision, const void* grad_y, const void* x,
                               void* grad_w, void* grad_bias, int splits, void* workspace, cudaStream_t stream) {
  if (splits < 1) throw std::invalid_argument("conv2d_backward_weight (depthwise): splits must be >= 1");
  if (s.out_channels == 0) return;
  with_element_type(precision, [&](auto zero) {
    using T = decltype(zero);
    WeightPass<T> p{};
    p.grad_y = static_cast<const T*>(grad_y), p.x = static_cast<const T*>(x);
    p.partial = static_cast<float*>(workspace);
    p.channels = static_cast<int>(s.out_channels), p.in_channels = static_cast<int>(s.in_channels);
    p.multiplier = static_cast<int>(s.out_channels / s.in_channels);
    p.in_h = static_cast<int>(s.in_h), p.in_w = static_cast<int>(s.in_w);
    p.out_h = static_cast<int>(s.out_h), p.out_w = static_cast<int>(s.out_w);
    p.kernel_w = static_cast<int>(s.kernel_w), p.taps = static_cast<int>(s.kernel_h * s.kernel_w);
    p.stride_h = static_cast<int>(s.stride_h), p.stride_w = static_cast<int>(s.stride_w);
    p.pad_h = static_cast<int>(s.pad_h), p.pad_w = static_cast<int>(s.pad_w);
    p.dilation_h = static_cast<int>(s.dilation_h), p.dilation_w = static_cast<int>(s.dilation_w);
    p.positions = s.batch * s.out_h * s.out_w;
    p.splits = splits, p.tap_groups = tap_groups_of(s);
    p.per_split = std::max<std::int64_t>((p.positions + splits - 1) / splits, 1);
    const std::int64_t blocks = s.out_channels * p.tap_groups * splits;
    for (std::int64_t b0 = 0; b0 < blocks; b0 += kMaxBlocksPerLaunch)
      launch("conv2d_backward_weight (depthwise)", weight_partial_kernel<T>,
             dim3(static_cast<unsigned>(std::min(blocks - b0, kMaxBlocksPerLaunch))), dim3(kWeightThreads), 0, stream,
             p, b0);
    const std::int64_t count = s.out_channels * (p.taps + 1);
    launch("conv2d_backward_weight (depthwise sums)", weight_sum_kernel<T>,
           dim3(static_cast<unsigned>(std::min<std::int64_t>((count + kWeightThreads - 1) / kWeightThreads, 4096))),
           dim3(kWeightThreads), 0, stream, static_cast<const float*>(workspace), static_cast<T*>(grad_w),
           static_cast<T*>(grad_bias), s.out_channels, p.taps, splits);
  });
}

}  // namespace deepkern::cuda
