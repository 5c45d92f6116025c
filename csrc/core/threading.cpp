#include "core/threading.h"

#include <atomic>
#include <omp.h>
#include <stdexcept>
#include <string>

namespace deepkern {
namespace {
std::atomic<int>& thread_count() {
  // omp_get_max_threads() honours OMP_NUM_THREADS and the process's CPU affinity.
  static std::atomic<int> count{omp_get_max_threads() > 0 ? omp_get_max_threads() : 1};
  return count;
}
}  // namespace

int num_threads() { return thread_count().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  thread_count().store(n, std::memory_order_relaxed);
}

}  // namespace deepkern
