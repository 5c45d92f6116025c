// The batch normalization kernels (norm.h): one block per channel (a block-stride loop over the
// channels). The forward sums the channel in float64 (each thread its share of the flat
// positions, then a shared-memory tree), takes the mean, then sums the squared deviations from it
// the same way (the second pass reads the channel again, from L2 for most layers), updates the
// running statistics and normalizes. The backward sums grad_out and grad_out * (x - mean) in one
// pass, then writes grad_x. Values are computed in float64 and rounded once, as on the CPU.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/launch.h"
#include "cuda/norm/norm.h"

namespace deepkern::cuda {
namespace {

using cpu::BatchNormShape;

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = std::int64_t(1) << 16;

// Element k (of the n * s) of channel ch: sample k / s, position k % s.
__device__ __forceinline__ std::int64_t channel_element(const BatchNormShape& s, std::int64_t ch, std::int64_t k) {
  return (k / s.s) * s.c * s.s + ch * s.s + k % s.s;
}

// The block's sums of a[t] and b[t] over its threads (b may be ignored), left in a[0] and b[0] for
// every thread. Fixed tree order; barriers before and after.
__device__ __forceinline__ void block_sum(double* a, double* b) {
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) {
      a[threadIdx.x] += a[threadIdx.x + half];
      b[threadIdx.x] += b[threadIdx.x + half];
    }
    __syncthreads();
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(BatchNormShape s, const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias,
                   T* __restrict__ running_mean, T* __restrict__ running_var, T* __restrict__ out,
                   double* __restrict__ save_mean, double* __restrict__ save_invstd, bool training, double momentum,
                   double eps) {
  __shared__ double sums[kThreads], unused[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  const std::int64_t count = s.n * s.s;
  for (std::int64_t ch = blockIdx.x; ch < s.c; ch += gridDim.x) {
    double mean, var;
    if (training) {
      double part = 0;
      for (std::int64_t k = t; k < count; k += kThreads) part += static_cast<double>(x[channel_element(s, ch, k)]);
      sums[t] = part;
      unused[t] = 0;
      block_sum(sums, unused);
      mean = sums[0] / static_cast<double>(count);
      __syncthreads();  // every thread has read sums[0]
      part = 0;
      for (std::int64_t k = t; k < count; k += kThreads) {
        const double d = static_cast<double>(x[channel_element(s, ch, k)]) - mean;
        part += d * d;
      }
      sums[t] = part;
      block_sum(sums, unused);
      var = sums[0] / static_cast<double>(count);
      __syncthreads();
    } else {
      mean = static_cast<double>(running_mean[ch]);
      var = static_cast<double>(running_var[ch]);
    }
    const double invstd = 1 / sqrt(var + eps);
    const double scale = invstd * (weight ? static_cast<double>(weight[ch]) : 1.0);
    const double shift = bias ? static_cast<double>(bias[ch]) : 0.0;
    for (std::int64_t k = t; k < count; k += kThreads) {
      const std::int64_t i = channel_element(s, ch, k);
      out[i] = static_cast<T>((static_cast<double>(x[i]) - mean) * scale + shift);
    }
    if (t == 0) {
      save_mean[ch] = mean;
      save_invstd[ch] = invstd;
      if (training && running_mean)
        running_mean[ch] = static_cast<T>((1 - momentum) * static_cast<double>(running_mean[ch]) + momentum * mean);
      if (training && running_var)
        running_var[ch] = static_cast<T>((1 - momentum) * static_cast<double>(running_var[ch]) +
                                         momentum * var * static_cast<double>(count) / static_cast<double>(count - 1));
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(BatchNormShape s, const T* __restrict__ grad_out, const T* __restrict__ x,
                    const T* __restrict__ weight, const double* __restrict__ save_mean,
                    const double* __restrict__ save_invstd, T* __restrict__ grad_x, T* __restrict__ grad_weight,
                    T* __restrict__ grad_bias, bool training, bool need_sums) {
  __shared__ double sum_g[kThreads], sum_gx[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  const std::int64_t count = s.n * s.s;
  for (std::int64_t ch = blockIdx.x; ch < s.c; ch += gridDim.x) {
    const double mean = save_mean[ch], invstd = save_invstd[ch];
    double total_g = 0, total_gx = 0;
    if (need_sums) {
      double pg = 0, pgx = 0;
      for (std::int64_t k = t; k < count; k += kThreads) {
        const std::int64_t i = channel_element(s, ch, k);
        const double g = static_cast<double>(grad_out[i]);
        pg += g;
        pgx += g * (static_cast<double>(x[i]) - mean);
      }
      sum_g[t] = pg;
      sum_gx[t] = pgx;
      block_sum(sum_g, sum_gx);
      total_g = sum_g[0];
      total_gx = sum_gx[0];
      __syncthreads();  // every thread has read the totals
    }
    if (t == 0 && grad_bias) grad_bias[ch] = static_cast<T>(total_g);
    if (t == 0 && grad_weight) grad_weight[ch] = static_cast<T>(total_gx * invstd);
    if (!grad_x) continue;
    const double a = training ? total_g / static_cast<double>(count) : 0.0;
    const double b = training ? total_gx * invstd * invstd / static_cast<double>(count) : 0.0;
    const double c = invstd * (weight ? static_cast<double>(weight[ch]) : 1.0);
    for (std::int64_t k = t; k < count; k += kThreads) {
      const std::int64_t i = channel_element(s, ch, k);
      // Evaluation (b = 0) does not read x: an inf or NaN input leaves the gradient finite, as on the CPU.
      const double centered = b == 0 ? 0.0 : (static_cast<double>(x[i]) - mean) * b;
      grad_x[i] = static_cast<T>((static_cast<double>(grad_out[i]) - a - centered) * c);
    }
  }
}

unsigned blocks_for(const BatchNormShape& s) { return static_cast<unsigned>(std::min<std::int64_t>(s.c, kMaxBlocks)); }

}  // namespace

template <class T>
void launch_batch_norm_forward(const BatchNormShape& s, const T* x, const T* weight, const T* bias, T* running_mean,
                               T* running_var, T* out, double* save_mean, double* save_invstd, bool training,
                               double momentum, double eps, cudaStream_t stream) {
  if (s.c <= 0) return;
  launch("batch_norm_forward_kernel", forward_kernel<T>, dim3(blocks_for(s)), dim3(kThreads), 0, stream, s, x, weight,
         bias, running_mean, running_var, out, save_mean, save_invstd, training, momentum, eps);
}

template <class T>
void launch_batch_norm_backward(const BatchNormShape& s, const T* grad_out, const T* x, const T* weight,
                                const double* save_mean, const double* save_invstd, T* grad_x, T* grad_weight,
                                T* grad_bias, bool training, cudaStream_t stream) {
  const bool need_sums = grad_weight || grad_bias || (grad_x && training);
  if (s.c <= 0 || (!need_sums && !grad_x)) return;
  launch("batch_norm_backward_kernel", backward_kernel<T>, dim3(blocks_for(s)), dim3(kThreads), 0, stream, s, grad_out,
         x, weight, save_mean, save_invstd, grad_x, grad_weight, grad_bias, training, need_sums);
}

#define DEEPKERN_CUDA_NORM_INSTANTIATE(T)                                                                              \
  template void launch_batch_norm_forward<T>(const BatchNormShape&, const T*, const T*, const T*, T*, T*, T*, double*, \
                                             double*, bool, double, double, cudaStream_t);                             \
  template void launch_batch_norm_backward<T>(const BatchNormShape&, const T*, const T*, const T*, const double*,      \
                                              const double*, T*, T*, T*, bool, cudaStream_t);
DEEPKERN_CUDA_NORM_INSTANTIATE(float)
DEEPKERN_CUDA_NORM_INSTANTIATE(double)
#undef DEEPKERN_CUDA_NORM_INSTANTIATE

}  // namespace deepkern::cuda
