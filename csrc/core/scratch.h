// Per-thread scratch memory for kernels: 64-byte aligned, grows on demand, kept for the next
// call (so steady-state calls allocate nothing), freed when the thread ends.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
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

// This thread's scratch `slot` (of Slots) for the op family Family, as at least `count` T's. Each
// family names its own tag type, so two families never hand out the same memory.
template <class Family, int Slots, class T>
T* thread_scratch(int slot, int64_t count) {
  thread_local Scratch buffers[Slots];
  return static_cast<T*>(buffers[slot].get(sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1))));
}

// Elements of T in a 64-byte cache line (the step of kernels' software prefetches).
template <class T>
constexpr int64_t kCacheLineElements = 64 / int64_t(sizeof(T));

}  // namespace deepkern
