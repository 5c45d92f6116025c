// Pinned (page-locked) host memory, so that host-to-device copies need not wait: a cache of
// cudaHostAlloc blocks. Plain C++ (no CUDA headers), like memory.h.
#pragma once
#include <cstddef>
#include <memory>

namespace deepkern::cuda {

// `bytes` of pinned host memory (nullptr for 0). Sizes are rounded to the device allocator's size
// classes (rounded_size). The block returns to the cache when the last copy of the pointer is
// dropped, and is handed out again only once every copy recorded on it (record_pinned_use) has
// completed, so an asynchronous copy never reads memory a later owner already writes. A cached
// block at most twice the rounded size is reused; otherwise cudaHostAlloc, and when that fails the
// cache's idle blocks are freed and it is retried once before OutOfMemory.
std::shared_ptr<void> allocate_pinned(std::size_t bytes);

// When [host, host + bytes) lies in one block of this cache: records an event on `stream` (a
// cudaStream_t) after the work queued there so far, which a reuse of the block waits for, and
// returns true. Returns false, recording nothing, for any other memory.
bool record_pinned_use(const void* host, std::size_t bytes, void* stream);

// Whether `host` is page-locked memory the CUDA runtime knows (from this cache or elsewhere).
bool is_pinned(const void* host);

struct PinnedStats {
  std::size_t allocated = 0;          // bytes of the blocks in use (size-class rounded)
  std::size_t reserved = 0;           // allocated + cached
  std::size_t host_allocs = 0;        // cudaHostAlloc calls that succeeded so far
  std::size_t cache_hits = 0;         // allocations served from the cache
  std::size_t waiting_on_copies = 0;  // cached blocks passed over because a copy from them was still running
};
PinnedStats pinned_stats();
// Frees the cached blocks whose recorded copies have completed; blocks in use, or still read by a
// copy, stay.
void empty_pinned_cache();

}  // namespace deepkern::cuda
