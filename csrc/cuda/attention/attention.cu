// The attention kernels (attention.h): a warp per row, the rows of all problems in a grid-stride
// loop over the warps, 4 warps a block.
//
// Forward: the warp of query row i walks the keys it sees 32 at a time, lane t scoring key j0 + t
// (its dot product with q_i over E), and keeps the online softmax of the CPU's kernel: the block's
// max (NaN skipped), exp(x - max) (NaN kept), the running sum rescaled when the max grows, o_i (in
// the output row, the lanes over Ev) rescaled likewise before the block's p z v are added.
// Backward (FlashAttention-2's recomputation, no atomics): a stats pass gives each row D_i =
// grad_i . o_i and the shifts of its probabilities (lse, or the row's max and log sum taken again
// where lse is too large to hold log l); the warp of query row i then recomputes p_ij, dp_ij =
// z_ij grad_i . v_j and dS_ij = p_ij (dp_ij - D_i) over its keys for dq_i = scale sum_j dS_ij k_j,
// and the warp of key row j the same over its queries for dv_j = sum_i p_ij z_ij grad_i and dk_j =
// scale sum_i dS_ij q_i. Each output row has one warp, so the sums run in one order.
#include <cstdint>

#include "cpu/dropout/philox.h"
#include "cuda/attention/attention.h"
#include "cuda/launch.h"

