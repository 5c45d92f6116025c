// Force-included (g++ -include) before every kernel source built for the emulation: the CUDA
// keywords and device functions that nvcc provides without an #include, as host code.
// __shared__ variables become function statics: valid because blocks run one at a time (and one
// launch at a time), but they start zeroed rather than with garbage, which the GPU does not promise.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "dk_emulation/runtime.h"

// Kernel sources see what nvcc's host pass sees: __CUDACC__ defined (device code visible), no
// __CUDA_ARCH__. Defined after the standard headers above, so those are configured as for g++.
#define __CUDACC__ 1

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

inline void __syncthreads() { dk_emu::current_launch("__syncthreads").sync_threads(); }

namespace dk_emu {

inline const char* no_op(Warp&, std::uint32_t) { return nullptr; }

// A shuffle's input: the value and the lane it reads (-1: its own value).
struct ShuffleIn {
  unsigned char value[8];
  int source;
};

// Each lane of `lanes` gets the value of its source lane; a source that does not take part gives
// poison bytes (the GPU's result is undefined there).
inline const char* route(Warp& warp, std::uint32_t lanes) {
  for (unsigned l = 0; l < kWarpSize; ++l) {
    if (!(lanes >> l & 1u)) continue;
    const int source = slot<ShuffleIn>(warp.in[l]).source;
    const unsigned from = source < 0 ? l : static_cast<unsigned>(source);
    if (lanes >> from & 1u)
      std::memcpy(warp.out[l], slot<ShuffleIn>(warp.in[from]).value, 8);
    else
      std::memset(warp.out[l], kPoison, 8);
  }
  return nullptr;
}

// `var` of lane `source` (or the caller's own when source < 0) among the lanes of `mask`.
template <typename T>
T shuffle(unsigned mask, T var, int source, int width, const char* what) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffles move values of up to 8 bytes");
  if (width < 1 || width > 32 || (width & (width - 1)))
    throw std::logic_error(std::string(what) + ": width " + std::to_string(width) + " is not a power of 2 <= 32");
  ShuffleIn in{};
  std::memcpy(in.value, &var, sizeof(T));
  in.source = source;
  unsigned char out[8];
  warp_collective(in, route, &out, what, mask);
  T result;
  std::memcpy(&result, out, sizeof(T));
  return result;
}

}  // namespace dk_emu

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  const char none = 0;
  char out;
  dk_emu::warp_collective(none, dk_emu::no_op, &out, "__syncwarp", mask);
}

// The value of lane srcLane (modulo width) of the caller's group of `width` lanes.
template <typename T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32) {
  const int lane = static_cast<int>(dk_emu::lane_id());
  return dk_emu::shuffle(mask, var, (lane & ~(width - 1)) + (srcLane & (width - 1)), width, "__shfl_sync");
}

// The value of lane ^ laneMask; the caller's own when that lane is in a later group of `width`.
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32) {
  const int lane = static_cast<int>(dk_emu::lane_id());
  const int source = lane ^ laneMask;
  const int group_end = (lane & ~(width - 1)) + width;
  return dk_emu::shuffle(mask, var, source >= group_end ? -1 : source, width, "__shfl_xor_sync");
}

// The value of lane + delta; the caller's own when that leaves its group of `width` lanes.
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(dk_emu::lane_id());
  const int source = lane + static_cast<int>(delta);
  const int group_end = (lane & ~(width - 1)) + width;
  return dk_emu::shuffle(mask, var, source >= group_end ? -1 : source, width, "__shfl_down_sync");
}

// The value of lane - delta; the caller's own when that leaves its group of `width` lanes.
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(dk_emu::lane_id());
  const int source = lane - static_cast<int>(delta);
  return dk_emu::shuffle(mask, var, source < (lane & ~(width - 1)) ? -1 : source, width, "__shfl_up_sync");
}

template <typename T>
T __ldg(const T* pointer) {
  return *pointer;
}

// Atomic read-modify-write on host memory, as the kernels call them.
inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
template <typename F>
F dk_emu_atomic_add_float(F* address, F value) {
  F old, sum;
  __atomic_load(address, &old, __ATOMIC_RELAXED);
  do {
    sum = old + value;
  } while (!__atomic_compare_exchange(address, &old, &sum, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
  return old;
}
inline float atomicAdd(float* address, float value) { return dk_emu_atomic_add_float(address, value); }
inline double atomicAdd(double* address, double value) { return dk_emu_atomic_add_float(address, value); }

inline std::size_t __cvta_generic_to_shared(const void* pointer) { return reinterpret_cast<std::size_t>(pointer); }

// Math the host's <cmath> lacks (the fast intrinsics computed at full precision).
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
inline int __float_as_int(float x) { return static_cast<int>(__float_as_uint(x)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
// CUDA's global min/max overloads.
#define DK_EMU_MIN_MAX(T)                          \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
DK_EMU_MIN_MAX(int)
DK_EMU_MIN_MAX(unsigned)
DK_EMU_MIN_MAX(long)
DK_EMU_MIN_MAX(unsigned long)
DK_EMU_MIN_MAX(long long)
DK_EMU_MIN_MAX(unsigned long long)
#undef DK_EMU_MIN_MAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
