// The caching allocator (see memory.h for the contract).
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/memory.h"

namespace deepkern::cuda {
namespace {

constexpr std::size_t kSmallLimit = std::size_t{1} << 20;  // 1 MiB
constexpr std::size_t kSmallStep = 512;
constexpr std::size_t kLargeStep = std::size_t{2} << 20;       // 2 MiB
constexpr std::size_t kLargestRequest = std::size_t{1} << 50;  // 1 PiB: rounding cannot overflow

// One device's blocks: the cached ones by stream, then size; and the counters.
struct DevicePool {
  std::map<void*, std::multimap<std::size_t, void*>> cached;  // stream -> size -> block
  MemoryStats stats;
};

std::string human(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) value /= 1024, ++unit;
  char text[64];
  std::snprintf(text, sizeof text, "%.2f %s (%zu bytes)", value, units[unit], bytes);
  return text;
}

class Allocator {
 public:
  std::shared_ptr<void> allocate(int device, std::size_t bytes, void* stream) {
    if (bytes == 0) return nullptr;
    if (bytes > kLargestRequest)
      throw OutOfMemory("CUDA out of memory on device " + std::to_string(device) + ": asked for " + human(bytes) +
                        ", more than any device has");
    const std::size_t size = rounded_size(bytes);
    auto [block, block_size] = take_cached(device, size, stream);
    if (block == nullptr) block = fresh_block(device, bytes, size);
    return std::shared_ptr<void>(
        block, [this, device, stream, block_size](void* p) { give_back(device, stream, p, block_size); });
  }

  MemoryStats stats(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return pool(device).stats;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t device = 0; device < pools_.size(); ++device) free_cached(static_cast<int>(device));
  }

 private:
  DevicePool& pool(int device) {
    if (device < 0) throw std::invalid_argument("device index " + std::to_string(device) + " is negative");
    if (static_cast<std::size_t>(device) >= pools_.size()) pools_.resize(device + 1);
    return pools_[device];
  }

  // Best fit among the stream's cached blocks, at most twice `size`: (block, its size), or
  // (nullptr, size) when none fits.
  std::pair<void*, std::size_t> take_cached(int device, std::size_t size, void* stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    DevicePool& p = pool(device);
    auto by_stream = p.cached.find(stream);
    if (by_stream == p.cached.end()) return {nullptr, size};
    auto it = by_stream->second.lower_bound(size);
    if (it == by_stream->second.end() || it->first > 2 * size) return {nullptr, size};
    const std::pair<void*, std::size_t> taken{it->second, it->first};
    p.stats.allocated += it->first;
    p.stats.cache_hits += 1;
    by_stream->second.erase(it);
    return taken;
  }

  // cudaMalloc of `size` bytes; on failure, the device's cache is freed and cudaMalloc retried.
  void* fresh_block(int device, std::size_t asked, std::size_t size) {
    DeviceGuard guard(device);
    std::lock_guard<std::mutex> lock(mutex_);
    DevicePool& p = pool(device);
    void* block = nullptr;
    cudaError_t status = cudaMalloc(&block, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      free_cached(device);
      status = cudaMalloc(&block, size);
    }
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      std::size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      cudaGetLastError();
      throw OutOfMemory("CUDA out of memory on device " + std::to_string(device) + ": asked for " + human(asked) +
                        " (size class " + human(size) + "); the device has " + human(free_bytes) + " free of " +
                        human(total_bytes) + ", deepkern holds " + human(p.stats.allocated) +
                        " in arrays and nothing cached");
    }
    check(status, ("cudaMalloc(" + std::to_string(size) + " bytes)").c_str());
    p.stats.allocated += size;
    p.stats.reserved += size;
    p.stats.cuda_mallocs += 1;
    return block;
  }

  void give_back(int device, void* stream, void* block, std::size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    DevicePool& p = pool(device);
    p.cached[stream].emplace(size, block);
    p.stats.allocated -= size;
  }

  // Frees the device's cached blocks (mutex held). Blocks freed while work of their stream was
  // still queued may be in use by it: the device is synchronized first.
  void free_cached(int device) {
    DevicePool& p = pool(device);
    bool any = false;
    for (auto& entry : p.cached) any = any || !entry.second.empty();
    if (!any) return;
    DeviceGuard guard(device);
    DK_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& entry : p.cached) {
      for (auto& [size, block] : entry.second) {
        DK_CUDA_CHECK(cudaFree(block));
        p.stats.reserved -= size;
      }
      entry.second.clear();
    }
  }

  std::mutex mutex_;
  std::vector<DevicePool> pools_;
};

// Never destroyed: arrays released during interpreter shutdown still find it.
Allocator& allocator() {
  static Allocator* instance = new Allocator();
  return *instance;
}

}  // namespace

std::size_t rounded_size(std::size_t bytes) {
  const std::size_t step = bytes <= kSmallLimit ? kSmallStep : kLargeStep;
  return (bytes + step - 1) / step * step;
}

std::shared_ptr<void> allocate(int device, std::size_t bytes, void* stream) {
  return allocator().allocate(device, bytes, stream);
}

MemoryStats memory_stats(int device) { return allocator().stats(device); }

void empty_cache() { allocator().empty_cache(); }

std::pair<std::size_t, std::size_t> mem_get_info(int device) {
  DeviceGuard guard(device);
  std::size_t free_bytes = 0, total_bytes = 0;
  DK_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return {free_bytes, total_bytes};
}

}  // namespace deepkern::cuda