namespace deepkern::cuda {
namespace {

constexpr int kWarps = 4;  // warps per block
constexpr int kThreads = 32 * kWarps;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;
constexpr unsigned kFullMask = 0xffffffffu;
// |lse| beyond which its rounding may swallow log l (the CPU's kExactLse).
constexpr double kExactLse = 64;

template <class T>
constexpr T kNegInf = -__builtin_huge_val();

__device__ __forceinline__ float exp_of(float v) { return expf(v); }
__device__ __forceinline__ double exp_of(double v) { return exp(v); }
__device__ __forceinline__ float log_of(float v) { return logf(v); }
__device__ __forceinline__ double log_of(double v) { return log(v); }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// The largest of the warp's v, NaN skipped (-inf when every v is NaN or -inf), as the CPU's block max.
template <class T>
__device__ __forceinline__ T warp_max(T v) {
  v = v == v ? v : kNegInf<T>;
  for (int offset = 16; offset > 0; offset /= 2) {
    const T other = __shfl_xor_sync(kFullMask, v, offset);
    v = other > v ? other : v;
  }
  return v;
}

// What the kernels know of a call besides its arguments.
template <class T>
struct Call {
  AttentionArgs<T> a;
  philox::DropoutParams drop;
  T keep_scale;  // a kept element's dropout factor
  T alpha;       // the scores' scale: 0 without features, whatever the scale
};

template <class T>
Call<T> call_of(const AttentionArgs<T>& a) {
  return {a, philox::dropout_params(a.dropout_p, a.seed, a.offset), philox::dropout_scale<T>(a.dropout_p),
          a.shape.e ? static_cast<T>(a.scale) : T(0)};
}

template <class T>
__device__ __forceinline__ const T* key_row(const Call<T>& c, std::int64_t n, std::int64_t j) {
  return c.a.k + c.a.offsets[n] + j * c.a.shape.e;
}
template <class T>
__device__ __forceinline__ const T* value_row(const Call<T>& c, std::int64_t n, std::int64_t j) {
  return c.a.v + c.a.offsets[c.a.shape.n + n] + j * c.a.shape.ev;
}

// Keys query i sees: [0, key_end).
template <class T>
__device__ __forceinline__ std::int64_t key_end(const Call<T>& c, std::int64_t i) {
  return c.a.causal ? (i + 1 < c.a.shape.s ? i + 1 : c.a.shape.s) : c.a.shape.s;
}

// x_ij = alpha q_i . k_j + mask_ij (q: q_i).
template <class T>
__device__ T score(const Call<T>& c, const T* q, std::int64_t n, std::int64_t i, std::int64_t j) {
  const T* k = key_row(c, n, j);
  T dot = 0;
  for (std::int64_t f = 0; f < c.a.shape.e; ++f) dot += q[f] * k[f];
  T x = c.alpha * dot;
  if (c.a.mask) x += c.a.mask[c.a.offsets[2 * c.a.shape.n + n] + i * c.a.mask_row_stride + j * c.a.mask_col_stride];
  return x;
}

// Dropout's factor z_ij of element `index` = (n L + i) S + j: keep_scale or 0 (1 without dropout).
template <class T>
__device__ T dropout_factor(const Call<T>& c, std::uint64_t index) {
  if (!(c.a.dropout_p > 0)) return T(1);
  const philox::Words words = philox::dropout_block(c.drop, index / 4);
  const unsigned which = index % 4;  // selected, not indexed: the words stay in registers
  const std::uint32_t word = which < 2 ? (which ? words.w[1] : words.w[0]) : (which == 3 ? words.w[3] : words.w[2]);
  return philox::dropout_apply(T(1), philox::dropout_keeps(c.drop, word), c.keep_scale);
}

// The warp's row of the grid-stride loop: row = first, first + step, ... (uniform across the warp).
__device__ __forceinline__ std::int64_t first_row() { return std::int64_t(blockIdx.x) * kWarps + threadIdx.x / 32; }
__device__ __forceinline__ std::int64_t row_step() { return std::int64_t(gridDim.x) * kWarps; }

template <class T>
__global__ void forward_kernel(Call<T> c, T* o, T* lse) {
  __shared__ T shared_p[kWarps][32];
  T* p_of = shared_p[threadIdx.x / 32];
  const int lane = threadIdx.x % 32;
  const AttentionShape& sh = c.a.shape;
  for (std::int64_t row = first_row(); row < sh.n * sh.l; row += row_step()) {
    const std::int64_t n = row / sh.l, i = row - n * sh.l, end = key_end(c, i);
    const T* q = c.a.q + row * sh.e;
    T* out = o + row * sh.ev;
    for (std::int64_t f = lane; f < sh.ev; f += 32) out[f] = 0;
    T m = kNegInf<T>, l = 0;
    for (std::int64_t j0 = 0; j0 < end; j0 += 32) {
      const std::int64_t j = j0 + lane;
      const bool valid = j < end;
      const T x = valid ? score(c, q, n, i, j) : kNegInf<T>;
      const T block_max = warp_max(x);
      const T m_new = m < block_max ? block_max : m;
      const T base = m_new == kNegInf<T> ? T(0) : m_new;  // a row masked so far: every exp is 0
      const T e = valid ? exp_of(x - base) : T(0);
      const T factor = exp_of(m - base);
      l = l * factor + warp_sum(e);
      m = m_new;
      __syncwarp();  // the previous block's p_of read by every lane
      p_of[lane] = valid ? e * dropout_factor(c, std::uint64_t(row * sh.s + j)) : T(0);
      __syncwarp();
      const int count = end - j0 < 32 ? static_cast<int>(end - j0) : 32;
      for (std::int64_t f = lane; f < sh.ev; f += 32) {
        T acc = 0;
        for (int t = 0; t < count; ++t) acc += p_of[t] * value_row(c, n, j0 + t)[f];
        out[f] = out[f] * factor + acc;
      }
    }
    const bool seen = l != 0;  // false: every key masked out (or no keys); NaN l stays NaN (lse too)
    const T inv = seen ? T(1) / l : T(0);
    for (std::int64_t f = lane; f < sh.ev; f += 32) out[f] *= inv;
    if (lane == 0) lse[row] = seen ? m + log_of(l) : kNegInf<T>;
  }
}

// The backward's per-row values: d (D_i), shift and log_sum (P = exp((x - shift) - log_sum)).
template <class T>
struct RowStats {
  T* d;
  T* shift;
  T* log_sum;
  T* partial;  // a row's dS summed over its keys, for a one-element mask gradient
};

template <class T>
__global__ void stats_kernel(Call<T> c, const T* o, const T* lse, const T* grad, RowStats<T> stats) {
  const int lane = threadIdx.x % 32;
  const AttentionShape& sh = c.a.shape;
  for (std::int64_t row = first_row(); row < sh.n * sh.l; row += row_step()) {
    T sum = 0;
    for (std::int64_t f = lane; f < sh.ev; f += 32) sum += grad[row * sh.ev + f] * o[row * sh.ev + f];
    sum = warp_sum(sum);
    const T row_lse = lse[row];
    T shift = row_lse, log_sum = 0;
    const bool large = row_lse > T(kExactLse) || row_lse < T(-kExactLse);  // NaN: no
    if (large && row_lse != kNegInf<T> && row_lse != -kNegInf<T>) {        // uniform across the warp
      const std::int64_t n = row / sh.l, i = row - n * sh.l, end = key_end(c, i);
      const T* q = c.a.q + row * sh.e;
      T m = kNegInf<T>, l = 0;
      for (std::int64_t j0 = 0; j0 < end; j0 += 32) {
        const bool valid = j0 + lane < end;
        const T x = valid ? score(c, q, n, i, j0 + lane) : kNegInf<T>;
        const T block_max = warp_max(x);
        const T m_new = m < block_max ? block_max : m;
        const T base = m_new == kNegInf<T> ? T(0) : m_new;
        l = l * exp_of(m - base) + warp_sum(valid ? exp_of(x - base) : T(0));
        m = m_new;
      }
      if (l != 0) {
        shift = m;
        log_sum = log_of(l);
      }
    }
    if (lane == 0) {
      stats.d[row] = sum;
      stats.shift[row] = shift;
      stats.log_sum[row] = log_sum;
    }
  }
}

// p_ij and dS_ij of a visible key: P from the row's shifts (0 for a row that sees no key), dp = z
// grad_i . v_j, dS = p (dp - D_i). pz: p z, dv's factor.
template <class T>
struct ScoreGrad {
  T pz, ds;
};

template <class T>
__device__ ScoreGrad<T> score_grad(const Call<T>& c, const RowStats<T>& stats, const T* grad, std::int64_t n,
                                   std::int64_t i, std::int64_t j) {
  const AttentionShape& sh = c.a.shape;
  const std::int64_t row = n * sh.l + i;
  const T shift = stats.shift[row];
  if (shift == kNegInf<T>) return {T(0), T(0)};
  const T p = exp_of((score(c, c.a.q + row * sh.e, n, i, j) - shift) - stats.log_sum[row]);
  const T* g = grad + row * sh.ev;
  const T* v = value_row(c, n, j);
  T dp = 0;
  for (std::int64_t f = 0; f < sh.ev; ++f) dp += g[f] * v[f];
  const T z = dropout_factor(c, std::uint64_t(row * sh.s + j));
  return {p * z, p * (dp * z - stats.d[row])};
}

// dq_i (and the mask's gradient where it sums over keys or is whole): a warp per query row.
template <class T>
__global__ void query_grad_kernel(Call<T> c, const T* grad, RowStats<T> stats, T* dq, T* dmask, std::int64_t mask_rows,
                                  std::int64_t mask_cols) {
  __shared__ T shared_ds[kWarps][32];
  T* ds_of = shared_ds[threadIdx.x / 32];
  const int lane = threadIdx.x % 32;
  const AttentionShape& sh = c.a.shape;
  for (std::int64_t row = first_row(); row < sh.n * sh.l; row += row_step()) {
    const std::int64_t n = row / sh.l, i = row - n * sh.l, end = key_end(c, i);
    T* out = dq + row * sh.e;
    for (std::int64_t f = lane; f < sh.e; f += 32) out[f] = 0;
    T row_sum = 0;
    for (std::int64_t j0 = 0; j0 < end; j0 += 32) {
      const std::int64_t j = j0 + lane;
      const T ds = j < end ? score_grad(c, stats, grad, n, i, j).ds : T(0);
      row_sum += ds;
      if (dmask && mask_rows > 1 && mask_cols > 1 && j < end) dmask[row * sh.s + j] = ds;
      __syncwarp();
      ds_of[lane] = ds;
      __syncwarp();
      const int count = end - j0 < 32 ? static_cast<int>(end - j0) : 32;
      for (std::int64_t f = lane; f < sh.e; f += 32) {
        T acc = 0;
        for (int t = 0; t < count; ++t) acc += ds_of[t] * key_row(c, n, j0 + t)[f];
        out[f] += c.alpha * acc;
      }
    }
    row_sum = warp_sum(row_sum);
    if (lane == 0 && dmask && mask_cols == 1) {
      if (mask_rows > 1)
        dmask[row] = row_sum;
      else
        stats.partial[row] = row_sum;
    }
  }
}

// dk_j and dv_j (and the mask's gradient where it sums over queries): a warp per key row of a problem.
template <class T>
__global__ void key_grad_kernel(Call<T> c, const T* grad, RowStats<T> stats, T* dk, T* dv, T* dmask,
                                std::int64_t mask_rows, std::int64_t mask_cols) {
  __shared__ T shared_pz[kWarps][32];
  __shared__ T shared_ds[kWarps][32];
  T* pz_of = shared_pz[threadIdx.x / 32];
  T* ds_of = shared_ds[threadIdx.x / 32];
  const int lane = threadIdx.x % 32;
  const AttentionShape& sh = c.a.shape;
  for (std::int64_t row = first_row(); row < sh.n * sh.s; row += row_step()) {
    const std::int64_t n = row / sh.s, j = row - n * sh.s;
    T* k_out = dk + row * sh.e;
    T* v_out = dv + row * sh.ev;
    for (std::int64_t f = lane; f < sh.e; f += 32) k_out[f] = 0;
    for (std::int64_t f = lane; f < sh.ev; f += 32) v_out[f] = 0;
    T column_sum = 0;
    for (std::int64_t i0 = c.a.causal ? j : 0; i0 < sh.l; i0 += 32) {  // causal: the queries i >= j
      const std::int64_t i = i0 + lane;
      const ScoreGrad<T> g = i < sh.l ? score_grad(c, stats, grad, n, i, j) : ScoreGrad<T>{T(0), T(0)};
      column_sum += g.ds;
      __syncwarp();
      pz_of[lane] = g.pz;
      ds_of[lane] = g.ds;
      __syncwarp();
      const int count = sh.l - i0 < 32 ? static_cast<int>(sh.l - i0) : 32;
      for (std::int64_t f = lane; f < sh.ev; f += 32) {
        T acc = 0;
        for (int t = 0; t < count; ++t) acc += pz_of[t] * grad[(n * sh.l + i0 + t) * sh.ev + f];
        v_out[f] += acc;
      }
      for (std::int64_t f = lane; f < sh.e; f += 32) {
        T acc = 0;
        for (int t = 0; t < count; ++t) acc += ds_of[t] * c.a.q[(n * sh.l + i0 + t) * sh.e + f];
        k_out[f] += c.alpha * acc;
      }
    }
    column_sum = warp_sum(column_sum);
    if (lane == 0 && dmask && mask_rows == 1 && mask_cols > 1) dmask[row] = column_sum;
  }
}

// A one-element mask gradient per problem: the sum of its rows' partial sums (a warp per problem).
template <class T>
__global__ void mask_total_kernel(AttentionShape sh, const T* partial, T* dmask) {
  const int lane = threadIdx.x % 32;
  for (std::int64_t n = first_row(); n < sh.n; n += row_step()) {
    T sum = 0;
    for (std::int64_t i = lane; i < sh.l; i += 32) sum += partial[n * sh.l + i];
    sum = warp_sum(sum);
    if (lane == 0) dmask[n] = sum;
  }
}

unsigned blocks_for(std::int64_t rows) {
  const std::int64_t blocks = (rows + kWarps - 1) / kWarps;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace

template <class T>
void launch_attention_forward(const AttentionArgs<T>& a, T* o, T* lse, cudaStream_t stream) {
  const std::int64_t rows = a.shape.n * a.shape.l;
  if (rows == 0) return;
  launch("attention_forward_kernel", forward_kernel<T>, dim3(blocks_for(rows)), dim3(kThreads), 0, stream, call_of(a),
         o, lse);
}

template <class T>
void launch_attention_backward(const AttentionArgs<T>& a, const T* o, const T* lse, const T* grad, T* dq, T* dk, T* dv,
                               T* dmask, std::int64_t mask_rows, std::int64_t mask_cols, T* scratch,
                               cudaStream_t stream) {
  const AttentionShape& sh = a.shape;
  const std::int64_t rows = sh.n * sh.l, keys = sh.n * sh.s;
  if (dmask && sh.n * mask_rows * mask_cols > 0)  // keys a query does not see keep 0
    check(cudaMemsetAsync(dmask, 0, sizeof(T) * sh.n * mask_rows * mask_cols, stream), "attention_backward's dmask");
  const Call<T> c = call_of(a);
  const RowStats<T> stats{scratch, scratch + rows, scratch + 2 * rows, scratch + 3 * rows};
  if (rows > 0) {
    launch("attention_stats_kernel", stats_kernel<T>, dim3(blocks_for(rows)), dim3(kThreads), 0, stream, c, o, lse,
           grad, stats);
    launch("attention_query_grad_kernel", query_grad_kernel<T>, dim3(blocks_for(rows)), dim3(kThreads), 0, stream, c,
           grad, stats, dq, dmask, mask_rows, mask_cols);
  }
  if (keys > 0)
    launch("attention_key_grad_kernel", key_grad_kernel<T>, dim3(blocks_for(keys)), dim3(kThreads), 0, stream, c, grad,
           stats, dk, dv, dmask, mask_rows, mask_cols);
  if (dmask && mask_rows == 1 && mask_cols == 1 && sh.n > 0 && sh.l > 0)
    launch("attention_mask_total_kernel", mask_total_kernel<T>, dim3(blocks_for(sh.n)), dim3(kThreads), 0, stream, sh,
           static_cast<const T*>(stats.partial), dmask);
}

#define DK_ATTENTION_INSTANTIATE(T)                                                                                 \
  template void launch_attention_forward<T>(const AttentionArgs<T>&, T*, T*, cudaStream_t);                         \
  template void launch_attention_backward<T>(const AttentionArgs<T>&, const T*, const T*, const T*, T*, T*, T*, T*, \
                                             std::int64_t, std::int64_t, T*, cudaStream_t);
DK_ATTENTION_INSTANTIATE(float)
DK_ATTENTION_INSTANTIATE(double)
#undef DK_ATTENTION_INSTANTIATE

}  // namespace deepkern::cuda
