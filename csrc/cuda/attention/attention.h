// Scaled dot-product attention on the GPU, forward and backward, with the CPU kernels' contract and
// definitions (cpu/attention/attention.h): N problems; problem n reads its queries q + n L E, keys
// k + k_offset(n), values v + v_offset(n) and, with a mask, the additive mask's element (i, j) at
// mask + mask_offset(n) + i mask_row_stride + j mask_col_stride; x_ij = scale q_i . k_j + mask_ij
// (0 scale without features; j > i hidden when causal), p = softmax_j(x), o_i = sum_j p_ij z_ij v_j
// with dropout's factors z from the Philox stream of element (n L + i) S + j, lse_i = log sum_j
// exp(x_ij) (-inf and o_i = 0 for a row that sees no key). All arrays are contiguous device arrays
// of T (float or double); outputs overlap no input. Work is queued on `stream`.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace deepkern::cuda {

struct AttentionShape {
  std::int64_t n, l, s, e, ev;
};

template <class T>
struct AttentionArgs {
  AttentionShape shape;
  const T* q;
  const T* k;
  const T* v;
  const T* mask;                // null: no mask
  const std::int64_t* offsets;  // device: 3 n element offsets, k's, v's, then the mask's (read with a mask)
  std::int64_t mask_row_stride, mask_col_stride;
  double scale;
  bool causal;
  double dropout_p;  // 0: no dropout
  std::uint64_t seed, offset;
};

// o (N, L, Ev) and lse (N, L), both written.
template <class T>
void launch_attention_forward(const AttentionArgs<T>& a, T* o, T* lse, cudaStream_t stream);

// From the forward's inputs, o, lse and grad (N, L, Ev): dq (N, L, E), dk (N, S, E) and dv (N, S, Ev)
// per problem, and with dmask (null: not asked) the mask's gradient, one (mask_rows, mask_cols) matrix
// per problem (rows in {1, L}, cols in {1, S}; dS summed over the broadcast axes, 0 for keys a query
// does not see), all written. scratch: 4 N L elements of device memory. Rows whose |lse| is too large
// to hold log l take their max and sum again from the scores (as the CPU's backward).
template <class T>
void launch_attention_backward(const AttentionArgs<T>& a, const T* o, const T* lse, const T* grad, T* dq, T* dk, T* dv,
                               T* dmask, std::int64_t mask_rows, std::int64_t mask_cols, T* scratch,
                               cudaStream_t stream);

}  // namespace deepkern::cuda
