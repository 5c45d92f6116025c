#include "cpu/roofline/roofline.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "core/threading.h"

namespace deepkern::cpu {
namespace {

// Each loop keeps 16 independent accumulator chains in flight: enough to cover the FMA latency
// (4 cycles) on two FMA ports. Returns a value that depends on every chain so nothing is elided.
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 mul = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
  __m512 sum = acc[0];
  for (int i = 1; i < 16; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], mul, add);
  float lanes[8];
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_add_ps(sum, acc[i]);
  _mm256_storeu_ps(lanes, sum);
  return lanes[0] + lanes[7];
}

float mul_add_chains_sse(int64_t iters) {
  __m128 acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm_set1_ps(1.0f + i * 1e-3f);
  const __m128 mul = _mm_set1_ps(0.9999999f), add = _mm_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 8; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], mul), add);
  __m128 sum = acc[0];
  for (int i = 1; i < 8; ++i) sum = _mm_add_ps(sum, acc[i]);
  return _mm_cvtss_f32(sum);
}

// Floating-point operations per iteration of each loop above.
double flops_per_iteration(Isa isa) {
  switch (isa) {
    case Isa::avx512: return 16 * 16 * 2;
    case Isa::avx2: return 12 * 8 * 2;
    default: return 8 * 4 * 2;
  }
}

float run_chains(Isa isa, int64_t iters) {
  switch (isa) {
    case Isa::avx512: return fma_chains_avx512(iters);
    case Isa::avx2: return fma_chains_avx2(iters);
    default: return mul_add_chains_sse(iters);
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::atomic<float> sink{0};

}  // namespace

double measure_fma_gflops(Isa isa, int threads, double seconds) {
  // Calibrate the iteration count on one thread, then time all threads together.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    sink = sink + run_chains(isa, iters);
    if (seconds_since(start) > seconds / 4 || iters > (int64_t(1) << 40)) break;
    iters *= 2;
  }
  const auto start = std::chrono::steady_clock::now();
  run_on_threads(threads, [&](int) { sink = sink + run_chains(isa, iters); });
  const double elapsed = seconds_since(start);
  return flops_per_iteration(isa) * double(iters) * threads / elapsed / 1e9;
}

double measure_copy_gbps(int64_t bytes, int threads, int repeats) {
  const size_t size = static_cast<size_t>(bytes) / 64 * 64;
  char* src = static_cast<char*>(std::aligned_alloc(64, size));
  char* dst = static_cast<char*>(std::aligned_alloc(64, size));
  if (!src || !dst) {
    std::free(src);
    std::free(dst);
    throw std::bad_alloc();
  }
  auto slice = [&](int t, char* base) { return base + size / 64 * t / threads * 64; };
  auto slice_bytes = [&](int t) { return (size / 64 * (t + 1) / threads - size / 64 * t / threads) * 64; };
  // Each thread first touches the pages it will copy.
  run_on_threads(threads, [&](int t) {
    std::memset(slice(t, src), 1, slice_bytes(t));
    std::memset(slice(t, dst), 0, slice_bytes(t));
  });
  std::vector<double> times;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto start = std::chrono::steady_clock::now();
    run_on_threads(threads, [&](int t) { std::memcpy(slice(t, dst), slice(t, src), slice_bytes(t)); });
    times.push_back(seconds_since(start));
  }
  std::free(src);
  std::free(dst);
  std::sort(times.begin(), times.end());
  return 2.0 * double(size) / times[times.size() / 2] / 1e9;
}

}  // namespace deepkern::cpu
