// Elementwise maps: one strided kernel and one contiguous kernel (16-byte vector loads), both
// templated on the op's functor (ops.h) and the operand types; unary, binary and where are
// instances of them. The strided kernel walks the output and every input with the shared walk
// (cuda/strided_walk.h), broadcast inputs having stride 0.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/check.h"
#include "cuda/elementwise/dispatch.h"
#include "cuda/elementwise/elementwise.h"
#include "cuda/launch.h"
#include "cuda/strided_walk.h"

namespace deepkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 16;

// A map's input: an array at `ptr` (its offsets come from the walk), or the number `value`.
template <typename T>
struct Input {
  const T* ptr;
  T value;
  __device__ __forceinline__ T at(std::int64_t offset) const { return ptr ? ptr[offset] : value; }
};

// V consecutive elements, loaded or stored as one access (16 bytes for the widest input).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ Vec<T, V> load_vec(const Input<T>& in, std::int64_t v) {
  if (in.ptr) return reinterpret_cast<const Vec<T, V>*>(in.ptr)[v];
  Vec<T, V> r;
#pragma unroll
  for (int k = 0; k < V; ++k) r.v[k] = in.value;
  return r;
}

template <typename Fn, typename Out, int V, typename... In>
__device__ __forceinline__ Vec<Out, V> apply_vec(const Vec<In, V>&... x) {
  Vec<Out, V> r;
#pragma unroll
  for (int k = 0; k < V; ++k) r.v[k] = Fn::apply(x.v[k]...);
  return r;
}

// Input j of a map, as a base of Inputs.
template <std::size_t j, typename T>
struct Slot {
  Input<T> in;
};

// A map's inputs (one kernel parameter): Fn applied at per-input offsets, at one index of
// contiguous inputs, or to V consecutive elements of them.
template <typename Seq, typename... T>
struct InputsOf;
template <std::size_t... j, typename... T>
struct InputsOf<std::index_sequence<j...>, T...> : Slot<j, T>... {
  static constexpr int N = sizeof...(T);
  static constexpr int V = 16 / static_cast<int>(std::max({sizeof(T)...}));  // elements per 16-byte access

  template <typename Fn>
  __device__ __forceinline__ auto apply_at(const std::int64_t* offset) const {
    return Fn::apply(static_cast<const Slot<j, T>&>(*this).in.at(offset[j + 1])...);
  }
  template <typename Fn>
  __device__ __forceinline__ auto apply_index(std::int64_t i) const {
    return Fn::apply(static_cast<const Slot<j, T>&>(*this).in.at(i)...);
  }
  template <typename Fn, typename Out>
  __device__ __forceinline__ Vec<Out, V> apply_vector(std::int64_t v) const {
    return apply_vec<Fn, Out, V>(load_vec<V>(static_cast<const Slot<j, T>&>(*this).in, v)...);
  }
};
template <typename... T>
using Inputs = InputsOf<std::index_sequence_for<T...>, T...>;

// out[walk] = Fn(inputs[walk]) for n elements; walk operand 0 is out, operand 1 + j input j.
template <typename Fn, typename Out, typename Ins>
__global__ void __launch_bounds__(kThreads)
    map_strided_kernel(Out* out, const Walk<1 + Ins::N> walk, std::int64_t n, const Ins in) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    std::int64_t offset[1 + Ins::N];
    walk_offsets(walk, i, offset);
    out[offset[0]] = in.template apply_at<Fn>(offset);
  }
}

// out[i] = Fn(inputs[i]) for n elements of contiguous arrays at 16-byte aligned addresses: V
// elements per access, then the tail one by one.
template <typename Fn, typename Out, typename Ins>
__global__ void __launch_bounds__(kThreads) map_contiguous_kernel(Out* out, std::int64_t n, const Ins in) {
  constexpr int V = Ins::V;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t vectors = n / V;
  for (std::int64_t v = first; v < vectors; v += step)
    reinterpret_cast<Vec<Out, V>*>(out)[v] = in.template apply_vector<Fn, Out>(v);
  for (std::int64_t i = vectors * V + first; i < n; i += step) out[i] = in.template apply_index<Fn>(i);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <typename T>
Input<T> make_input(const Operand& op) {
  T value;
  if constexpr (std::is_same_v<T, bool>) {
    value = op.value != 0;
  } else if constexpr (std::is_integral_v<T>) {
    value = static_cast<T>(op.integer);
  } else {
    value = static_cast<T>(op.value);
  }
  return {op.array ? reinterpret_cast<const T*>(op.array->data) : nullptr, value};
}

// The operand's strides (elements) for reading it broadcast to `shape`: 0 where it is broadcast
// or a number (the caller checked that it broadcasts).
std::vector<std::int64_t> operand_strides(const Operand& op, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size(), 0);
  if (op.array == nullptr) return strides;
  const DeviceArray& a = *op.array;
  const std::size_t lead = shape.size() - a.ndim();
  for (std::size_t k = 0; k < a.ndim(); ++k)
    if (a.shape[k] != 1) strides[lead + k] = a.strides[k];
  return strides;
}

