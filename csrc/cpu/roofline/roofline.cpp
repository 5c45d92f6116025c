#include "cpu/roofline/roofline.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

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

}  // namespace

double measure_fma_gflops(Isa isa, int threads, double seconds) {
  if (isa != active_isa())
    throw std::invalid_argument(std::string("measure_fma_gflops measures the active ISA ('") +
                                isa_name(active_isa()) + "'), got '" + isa_name(isa) + "'");
  const roofline::PeakLoops& loops = peak_loops();
  // Calibrate the iteration count on one thread, then time all threads together.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto start = std::chrono::steady_clock::now();
    sink = sink + loops.multiply_add_chains(iters);
    if (seconds_since(start) > seconds / 4 || iters > (int64_t(1) << 40)) break;
    iters *= 2;
  }
  const auto start = std::chrono::steady_clock::now();
  run_on_threads(threads, [&](int) { sink = sink + loops.multiply_add_chains(iters); });
  const double elapsed = seconds_since(start);
  return loops.flops_per_iteration * double(iters) * threads / elapsed / 1e9;
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
