// Reductions over any set of axes (sum, prod, mean, max, min, argmax, argmin): one kernel
// templated on the reduction (ops.h) and the input type. Each output element is reduced by a
// group of threads, a warp (short reductions, eight outputs per block) or the whole block: every
// thread folds its strided share of the reduced elements, then the group combines by a tree of
// warp shuffles and, for a block, shared memory. Short reductions whose neighbouring outputs read
// neighbouring inputs (a sum over the rows of a row-major matrix) take one thread per output
// instead, so a warp's loads are coalesced. Accumulation is in the input's float type (float32 in
// float32), int64 for integers and bools.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/elementwise/dispatch.h"
#include "cuda/elementwise/elementwise.h"
#include "cuda/launch.h"
#include "cuda/strided_walk.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 16;
// Reductions at least this long get a whole block per output element, shorter ones a warp, or a
// thread when they are at most kThreadReduction long and read coalesced (see run_reduce).
constexpr std::int64_t kBlockReduction = 4096;
constexpr std::int64_t kThreadReduction = 256;

// The state of lane 0 of each warp combined with the other lanes' (a tree of shuffles).
template <typename Op, typename A>
__device__ __forceinline__ ew::State<A> warp_reduce(ew::State<A> s) {
#pragma unroll
  for (int d = 16; d > 0; d /= 2) {
    const ew::State<A> other{__shfl_down_sync(0xffffffffu, s.value, d), __shfl_down_sync(0xffffffffu, s.index, d)};
    s = Op::merge(s, other);
  }
  return s;
}

// out[outer] = Op over inner of in[outer + inner]: `outer` walks the n_out output elements (operand
// 0: out, 1: in), `inner` the n_in reduced elements of one output (input strides). `group` (1, 32
// or kThreads) threads reduce one output; `scale` is Mean's 1/n_in.
template <typename Op, typename T>
__global__ void __launch_bounds__(kThreads)
    reduce_kernel(typename Op::template Out<T>* out, const T* __restrict__ in, const Walk<2> outer, std::int64_t n_out,
                  const Walk<1> inner, std::int64_t n_in, int group, ew::Acc<T> scale) {
  using A = ew::Acc<T>;
  using S = ew::State<A>;
  __shared__ S partial[kWarps];
  const int lane = static_cast<int>(threadIdx.x) % group;
  const int per_block = kThreads / group;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * per_block;
  for (std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * per_block; first < n_out; first += step) {
    const std::int64_t o = first + static_cast<int>(threadIdx.x) / group;  // the same for the whole group
    S s = Op::template identity<A>();
    std::int64_t base[2] = {0, 0};
    if (o < n_out) {
      walk_offsets(outer, o, base);
      for (std::int64_t r = lane; r < n_in; r += group) {
        std::int64_t offset[1];
        walk_offsets(inner, r, offset);
        s = Op::merge(s, S{static_cast<A>(in[base[1] + offset[0]]), r});
      }
    }
    if (group > 1) s = warp_reduce<Op>(s);
    if (group > 32) {  // the block's warps: through shared memory, then warp 0
      if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = s;
      __syncthreads();
      if (threadIdx.x < 32)
        s = warp_reduce<Op>(threadIdx.x < kWarps ? partial[threadIdx.x] : Op::template identity<A>());
      __syncthreads();  // partial is read before the next output overwrites it
    }
    if (lane == 0 && o < n_out) out[base[0]] = Op::finish(s, scale);
  }
}

std::vector<std::int64_t> pick(const std::vector<std::int64_t>& values, const std::vector<int>& dims) {
  std::vector<std::int64_t> picked;
  for (const int d : dims) picked.push_back(values[d]);
  return picked;
}

template <typename Op, typename T>
void run_reduce(const DeviceArray& out, const DeviceArray& a, const std::vector<int>& axes, cudaStream_t stream) {
  const std::int64_t n_out = out.size();
  if (n_out == 0) return;
  std::vector<int> kept, reduced;
  for (int d = 0; d < static_cast<int>(a.ndim()); ++d)
    (std::find(axes.begin(), axes.end(), d) == axes.end() ? kept : reduced).push_back(d);
  const std::vector<std::int64_t> kept_shape = pick(a.shape, kept), reduced_shape = pick(a.shape, reduced);
  const std::vector<std::int64_t> outer_strides[2] = {out.strides, pick(a.strides, kept)};
  const std::vector<std::int64_t> inner_strides[1] = {pick(a.strides, reduced)};
  Walk<2> outer;
  Walk<1> inner;
  if (!merge_walk<2>(kept_shape, outer_strides, &outer) || !merge_walk<1>(reduced_shape, inner_strides, &inner))
    throw std::invalid_argument("reduction: the array of " + std::to_string(a.ndim()) + " dimensions needs more than " +
                                std::to_string(kMaxKernelDims) + " kept or reduced ones after merging");
  std::int64_t n_in = 1;
  for (const std::int64_t extent : reduced_shape) n_in *= extent;
  // Neighbouring outputs read neighbouring inputs: one thread per output keeps a warp's loads coalesced.
  const bool coalesced = outer.ndim > 0 && outer.stride[1][outer.ndim - 1] == 1 && outer.shape[outer.ndim - 1] >= 32;
  const int group = n_in >= kBlockReduction ? kThreads : (coalesced && n_in <= kThreadReduction) ? 1 : 32;
  const std::int64_t per_block = kThreads / group;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n_out + per_block - 1) / per_block, kMaxBlocks));
  using A = ew::Acc<T>;
  launch("reduce_kernel", reduce_kernel<Op, T>, blocks, kThreads, 0, stream,
         reinterpret_cast<typename Op::template Out<T>*>(out.data), reinterpret_cast<const T*>(a.data), outer, n_out,
         inner, n_in, group, static_cast<A>(A(1) / static_cast<A>(n_in)));
}

}  // namespace

bool supports(ReduceOp op, DType dtype) { return ew::op_supports(op, dtype); }

DType result_dtype(ReduceOp op, DType dtype) {
  DType result = dtype;
  ew::with_kernel(op, dtype, "reduction", "",
                  [&](auto f, auto t) { result = ew::dtype_of<typename decltype(f)::template Out<decltype(t)>>(); });
  return result;
}

void reduce(ReduceOp op, const DeviceArray& out, const DeviceArray& a, const std::vector<int>& axes,
            cudaStream_t stream) {
  ew::with_kernel(op, a.dtype, "reduction", reduce_op_names()[static_cast<int>(op)],
                  [&](auto f, auto t) { run_reduce<decltype(f), decltype(t)>(out, a, axes, stream); });
}

}  // namespace deepkern::cuda
