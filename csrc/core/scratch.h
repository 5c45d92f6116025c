// Per-thread scratch memory for kernels: 64-byte aligned, grows on demand, kept for the next
// call (so steady-state calls allocate nothing), freed when the thread ends.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <new>

namespace deepkern {

class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data_); }

  // At least `bytes` bytes; throws std::bad_alloc.
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      const size_t rounded = (bytes + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, rounded);
      if (!data_) throw std::bad_alloc();
      capacity_ = rounded;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace deepkern
