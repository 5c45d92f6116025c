// The embedding kernels (embedding.h): one thread per output element (index i, column d) in a
// grid-stride loop, consecutive threads on consecutive columns, so each row is read and written
// coalesced.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/embedding/embedding.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;

// Whether k is a row of the table; records it in bad otherwise.
__device__ __forceinline__ bool in_table(std::int64_t k, std::int64_t rows, std::int64_t* bad) {
  if (k >= 0 && k < rows) return true;
  bad[1] = k;  // any of the bad indices met will do
  bad[0] = 1;
  return false;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    embedding_kernel(const T* __restrict__ weight, std::int64_t rows, std::int64_t dim,
                     const std::int64_t* __restrict__ indices, std::int64_t total, T* __restrict__ out,
                     std::int64_t* bad) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const std::int64_t i = e / dim, d = e - i * dim;
    const std::int64_t k = indices[i];
    if (in_table(k, rows, bad)) out[e] = weight[k * dim + d];
  }
}

// kDeterministic: the thread of the first occurrence of each row (and column) sums every occurrence
// in index order and stores the sum; later occurrences do nothing. Else each adds its own atomically.
template <bool kDeterministic, class T>
__global__ void __launch_bounds__(kThreads)
    embedding_backward_kernel(const T* __restrict__ grad, const std::int64_t* __restrict__ indices, std::int64_t n,
                              std::int64_t rows, std::int64_t dim, std::int64_t padding_idx, T* grad_weight,
                              std::int64_t* bad) {
  const std::int64_t total = n * dim;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const std::int64_t i = e / dim, d = e - i * dim;
    const std::int64_t k = indices[i];
    if (!in_table(k, rows, bad) || k == padding_idx) continue;
    if constexpr (kDeterministic) {
      bool first = true;
      for (std::int64_t j = 0; j < i && first; ++j) first = indices[j] != k;
      if (!first) continue;
      T sum = T(0);
      for (std::int64_t j = i; j < n; ++j)
        if (indices[j] == k) sum += grad[j * dim + d];
      grad_weight[k * dim + d] = sum;
    } else {
      atomicAdd(grad_weight + k * dim + d, grad[e]);
    }
  }
}

dim3 grid_for(std::int64_t total) {
  return dim3(static_cast<unsigned>(std::min<std::int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks)));
}

void check_sizes(const char* op, std::int64_t rows, std::int64_t dim, std::int64_t n) {
  if (rows < 0 || dim < 0 || n < 0)
    throw std::invalid_argument(std::string(op) + ": negative size (rows " + std::to_string(rows) + ", dim " +
                                std::to_string(dim) + ", n " + std::to_string(n) + ")");
}

}  // namespace

template <class T>
void launch_embedding(const T* weight, std::int64_t rows, std::int64_t dim, const std::int64_t* indices, std::int64_t n,
                      T* out, std::int64_t* bad, cudaStream_t stream) {
  check_sizes("embedding", rows, dim, n);
  if (n == 0 || dim == 0) return;
  launch("embedding_kernel", embedding_kernel<T>, grid_for(n * dim), dim3(kThreads), 0, stream, weight, rows, dim,
         indices, n * dim, out, bad);
}

template <class T>
void launch_embedding_backward(const T* grad, const std::int64_t* indices, std::int64_t n, std::int64_t rows,
                               std::int64_t dim, std::int64_t padding_idx, T* grad_weight, std::int64_t* bad,
                               cudaStream_t stream) {
  check_sizes("embedding_backward", rows, dim, n);
  if (n == 0 || dim == 0) return;
  const auto kernel =
      n <= kEmbeddingDeterministicMax ? embedding_backward_kernel<true, T> : embedding_backward_kernel<false, T>;
  launch("embedding_backward_kernel", kernel, grid_for(n * dim), dim3(kThreads), 0, stream, grad, indices, n, rows, dim,
         padding_idx, grad_weight, bad);
}

template void launch_embedding<float>(const float*, std::int64_t, std::int64_t, const std::int64_t*, std::int64_t,
                                      float*, std::int64_t*, cudaStream_t);
template void launch_embedding<double>(const double*, std::int64_t, std::int64_t, const std::int64_t*, std::int64_t,
                                       double*, std::int64_t*, cudaStream_t);
template void launch_embedding_backward<float>(const float*, const std::int64_t*, std::int64_t, std::int64_t,
                                               std::int64_t, std::int64_t, float*, std::int64_t*, cudaStream_t);
template void launch_embedding_backward<double>(const double*, const std::int64_t*, std::int64_t, std::int64_t,
                                                std::int64_t, std::int64_t, double*, std::int64_t*, cudaStream_t);

}  // namespace deepkern::cuda