// out = Fn(inputs...) elementwise: the contiguous kernel where every array is contiguous, of
// out's size and 16-byte aligned, the strided kernel otherwise.
template <typename Fn, typename Out, typename... In, typename... Ops>
void run_map(cudaStream_t stream, const DeviceArray& out, const Ops&... ops) {
  constexpr int N = sizeof...(In);
  const std::int64_t n = out.size();
  if (n == 0) return;
  bool flat = out.is_contiguous() && aligned16(out.data);
  for (const Operand* op : {&ops...})
    if (op->array) flat = flat && op->array->is_contiguous() && op->array->size() == n && aligned16(op->array->data);
  Out* data = reinterpret_cast<Out*>(out.data);
  using Ins = Inputs<In...>;
  const Ins in{{make_input<In>(ops)}...};
  if (flat) {
    constexpr std::int64_t V = Ins::V;
    const auto blocks =
        static_cast<unsigned>(std::clamp<std::int64_t>((n / V + kThreads - 1) / kThreads, 1, kMaxBlocks));
    launch("map_contiguous_kernel", map_contiguous_kernel<Fn, Out, Ins>, blocks, kThreads, 0, stream, data, n, in);
    return;
  }
  const std::vector<std::int64_t> strides[1 + N] = {out.strides, operand_strides(ops, out.shape)...};
  Walk<1 + N> walk;
  if (!merge_walk<1 + N>(out.shape, strides, &walk))
    throw std::invalid_argument("elementwise: arrays of shape " + std::to_string(out.ndim()) +
                                " dimensions need more than " + std::to_string(kMaxKernelDims) +
                                " after merging; make the inputs contiguous first");
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  launch("map_strided_kernel", map_strided_kernel<Fn, Out, Ins>, blocks, kThreads, 0, stream, data, walk, n, in);
}

// The dtype of the map's inputs: that of its first array operand, else `fallback`.
DType input_dtype(std::initializer_list<const Operand*> ops, DType fallback) {
  for (const Operand* op : ops)
    if (op->array) return op->array->dtype;
  return fallback;
}

#define DK_NAME(name, functor) #name,
const char* const kUnaryNames[] = {DK_UNARY_OPS(DK_NAME)};
const char* const kBinaryNames[] = {DK_BINARY_OPS(DK_NAME)};
const char* const kReduceNames[] = {DK_REDUCE_OPS(DK_NAME)};
#undef DK_NAME

template <std::size_t N>
std::vector<std::string> names(const char* const (&table)[N]) {
  return {table, table + N};
}

// The output dtype of functor F (unary or binary) on inputs of `dtype`.
template <typename OpEnum, int arity>
DType map_result(OpEnum op, DType dtype) {
  DType result = dtype;
  ew::with_kernel(op, dtype, "op", "", [&](auto f, auto t) {
    using F = decltype(f);
    using T = decltype(t);
    if constexpr (arity == 1) {
      result = ew::dtype_of<decltype(F::apply(T{}))>();
    } else {
      result = ew::dtype_of<decltype(F::apply(T{}, T{}))>();
    }
  });
  return result;
}

}  // namespace

std::vector<std::string> unary_op_names() { return names(kUnaryNames); }
std::vector<std::string> binary_op_names() { return names(kBinaryNames); }
std::vector<std::string> reduce_op_names() { return names(kReduceNames); }

bool supports(UnaryOp op, DType dtype) { return ew::op_supports(op, dtype); }
bool supports(BinaryOp op, DType dtype) { return ew::op_supports(op, dtype); }
DType result_dtype(UnaryOp op, DType dtype) { return map_result<UnaryOp, 1>(op, dtype); }
DType result_dtype(BinaryOp op, DType dtype) { return map_result<BinaryOp, 2>(op, dtype); }

void unary(UnaryOp op, const DeviceArray& out, const Operand& a, cudaStream_t stream) {
  const DType dtype = input_dtype({&a}, out.dtype);
  ew::with_kernel(op, dtype, "ufunc", kUnaryNames[static_cast<int>(op)], [&](auto f, auto t) {
    using T = decltype(t);
    run_map<decltype(f), decltype(decltype(f)::apply(T{})), T>(stream, out, a);
  });
}

void binary(BinaryOp op, const DeviceArray& out, const Operand& a, const Operand& b, cudaStream_t stream) {
  const DType dtype = input_dtype({&a, &b}, out.dtype);
  ew::with_kernel(op, dtype, "ufunc", kBinaryNames[static_cast<int>(op)], [&](auto f, auto t) {
    using T = decltype(t);
    run_map<decltype(f), decltype(decltype(f)::apply(T{}, T{})), T, T>(stream, out, a, b);
  });
}

void where(const DeviceArray& out, const Operand& cond, const Operand& a, const Operand& b, cudaStream_t stream) {
  const bool found = ew::with_type(out.dtype, [&](auto t) {
    using T = decltype(t);
    run_map<ew::Where, T, bool, T, T>(stream, out, cond, a, b);
  });
  if (!found)
    throw std::invalid_argument("where has no CUDA kernel for dtype code " +
                                std::to_string(static_cast<int>(out.dtype)));
}

}  // namespace deepkern::cuda
