// The optimizer kernels: one launch steps up to kMaxTensors tensors (longer lists take one launch
// per kMaxTensors), every element through the shared rules of cpu/optim/rules.h.
//
// Work split: each tensor is cut into chunks of kChunk elements; the launch's table (a kernel
// parameter: pointers, sizes, per-tensor scalars and each tensor's first chunk) numbers the chunks
// of all its tensors end to end, and the blocks take chunks in grid-stride order. A block walks its
// chunk with 16-byte loads and stores of every stream when all of the tensor's arrays are 16-byte
// aligned (then a scalar tail), element by element otherwise.
//
// Bitwise agreement with the CPU: this file is compiled with --fmad=false (a multiply-add is
// fused only where a rule calls madd, as the CPU's -ffp-contract=off) and --ftz=true (float32
// denormals are flushed, as the CPU steps run with FTZ/DAZ); division and sqrt are IEEE-rounded
// (nvcc's default -prec-div / -prec-sqrt). float64 denormals are kept on the GPU (it has no
// float64 flush mode), so a float64 step whose values fall below 2.2e-308 may differ in them.
#include <algorithm>
#include <cstdint>

#include "cpu/optim/rules.h"
#include "cuda/launch.h"
#include "cuda/optim/optim.h"

namespace deepkern::cuda {
namespace {

namespace rules = optim_rules;

constexpr int kThreads = 256;
constexpr int64_t kChunk = 16384;  // elements per chunk: 64 per thread
constexpr int kMaxTensors = 256;   // per launch: the table stays within the 32 KB of kernel parameters
constexpr int64_t kMaxBlocks = 65535;

// The rules' arithmetic on the GPU: fma and IEEE-rounded sqrt.
struct DeviceMath {
  __host__ __device__ static float madd(float a, float b, float c) { return fmaf(a, b, c); }
  __host__ __device__ static double madd(double a, double b, double c) { return fma(a, b, c); }
  __host__ __device__ static float sqrt(float x) { return sqrtf(x); }
  __host__ __device__ static double sqrt(double x) { return ::sqrt(x); }
};

template <class T>
struct TensorEntry {
  T* param;
  const T* grad;
  T* state[3];
  int64_t size;
  rules::AdamStepScalars<T> adam;  // Adam: this tensor's step scalars
  int first;                       // SGD: nonzero on the buffer's first step
  int aligned;                     // every array it uses starts on 16 bytes
};

template <class T>
struct Table {
  int count;
  int64_t first_chunk[kMaxTensors + 1];  // tensor i's chunks are [first_chunk[i], first_chunk[i + 1])
  TensorEntry<T> tensors[kMaxTensors];
};

// `W` consecutive elements of one stream, moved by one load or store.
template <class T, int W>
struct __align__(W * sizeof(T)) Pack {
  T v[W];
};

// Steps elements [at, at + W) of tensor t: loads param, grad and the states the rule uses
// (Rule::kStates, bit k for state k), applies the rule to each element, stores what it updated.
template <int W, class T, class Rule>
__device__ __forceinline__ void step_elements(const Rule& rule, const TensorEntry<T>& t, int64_t at) {
  using P = Pack<T, W>;
  P p = *reinterpret_cast<const P*>(t.param + at);
  const P g = *reinterpret_cast<const P*>(t.grad + at);
  P s[3] = {};
#pragma unroll
  for (int k = 0; k < 3; ++k)
    if (Rule::kStates >> k & 1) s[k] = *reinterpret_cast<const P*>(t.state[k] + at);
#pragma unroll
  for (int j = 0; j < W; ++j) {
    const rules::Element<T> e = rule(t, {p.v[j], s[0].v[j], s[1].v[j], s[2].v[j]}, g.v[j]);
    p.v[j] = e.param;
    s[0].v[j] = e.s0;
    s[1].v[j] = e.s1;
    s[2].v[j] = e.s2;
  }
  *reinterpret_cast<P*>(t.param + at) = p;
#pragma unroll
  for (int k = 0; k < 3; ++k)
    if (Rule::kStates >> k & 1) *reinterpret_cast<P*>(t.state[k] + at) = s[k];
}

// The tensor whose chunks hold chunk c (binary search over first_chunk).
template <class T>
__device__ __forceinline__ int tensor_of_chunk(const Table<T>& table, int64_t c) {
  int lo = 0, hi = table.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table.first_chunk[mid] <= c)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

template <class T, class Rule>
__global__ void __launch_bounds__(kThreads) optim_kernel(const Table<T> table, const Rule rule) {
  constexpr int W = 16 / sizeof(T);
  const int64_t chunks = table.first_chunk[table.count];
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    const int i = tensor_of_chunk(table, c);
    const TensorEntry<T>& t = table.tensors[i];
    const int64_t begin = (c - table.first_chunk[i]) * kChunk;
    const int64_t n = t.size - begin < kChunk ? t.size - begin : kChunk;
    const int64_t vector_end = t.aligned ? n / W * W : 0;
    for (int64_t e = int64_t(threadIdx.x) * W; e < vector_end; e += int64_t(blockDim.x) * W)
      step_elements<W>(rule, t, begin + e);
    for (int64_t e = vector_end + threadIdx.x; e < n; e += blockDim.x) step_elements<1>(rule, t, begin + e);
  }
}

// ---- the rules as kernel functors ---------------------------------------------------------------

template <class T, bool kWd, bool kMomentum, bool kNesterov>
struct SgdRule {
  static constexpr int kStates = kMomentum ? 1 : 0;
  rules::SgdScalars<T> s;
  __device__ rules::Element<T> operator()(const TensorEntry<T>& t, rules::Element<T> e, T g) const {
    return t.first ? rules::sgd_rule<DeviceMath, kWd, kMomentum, kMomentum, kNesterov>(s, e, g)
                   : rules::sgd_rule<DeviceMath, kWd, kMomentum, false, kNesterov>(s, e, g);
  }
};

template <class T, bool kL2, bool kAmsgrad>
struct AdamRule {
  static constexpr int kStates = kAmsgrad ? 7 : 3;
  rules::AdamScalars<T> s;
  __device__ rules::Element<T> operator()(const TensorEntry<T>& t, rules::Element<T> e, T g) const {
    return rules::adam_rule<DeviceMath, kL2, kAmsgrad>(s, t.adam, e, g);
  }
};

template <class T, bool kWd, bool kCentered, bool kMomentum>
struct RmspropRule {
  static constexpr int kStates = 1 | (kMomentum ? 2 : 0) | (kCentered ? 4 : 0);
  rules::RmspropScalars<T> s;
  __device__ rules::Element<T> operator()(const TensorEntry<T>&, rules::Element<T> e, T g) const {
    return rules::rmsprop_rule<DeviceMath, kWd, kCentered, kMomentum>(s, e, g);
  }
};

// ---- launches -----------------------------------------------------------------------------------

// Calls f(std::true_type / std::false_type): a run-time flag becomes a template argument.
template <class F>
void with_flag(bool flag, F&& f) {
  if (flag)
    f(std::true_type{});
  else
    f(std::false_type{});
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Launches `rule` over every tensor with elements, kMaxTensors per launch; fill(entry, tensor) sets
// an entry's per-tensor scalars.
template <class T, class Rule, class Fill>
void run(const char* name, const Rule& rule, const cpu::OptimTensor<T>* tensors, int64_t count, cudaStream_t stream,
         Fill&& fill) {
  Table<T> table;
  table.count = 0;
  table.first_chunk[0] = 0;
  auto flush = [&] {
    if (table.count == 0) return;
    const int64_t chunks = table.first_chunk[table.count];
    launch(name, optim_kernel<T, Rule>, dim3(static_cast<unsigned>(std::min(chunks, kMaxBlocks))), dim3(kThreads), 0,
           stream, table, rule);
    table.count = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    const cpu::OptimTensor<T>& t = tensors[i];
    if (t.size == 0) continue;
    TensorEntry<T>& e = table.tensors[table.count];
    e.param = t.param;
    e.grad = t.grad;
    e.size = t.size;
    e.aligned = aligned16(t.param) && aligned16(t.grad);
    for (int k = 0; k < 3; ++k) {
      e.state[k] = (Rule::kStates >> k & 1) ? t.state[k] : nullptr;
      if (e.state[k]) e.aligned = e.aligned && aligned16(e.state[k]);
    }
    e.adam = {};
    e.first = 0;
    fill(e, t);
    table.first_chunk[table.count + 1] = table.first_chunk[table.count] + (t.size + kChunk - 1) / kChunk;
    if (++table.count == kMaxTensors) flush();
  }
  flush();
}

}  // namespace

template <class T>
void sgd_step(const cpu::SgdOptions& o, const cpu::OptimTensor<T>* tensors, int64_t count, cudaStream_t stream) {
  const auto s = rules::sgd_scalars<T>(o);
  with_flag(o.weight_decay != 0, [&](auto wd) {
    with_flag(o.momentum != 0, [&](auto momentum) {
      with_flag(o.momentum != 0 && o.nesterov, [&](auto nesterov) {
        if constexpr (momentum || !nesterov)
          run("sgd_step", SgdRule<T, wd, momentum, nesterov>{s}, tensors, count, stream,
              [](TensorEntry<T>& e, const cpu::OptimTensor<T>& t) { e.first = t.step != 0; });
      });
    });
  });
}

template <class T>
void adam_step(const cpu::AdamOptions& o, const cpu::OptimTensor<T>* tensors, int64_t count, cudaStream_t stream) {
  const auto s = rules::adam_scalars<T>(o);
  with_flag(o.weight_decay != 0 && !o.decoupled_weight_decay, [&](auto l2) {
    with_flag(o.amsgrad, [&](auto amsgrad) {
      run("adam_step", AdamRule<T, l2, amsgrad>{s}, tensors, count, stream,
          [&](TensorEntry<T>& e, const cpu::OptimTensor<T>& t) { e.adam = rules::adam_step_scalars<T>(o, t.step); });
    });
  });
}

template <class T>
void rmsprop_step(const cpu::RmspropOptions& o, const cpu::OptimTensor<T>* tensors, int64_t count,
                  cudaStream_t stream) {
  const auto s = rules::rmsprop_scalars<T>(o);
  with_flag(o.weight_decay != 0, [&](auto wd) {
    with_flag(o.centered, [&](auto centered) {
      with_flag(o.momentum > 0, [&](auto momentum) {
        run("rmsprop_step", RmspropRule<T, wd, centered, momentum>{s}, tensors, count, stream,
            [](TensorEntry<T>&, const cpu::OptimTensor<T>&) {});
      });
    });
  });
}

template void sgd_step<float>(const cpu::SgdOptions&, const cpu::OptimTensor<float>*, int64_t, cudaStream_t);
template void sgd_step<double>(const cpu::SgdOptions&, const cpu::OptimTensor<double>*, int64_t, cudaStream_t);
template void adam_step<float>(const cpu::AdamOptions&, const cpu::OptimTensor<float>*, int64_t, cudaStream_t);
template void adam_step<double>(const cpu::AdamOptions&, const cpu::OptimTensor<double>*, int64_t, cudaStream_t);
template void rmsprop_step<float>(const cpu::RmspropOptions&, const cpu::OptimTensor<float>*, int64_t, cudaStream_t);
template void rmsprop_step<double>(const cpu::RmspropOptions&, const cpu::OptimTensor<double>*, int64_t, cudaStream_t);

}  // namespace deepkern::cuda
