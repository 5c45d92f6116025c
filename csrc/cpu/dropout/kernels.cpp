// The dropout kernels of one ISA: this source is compiled once per ISA (DEEPKERN_ISA_NS = avx512,
// avx2, generic) and the compiler vectorizes its loops for that ISA's registers (Philox's 32 x 32
// -> 64-bit multiplies as pmuludq, 4 or 8 blocks per instruction). The stream and the rule are
// philox.h's, shared with the CUDA kernel.
#include <algorithm>
#include <cstdint>

#include "cpu/dropout/kernels.h"
#include "cpu/dropout/philox.h"

namespace deepkern::cpu::DEEPKERN_ISA_NS {
namespace {

// Elements per tile: the Philox words of one tile (1 KiB) stay in L1 between the two loops.
constexpr int64_t kTile = 256;

template <class T>
void forward(const philox::DropoutParams& d, const T* __restrict x, T* __restrict y, std::uint8_t* __restrict mask,
             int64_t begin, int64_t end, T scale) {
  alignas(64) std::uint32_t words[kTile];
  for (int64_t t = begin; t < end; t += kTile) {
    const int64_t len = std::min(kTile, end - t);
    const auto first = static_cast<std::uint64_t>(t / 4);
    const int64_t blocks = (len + 3) / 4;
#pragma omp simd
    for (int64_t b = 0; b < blocks; ++b) {
      const philox::Words w = philox::dropout_block(d, first + static_cast<std::uint64_t>(b));
      for (int k = 0; k < 4; ++k) words[4 * b + k] = w.w[k];
    }
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      const bool keep = philox::dropout_keeps(d, words[j]);
      mask[t + j] = keep ? 1 : 0;
      y[t + j] = philox::dropout_apply(x[t + j], keep, scale);
    }
  }
}

template <class T>
void backward(const T* __restrict grad, const std::uint8_t* __restrict mask, T* __restrict out, int64_t n, T scale) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = philox::dropout_apply(grad[i], mask[i] != 0, scale);
}

}  // namespace

const KernelsByType<DropoutKernels> dropout_kernels = {
    .f32 = {.forward = &forward<float>, .backward = &backward<float>},
    .f64 = {.forward = &forward<double>, .backward = &backward<double>},
};

}  // namespace deepkern::cpu::DEEPKERN_ISA_NS
