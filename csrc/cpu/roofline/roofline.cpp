#include "cpu/roofline/roofline.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/roofline/peak_loops.h"

namespace deepkern::cpu {
namespace {

const roofline::PeakLoops& peak_loops() {
  return dispatch(IsaFamily::roofline, IsaTables<roofline::PeakLoops>{
                                           .generic = roofline::generic::peak_loops,
                                           .avx2 = roofline::avx2::peak_loops,
                                           .avx512 = roofline::avx512::peak_loops,
                                       });
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::atomic<float> sink{0};

// Bytes the stream moves per element: a and b read, a written.
constexpr double kStreamBytesPerElement = 3 * sizeof(float);

using Buffer = std::unique_ptr<float, decltype(&std::free)>;

// `n` floats placed as the kernel rows' NumPy arrays are: 2 MB-aligned and, on Linux, backed by
// transparent huge pages where the system allows them (madvise, as NumPy asks for arrays of 4 MB
// or more), so the stream and the kernels pay the same TLB misses.
Buffer stream_buffer(int64_t n) {
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t bytes = (n * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
  Buffer buffer(static_cast<float*>(std::aligned_alloc(kHugePage, bytes)), &std::free);
  if (!buffer) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(buffer.get(), bytes, MADV_HUGEPAGE);  // a hint; without huge pages the stream runs on small ones
#endif
  return buffer;
}

}  // namespace

double measure_chains_gflops(float (*chains)(int64_t iters), double flops_per_iteration, int threads, double seconds) {
  // Calibrate the iteration count on one thread, then time all threads together.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    sink = sink + chains(iters);
    if (seconds_since(start) > seconds / 4 || iters > (int64_t(1) << 40)) break;
    iters *= 2;
  }
  const auto start = std::chrono::steady_clock::now();
  run_on_threads(threads, [&](int) { sink = sink + chains(iters); });
  const double elapsed = seconds_since(start);
  return flops_per_iteration * double(iters) * threads / elapsed / 1e9;
}

double measure_fma_gflops(Isa isa, int threads, double seconds) {
  if (isa != active_isa())
    throw std::invalid_argument(std::string("measure_fma_gflops measures the active ISA ('") + isa_name(active_isa()) +
                                "'), got '" + isa_name(isa) + "'");
  const roofline::PeakLoops& loops = peak_loops();
  return measure_chains_gflops(loops.multiply_add_chains, loops.flops_per_iteration, threads, seconds);
}

double measure_copy_gbps(int64_t bytes, int threads, int repeats) {
  const roofline::PeakLoops& loops = peak_loops();
  constexpr int64_t kLine = 64 / sizeof(float);  // each thread's slice starts on a cache line
  const int64_t n = bytes / 64 * kLine;
  const Buffer a_buffer = stream_buffer(n), b_buffer = stream_buffer(n);
  float* a = a_buffer.get();
  float* b = b_buffer.get();
  const auto slice_begin = [&](int t) { return n / kLine * t / threads * kLine; };
  // Each thread first touches the pages it will stream. a = 2 and b = 1 is the fixed point of
  // a * 0.5 + 1: the values stay put over any number of passes.
  run_on_threads(threads, [&](int t) {
    std::fill(a + slice_begin(t), a + slice_begin(t + 1), 2.0f);
    std::fill(b + slice_begin(t), b + slice_begin(t + 1), 1.0f);
  });
  std::vector<double> times;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const auto start = std::chrono::steady_clock::now();
    run_on_threads(threads, [&](int t) {
      loops.update_in_place(a + slice_begin(t), b + slice_begin(t), 0.5f, slice_begin(t + 1) - slice_begin(t));
    });
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return kStreamBytesPerElement * double(n) / times[times.size() / 2] / 1e9;
}

}  // namespace deepkern::cpu
