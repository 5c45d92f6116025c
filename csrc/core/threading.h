// The number of threads deepkern's kernels use (OpenMP underneath).
#pragma once

namespace deepkern {

// Default: OMP_NUM_THREADS when set, else the cores this process may run on.
int num_threads();
// Throws std::invalid_argument for n < 1.
void set_num_threads(int n);

}  // namespace deepkern

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <omp.h>

namespace deepkern {

// Runs body(i) for every i in [0, threads) on up to `threads` OpenMP threads (inline when
// threads == 1, so small problems pay no thread start-up). When OpenMP grants a smaller team
// (a call from inside another parallel region, a thread limit) each thread runs several i, so
// every body still runs. An exception thrown by any body is re-thrown here after the team
// joins, instead of terminating the process.
template <class Body>
void run_on_threads(int threads, Body&& body) {
  if (threads <= 1) {
    body(0);
    return;
  }
  std::exception_ptr error;
  std::mutex error_lock;
#pragma omp parallel num_threads(threads)
  {
    try {
      for (int i = omp_get_thread_num(); i < threads; i += omp_get_num_threads()) body(i);
    } catch (...) {
      std::lock_guard<std::mutex> guard(error_lock);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Runs body(begin, end) on [0, n) cut into one contiguous range per thread, for element-wise
// kernels writing `out` (n elements of T): the cuts fall on 64-byte boundaries of `out` (no cache
// line written by two threads), and fewer threads run when one would get fewer than
// `min_per_thread` elements (below that, starting a thread costs more than it saves).
template <class T, class Body>
void run_on_ranges(const T* out, int64_t n, int64_t min_per_thread, Body&& body) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::clamp<int64_t>(n / min_per_thread, 1, num_threads()));
  constexpr int64_t kLine = 64 / sizeof(T);  // elements per cache line
  const int64_t skew = static_cast<int64_t>(reinterpret_cast<uintptr_t>(out) % 64 / sizeof(T));
  const auto cut = [&](int k) {
    if (k == threads) return n;
    return std::max<int64_t>(0, (n / threads * k + skew) / kLine * kLine - skew);
  };
  run_on_threads(threads, [&](int t) {
    const int64_t begin = cut(t), end = cut(t + 1);
    if (end > begin) body(begin, end);
  });
}

}  // namespace deepkern
