// Scaled dot-product attention on the CPU, forward and backward, fused and blocked
// (FlashAttention-2's scheme): no L x S matrix is ever held in memory.
//
// Problems: N independent attentions (the flattened leading dims of the query; broadcast batch dims
// and grouped-query heads are the callers' offset maps). Problem n reads
//   q + n * L * E       its queries, (L, E) row-major
//   k + k_offsets[n]    its keys, (S, E) row-major
//   v + v_offsets[n]    its values, (S, Ev) row-major
//   mask + mask_offsets[n] (optional) its additive mask: element (i, j) at
//                       mask_offsets[n] + i * mask_row_stride + j * mask_col_stride (strides 0 or
//                       more: a broadcast axis has stride 0)
// and computes, with x_ij = scale * q_i . k_j + mask_ij (j > i masked out when causal: query i sees
// keys j <= i, top-left aligned as PyTorch), p = softmax_j(x), the output o_i = sum_j p_ij z_ij v_j
// where z_ij is dropout's factor (1 without dropout; keep / (1 - p) with the Philox stream of
// philox.h, element index n * L * S + i * S + j, so a call consumes ceil(N L S / 4) counters).
// Saved for the backward: o (N, L, Ev) and lse (N, L) = log sum_j exp(x_ij).
// A row with every key masked (all x_ij = -inf) has o_i = 0, lse_i = -inf and zero gradients, as
// PyTorch's CPU kernel. T is float or double; outputs overlap no input.
#pragma once
#include <cstdint>

namespace deepkern::cpu {

struct AttentionShape {
  int64_t n, l, s, e, ev;
};

template <class T>
struct AttentionInputs {
  const T* q;
  const T* k;
  const int64_t* k_offsets;  // n entries
  const T* v;
  const int64_t* v_offsets;  // n entries
  const T* mask;             // null: no mask
  const int64_t* mask_offsets;
  int64_t mask_row_stride, mask_col_stride;
};

struct AttentionOptions {
  double scale;
  bool causal;
  double dropout_p;  // 0: no dropout
  std::uint64_t seed, offset;
};

// o (N, L, Ev) and lse (N, L), both written.
template <class T>
void attention_forward(const AttentionInputs<T>& in, AttentionShape shape, const AttentionOptions& options, T* o,
                       T* lse);

// The mask's gradient, asked of the backward: d (null: not computed) holds one (rows, cols) row-major
// matrix per problem, problem n's at d + n * rows * cols, rows in {1, L} and cols in {1, S}; element
// (i, j) is dS_ij = p_ij (dp_ij - D_i), the gradient of the pre-softmax (and pre-dropout) score
// x_ij, summed over the queries when rows = 1 and over the keys when cols = 1. Keys a query does not
// see (causal, masked with -inf, a fully masked row) get 0.
template <class T>
struct AttentionMaskGrad {
  T* d;
  int64_t rows, cols;
};

// From the forward's inputs, o, lse and grad (N, L, Ev): dq (N, L, E), and dk (N, S, E), dv (N, S, Ev)
// per problem (the caller sums the problems that share keys or values), and the mask's gradient when
// dmask.d is set. Each problem runs on one thread, so the results do not depend on the thread count.
template <class T>
void attention_backward(const AttentionInputs<T>& in, AttentionShape shape, const AttentionOptions& options, const T* o,
                        const T* lse, const T* grad, T* dq, T* dk, T* dv, AttentionMaskGrad<T> dmask = {});

}  // namespace deepkern::cpu
