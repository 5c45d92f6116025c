// The pinned host memory cache (see host_memory.h for the contract).
#include "cuda/host_memory.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/check.h"

namespace deepkern::cuda {
namespace {

struct Block {
  std::size_t size = 0;
  bool in_use = false;
  std::vector<cudaEvent_t> copies;  // events recorded after copies that read the block
};

class PinnedCache {
 public:
  std::shared_ptr<void> allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t size = rounded_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* block = take_cached(size);
    if (block == nullptr) block = fresh_block(bytes, size);
    return std::shared_ptr<void>(block, [this](void* p) { give_back(p); });
  }

  bool record(const void* host, std::size_t bytes, void* stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.upper_bound(const_cast<void*>(host));
    if (it == blocks_.begin()) return false;
    --it;
    const auto* start = static_cast<const char*>(it->first);
    const auto* begin = static_cast<const char*>(host);
    if (begin < start || begin + bytes > start + it->second.size) return false;
    cudaEvent_t event = nullptr;
    DK_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    DK_CUDA_CHECK(cudaEventRecord(event, static_cast<cudaStream_t>(stream)));
    it->second.copies.push_back(event);
    return true;
  }

  PinnedStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    free_idle();
  }

 private:
  // Frees the blocks not in use whose copies are done (mutex held).
  void free_idle() {
    for (auto it = blocks_.begin(); it != blocks_.end();) {
      if (!it->second.in_use && copies_done(it->second)) {
        DK_CUDA_CHECK(cudaFreeHost(it->first));
        stats_.reserved -= it->second.size;
        it = blocks_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Whether every copy recorded on the block has completed (their events are then destroyed).
  static bool copies_done(Block& block) {
    for (cudaEvent_t event : block.copies) {
      const cudaError_t status = cudaEventQuery(event);
      if (status == cudaErrorNotReady) {
        cudaGetLastError();
        return false;
      }
      check(status, "cudaEventQuery (a copy from pinned memory)");
    }
    for (cudaEvent_t event : block.copies) cudaEventDestroy(event);
    block.copies.clear();
    return true;
  }

  // Best fit among the idle blocks whose copies are done, at most twice `size` (mutex held).
  void* take_cached(std::size_t size) {
    void* best = nullptr;
    std::size_t best_size = 0;
    for (auto& [pointer, block] : blocks_) {
      if (block.in_use || block.size < size || block.size > 2 * size) continue;
      if (best != nullptr && block.size >= best_size) continue;
      if (!copies_done(block)) {
        stats_.waiting_on_copies += 1;
        continue;
      }
      best = pointer, best_size = block.size;
    }
    if (best == nullptr) return nullptr;
    blocks_[best].in_use = true;
    stats_.allocated += best_size;
    stats_.cache_hits += 1;
    return best;
  }

  // cudaHostAlloc of `size` bytes; on failure the idle blocks are freed and it is retried (mutex held).
  void* fresh_block(std::size_t asked, std::size_t size) {
    void* block = nullptr;
    cudaError_t status = cudaHostAlloc(&block, size, cudaHostAllocDefault);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      free_idle();
      status = cudaHostAlloc(&block, size, cudaHostAllocDefault);
    }
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw OutOfMemory("pinned host memory: cudaHostAlloc of " + std::to_string(size) + " bytes (asked " +
                        std::to_string(asked) + ") failed with " + std::to_string(stats_.reserved) +
                        " bytes held by deepkern's pinned cache");
    }
    check(status, ("cudaHostAlloc(" + std::to_string(size) + " bytes)").c_str());
    blocks_[block] = Block{size, true, {}};
    stats_.allocated += size;
    stats_.reserved += size;
    stats_.host_allocs += 1;
    return block;
  }

  void give_back(void* pointer) {
    std::lock_guard<std::mutex> lock(mutex_);
    Block& block = blocks_.at(pointer);
    block.in_use = false;
    stats_.allocated -= block.size;
  }

  std::mutex mutex_;
  std::map<void*, Block> blocks_;  // by address, so record() finds the block holding a pointer
  PinnedStats stats_;
};

// Never destroyed: arrays released during interpreter shutdown still find it.
PinnedCache& cache() {
  static PinnedCache* instance = new PinnedCache();
  return *instance;
}

}  // namespace

std::shared_ptr<void> allocate_pinned(std::size_t bytes) { return cache().allocate(bytes); }

bool record_pinned_use(const void* host, std::size_t bytes, void* stream) {
  return cache().record(host, bytes, stream);
}

bool is_pinned(const void* host) {
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, host);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attributes.type == cudaMemoryTypeHost;
}

PinnedStats pinned_stats() { return cache().stats(); }

void empty_pinned_cache() { cache().empty(); }

}  // namespace deepkern::cuda
