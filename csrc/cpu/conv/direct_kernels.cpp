// direct_kernels.h's row tile, compiled once per ISA (a per-ISA source) on GCC's vector extension,
// one vector of this ISA's width: AVX-512 16 floats, AVX2 8, the baseline 4.
//
// Blocking: the tile's K channels x NV vectors of sums stay in registers for all taps; each tap loads
// NV vectors of one input row and broadcasts K weights, for K NV multiply-adds. AVX-512 (32
// registers): K = 6, NV <= 4, 64 pixels, 24 sums + 6 weights + 1 input (10 loads per 24 FMAs; 4 x 7
// spilled a sum); AVX2 and the baseline (16 registers): K = 4, NV <= 2, 8 sums.
#include <array>
#include <cstring>
#include <utility>

#include "cpu/conv/direct_kernels.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

#if defined(__AVX512F__)
constexpr int kChannels = 6, kWidth = 16, kMaxVectors = 4;
#elif defined(__AVX2__)
constexpr int kChannels = 4, kWidth = 8, kMaxVectors = 2;
#else
constexpr int kChannels = 4, kWidth = 4, kMaxVectors = 2;
#endif

typedef float Vec __attribute__((vector_size(kWidth * sizeof(float))));

[[gnu::always_inline]] inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <size_t... I>
[[gnu::always_inline]] inline Vec broadcast(float value, std::index_sequence<I...>) {
  return Vec{(static_cast<void>(I), value)...};
}

[[gnu::always_inline]] inline Vec broadcast(float value) {
  return broadcast(value, std::make_index_sequence<kWidth>{});
}

template <int NV>
void row_tile(int64_t taps, const int64_t* offsets, const float* rows, const float* w, const float* bias, int channels,
              int64_t width, bool relu, float* out, int64_t ldo) {
  constexpr int K = kChannels;
  Vec sums[K][NV];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) sums[k][v] = broadcast(bias ? bias[k] : 0.0f);
  for (int64_t t = 0; t < taps; ++t) {
    const float* row = rows + offsets[t];
    Vec weight[K];
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) weight[k] = broadcast(w[t * K + k]);
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const Vec x = load(row + v * kWidth);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) sums[k][v] += x * weight[k];
    }
  }
  const int64_t tail = width - (NV - 1) * kWidth;  // lanes of the last vector to store
  for (int k = 0; k < channels; ++k)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      Vec y = sums[k][v];
      if (relu) y = y < Vec{} ? Vec{} : y;
      float* dst = out + k * ldo + v * kWidth;
      if (v + 1 < NV || tail == kWidth) {
        std::memcpy(dst, &y, sizeof y);
      } else {
        for (int64_t i = 0; i < tail; ++i) dst[i] = y[i];
      }
    }
}

template <int... NV>
constexpr auto tiles_of(std::integer_sequence<int, NV...>) {
  using Tile = decltype(&row_tile<1>);
  return std::array<Tile, sizeof...(NV)>{&row_tile<NV + 1>...};
}

void row_tile_any(int64_t taps, const int64_t* offsets, const float* rows, const float* w, const float* bias,
                  int channels, int64_t width, bool relu, float* out, int64_t ldo) {
  static constexpr auto kTiles = tiles_of(std::make_integer_sequence<int, kMaxVectors>{});
  kTiles[(width + kWidth - 1) / kWidth - 1](taps, offsets, rows, w, bias, channels, width, relu, out, ldo);
}

}  // namespace

const DirectConvKernels direct_conv_kernels = {
    .channels = kChannels,
    .vector_width = kWidth,
    .max_vectors = kMaxVectors,
    .row_tile = &row_tile_any,
};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
