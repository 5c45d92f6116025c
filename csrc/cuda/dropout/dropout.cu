// The dropout kernels (dropout.h). Forward: one thread per Philox block of 4 elements (grid-stride
// loop), 4 words from one philox4x32_10 call; a block whose 4 elements lie inside the arrays, with
// x and y aligned to 4 elements and mask to 4 bytes, is read and written as one vector access each
// (16 bytes of floats, 2 x 16 of doubles, 4 mask bytes), the rest element by element. Backward: the
// same 4-element quads, no Philox.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/dropout/philox.h"
#include "cuda/dropout/dropout.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;

// 4 elements of T, loaded and stored as one (or, for double, two) vector accesses.
template <class T>
struct alignas(4 * sizeof(T)) Quad {
  T v[4];
};

// 4 mask bytes as one 32-bit access.
struct alignas(4) MaskQuad {
  std::uint8_t v[4];
};

bool aligned(const void* p, std::size_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }

// Whether every 4-element quad of the arrays (quad q: elements 4q .. 4q + 3) may be accessed whole.
template <class T>
bool quads_aligned(const T* a, const T* b, const std::uint8_t* mask) {
  return aligned(a, sizeof(Quad<T>)) && aligned(b, sizeof(Quad<T>)) && aligned(mask, sizeof(MaskQuad));
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(const T* __restrict__ x, T* __restrict__ y, std::uint8_t* __restrict__ mask, std::int64_t n,
                   philox::DropoutParams d, T scale, bool vector) {
  const std::int64_t quads = (n + 3) / 4;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t q = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < quads; q += step) {
    const philox::Words w = philox::dropout_block(d, static_cast<std::uint64_t>(q));
    if (vector && 4 * q + 4 <= n) {
      const Quad<T> xv = reinterpret_cast<const Quad<T>*>(x)[q];
      Quad<T> yv;
      MaskQuad mv;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const bool keep = philox::dropout_keeps(d, w.w[k]);
        mv.v[k] = keep ? 1 : 0;
        yv.v[k] = philox::dropout_apply(xv.v[k], keep, scale);
      }
      reinterpret_cast<Quad<T>*>(y)[q] = yv;
      reinterpret_cast<MaskQuad*>(mask)[q] = mv;
    } else {
      for (int k = 0; k < 4 && 4 * q + k < n; ++k) {
        const std::int64_t i = 4 * q + k;
        const bool keep = philox::dropout_keeps(d, w.w[k]);
        mask[i] = keep ? 1 : 0;
        y[i] = philox::dropout_apply(x[i], keep, scale);
      }
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    dropout_backward_kernel(const T* __restrict__ grad, const std::uint8_t* __restrict__ mask, T* __restrict__ out,
                            std::int64_t n, T scale, bool vector) {
  const std::int64_t quads = (n + 3) / 4;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t q = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < quads; q += step) {
    if (vector && 4 * q + 4 <= n) {
      const Quad<T> gv = reinterpret_cast<const Quad<T>*>(grad)[q];
      const MaskQuad mv = reinterpret_cast<const MaskQuad*>(mask)[q];
      Quad<T> ov;
#pragma unroll
      for (int k = 0; k < 4; ++k) ov.v[k] = philox::dropout_apply(gv.v[k], mv.v[k] != 0, scale);
      reinterpret_cast<Quad<T>*>(out)[q] = ov;
    } else {
      for (int k = 0; k < 4 && 4 * q + k < n; ++k) {
        const std::int64_t i = 4 * q + k;
        out[i] = philox::dropout_apply(grad[i], mask[i] != 0, scale);
      }
    }
  }
}

// Blocks of kThreads threads for one thread per quad of n elements, at most kMaxBlocks.
dim3 grid_for(std::int64_t n) {
  const std::int64_t quads = (n + 3) / 4;
  return dim3(static_cast<unsigned>(std::min<std::int64_t>((quads + kThreads - 1) / kThreads, kMaxBlocks)));
}

void check_count(const char* op, std::int64_t n) {
  if (n < 0) throw std::invalid_argument(std::string(op) + ": negative element count " + std::to_string(n));
}

}  // namespace

template <class T>
void launch_dropout(const T* x, T* y, std::uint8_t* mask, std::int64_t n, double p, std::uint64_t seed,
                    std::uint64_t offset, cudaStream_t stream) {
  check_count("dropout", n);
  if (n == 0) return;
  launch("dropout_kernel", dropout_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, x, y, mask, n,
         philox::dropout_params(p, seed, offset), philox::dropout_scale<T>(p), quads_aligned(x, y, mask));
}

template <class T>
void launch_dropout_backward(const T* grad, const std::uint8_t* mask, T* out, std::int64_t n, double p,
                             cudaStream_t stream) {
  check_count("dropout_backward", n);
  if (n == 0) return;
  launch("dropout_backward_kernel", dropout_backward_kernel<T>, grid_for(n), dim3(kThreads), 0, stream, grad, mask, out,
         n, philox::dropout_scale<T>(p), quads_aligned(grad, out, mask));
}

template void launch_dropout<float>(const float*, float*, std::uint8_t*, std::int64_t, double, std::uint64_t,
                                    std::uint64_t, cudaStream_t);
template void launch_dropout<double>(const double*, double*, std::uint8_t*, std::int64_t, double, std::uint64_t,
                                     std::uint64_t, cudaStream_t);
template void launch_dropout_backward<float>(const float*, const std::uint8_t*, float*, std::int64_t, double,
                                             cudaStream_t);
template void launch_dropout_backward<double>(const double*, const std::uint8_t*, double*, std::int64_t, double,
                                              cudaStream_t);

}  // namespace deepkern::cuda
