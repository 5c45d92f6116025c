// The number of threads deepkern's kernels use (OpenMP underneath).
#pragma once

namespace deepkern {

// Default: OMP_NUM_THREADS when set, else the cores this process may run on.
int num_threads();
// Throws std::invalid_argument for n < 1.
void set_num_threads(int n);

}  // namespace deepkern

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

}  // namespace deepkern
