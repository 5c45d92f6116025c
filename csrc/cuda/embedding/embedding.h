// Embedding lookups on the GPU (nn.Embedding / F.embedding on 'cuda' tensors): the forward gathers
// rows of a weight table, the backward scatters gradient rows back into a zeroed weight gradient.
//
// weight / grad_weight: `rows` x `dim`, C-contiguous; indices: n int64, C-contiguous; out / grad:
// n x `dim`, C-contiguous; all on the current device, the written array overlapping no other.
// T is float or double. An index outside [0, rows) never addresses memory: the kernels record it
// in `bad` (two int64 of device memory the caller zeroed: bad[0] = 1, bad[1] = one such index) and
// skip it; the binding turns that into an IndexError. Work is queued on `stream`; nothing waits.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

// At most this many indices, the backward is deterministic: each distinct row's gradient is the sum
// of its occurrences in index order (bitwise what the CPU's np.add.at gives), found without sorting
// by scanning the indices (n^2 dim / 2 comparisons at most). Above it, rows accumulate with
// atomicAdd, whose order (and so the float rounding of repeated rows) may vary between runs.
constexpr std::int64_t kEmbeddingDeterministicMax = 1024;

// out[i, :] = weight[indices[i], :] for i in [0, n).
template <class T>
void launch_embedding(const T* weight, std::int64_t rows, std::int64_t dim, const std::int64_t* indices, std::int64_t n,
                      T* out, std::int64_t* bad, cudaStream_t stream);

// grad_weight[indices[i], :] += grad[i, :] for i in [0, n), but not into row `padding_idx` (-1 for
// none); grad_weight starts zeroed (the caller's).
template <class T>
void launch_embedding_backward(const T* grad, const std::int64_t* indices, std::int64_t n, std::int64_t rows,
                               std::int64_t dim, std::int64_t padding_idx, T* grad_weight, std::int64_t* bad,
                               cudaStream_t stream);

}  // namespace deepkern::cuda
