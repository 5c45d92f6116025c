// direct.h's forward. The work is cut into blocks of kBlockRows output rows of one image, spread over
// the threads. For its block a thread lays out the input rows the block reads, channel by channel, as
// stride_w phases (phase f of a row holds its input columns stride_w * j + f - pad_w for j = 0, 1, ...,
// zero outside the image; rows outside the image are all zero), so that tap (c, r, s) of output row p
// reads one contiguous run: phase s % stride_w of input row p * stride_h - pad_h + r * dilation_h, from
// s / stride_w on. For each output row and each group of the row tile's output channels the row tile
// (direct_kernels.h) then sums all C * R * S taps in registers, padding included (its zeros times the
// weights, as the direct sum: an infinite weight gives NaN there, as in PyTorch). The rows of a block
// (at most a few hundred KB) stay in cache across the channel groups; the weights are packed once per
// call as [channel group][tap][channel], groups of the row tile's channels, zero past K.
#include "cpu/conv/direct.h"

#include <algorithm>
#include <vector>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/conv/direct_kernels.h"

namespace deepkern::cpu {
namespace {

// The layers taken: at most kDirectMaxChannels input channels (images: gray, RGB, RGBA) and kDirectMaxTaps
// terms per output. Measured against im2col + GEMM (AVX-512, 1 thread): 3 -> 64 channels 7x7/2 at 224 x
// 224, 1.10-1.14x at batches 1 and 32; 3 -> 64 3x3 at 32 x 32, 1.17-1.19x; 1 -> 32 3x3 at 28 x 28, 1.17x;
// but 16 -> 64 and 28 -> 64 3x3, 0.92-0.97x (the GEMM's panels of shifted planes cost less there).
constexpr int64_t kDirectMaxChannels = 4;
constexpr int64_t kDirectMaxTaps = 256;
constexpr int64_t kBlockRows = 8;  // output rows per block of work

struct DirectScratch;
template <class T>
T* thread_buffer(int which, int64_t count) {
  return thread_scratch<DirectScratch, 1, T>(which, count);
}

// The input rows [ih0, ih0 + count) of image x (C planes) in phases (see the top of the file): row i of
// channel c at rows + (c * count + i) * stride_w * phase_len, phase f at f * phase_len within it.
void lay_out_rows(const Conv2dShape& s, const float* x, int64_t ih0, int64_t count, int64_t phase_len, float* rows) {
  const int64_t sw = s.stride_w;
  for (int64_t c = 0; c < s.in_channels; ++c)
    for (int64_t i = 0; i < count; ++i) {
      float* dst = rows + (c * count + i) * sw * phase_len;
      const int64_t ih = ih0 + i;
      if (ih < 0 || ih >= s.in_h) {
        std::fill(dst, dst + sw * phase_len, 0.0f);
        continue;
      }
      const float* src = x + (c * s.in_h + ih) * s.in_w;
      for (int64_t f = 0; f < sw; ++f) {
        // Phase f's entries j read column sw * j + f - pad_w: inside the row for j in [j_lo, j_hi).
        const int64_t first = f - s.pad_w;
        const int64_t j_lo = std::clamp<int64_t>((sw - 1 - first) / sw, 0, phase_len);
        const int64_t j_hi = std::clamp<int64_t>((s.in_w - first + sw - 1) / sw, j_lo, phase_len);
        float* phase = dst + f * phase_len;
        std::fill(phase, phase + j_lo, 0.0f);
        const float* in = src + first;
        if (sw == 1) {
          std::copy(in + j_lo, in + j_hi, phase + j_lo);
        } else {
#pragma omp simd
          for (int64_t j = j_lo; j < j_hi; ++j) phase[j] = in[2 * j];
        }
        std::fill(phase + j_hi, phase + phase_len, 0.0f);
      }
    }
}

}  // namespace

bool direct_applies(const Conv2dShape& s) {
  return s.groups == 1 && (s.stride_w == 1 || s.stride_w == 2) && s.dilation_w == 1 &&
         s.in_channels <= kDirectMaxChannels && s.in_channels * s.kernel_h * s.kernel_w <= kDirectMaxTaps;
}

void direct_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y, bool relu) {
  const int64_t K = s.out_channels, P = s.out_h, Q = s.out_w;
  if (s.batch == 0 || K == 0 || P == 0 || Q == 0) return;
  const DirectConvKernels& kern =
      dispatch(IsaFamily::conv_direct,
               IsaTables{generic::direct_conv_kernels, avx2::direct_conv_kernels, avx512::direct_conv_kernels});
  const int64_t G = kern.channels;
  const int64_t taps = s.in_channels * s.kernel_h * s.kernel_w, channel_groups = (K + G - 1) / G;
  std::vector<float> packed(static_cast<size_t>(channel_groups * taps * G), 0.0f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t t = 0; t < taps; ++t) packed[static_cast<size_t>(((k / G) * taps + t) * G + k % G)] = w[k * taps + t];
  std::vector<float> padded_bias;
  if (bias) {
    padded_bias.assign(static_cast<size_t>(channel_groups * G), 0.0f);
    std::copy(bias, bias + K, padded_bias.begin());
  }
  const int64_t width = kern.vector_width, tile = width * kern.max_vectors;
  const int64_t phase_len = (s.kernel_w - 1) / s.stride_w + (Q + width - 1) / width * width;
  const int64_t row_len = s.stride_w * phase_len;
  const int64_t blocks = (P + kBlockRows - 1) / kBlockRows, items = s.batch * blocks;
  const int team = static_cast<int>(std::min<int64_t>(num_threads(), items));
  run_on_threads(team, [&](int part) {
    for (int64_t item = items * part / team; item < items * (part + 1) / team; ++item) {
      const int64_t n = item / blocks, p0 = item % blocks * kBlockRows, p1 = std::min(P, p0 + kBlockRows);
      const int64_t ih0 = p0 * s.stride_h - s.pad_h;
      const int64_t count = (p1 - 1 - p0) * s.stride_h + (s.kernel_h - 1) * s.dilation_h + 1;
      float* rows = thread_buffer<float>(0, s.in_channels * count * row_len);
      int64_t* offsets = thread_buffer<int64_t>(0, taps);
      lay_out_rows(s, x + n * s.in_channels * s.in_h * s.in_w, ih0, count, phase_len, rows);
      // Each tap's offset from the block's first output row; output row p reads stride_h rows further each.
      for (int64_t c = 0, t = 0; c < s.in_channels; ++c)
        for (int64_t r = 0; r < s.kernel_h; ++r)
          for (int64_t tap = 0; tap < s.kernel_w; ++tap, ++t)
            offsets[t] = (c * count + r * s.dilation_h) * row_len + tap % s.stride_w * phase_len + tap / s.stride_w;
      for (int64_t p = p0; p < p1; ++p) {
        const float* rows_p = rows + (p - p0) * s.stride_h * row_len;
        for (int64_t g = 0; g < channel_groups; ++g)
          for (int64_t q0 = 0; q0 < Q; q0 += tile)
            kern.row_tile(taps, offsets, rows_p + q0, packed.data() + g * taps * G,
                          bias ? padded_bias.data() + g * G : nullptr, static_cast<int>(std::min(G, K - g * G)),
                          std::min(tile, Q - q0), relu, y + ((n * K + g * G) * P + p) * Q + q0, P * Q);
      }
    }
  });
}

}  // namespace deepkern::cpu
