// The emulated GPU: runs a kernel's blocks on host threads. A launch starts one std::thread per
// thread of the block, once; the threads run the grid's blocks one after another (x fastest), with
// a barrier between blocks. Inside a block:
// - __syncthreads waits for the block's live threads: a thread that has returned from the kernel
//   drops out, as on the GPU;
// - warp collectives (shuffles, __syncwarp, ldmatrix, mma) wait for the live lanes of their mask:
//   each lane leaves its input in the warp's exchange area, the last one to arrive computes every
//   participant's output, and each lane takes its own;
// - a barrier that waits longer than the watchdog (20 s, or DK_EMULATION_WATCHDOG_S seconds)
//   aborts the process with a message naming the kernel and the barrier: a deadlock is never a hang;
// - an exception thrown on a kernel thread stops the launch after the current block and is
//   rethrown by run(), naming the kernel, the block and the thread.
// One launch runs at a time (static __shared__ variables are shared by every block).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dk_emulation/vector_types.h"

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace dk_emu {

constexpr unsigned kWarpSize = 32;
constexpr std::size_t kSlotBytes = 64;   // a lane's input or output in a collective
constexpr unsigned char kPoison = 0xff;  // what uninitialized or undefined data reads as (NaN, -1)
constexpr int kSpins = 30;               // yields before a waiting thread sleeps

struct Warp;
// Computes the outputs of `lanes` from their inputs; returns a fault message, or nullptr.
using Compute = const char* (*)(Warp& warp, std::uint32_t lanes);

struct Warp {
  std::uint32_t exists = 0;               // lanes the block has
  std::uint32_t live = 0;                 // lanes that have not returned from the kernel
  std::uint32_t arrived = 0;              // lanes waiting in a collective
  std::uint32_t request[kWarpSize] = {};  // each waiting lane's mask and collective
  Compute compute[kWarpSize] = {};
  const char* fault[kWarpSize] = {};
  std::atomic<std::uint64_t> done[kWarpSize] = {};  // collectives completed, per lane
  alignas(16) unsigned char in[kWarpSize][kSlotBytes];
  alignas(16) unsigned char out[kWarpSize][kSlotBytes];
  std::condition_variable wake;
};

inline double watchdog_seconds() {
  static const double seconds = [] {
    const char* text = std::getenv("DK_EMULATION_WATCHDOG_S");
    const double value = text ? std::atof(text) : 0.0;
    return value > 0 ? value : 20.0;
  }();
  return seconds;
}

inline std::string text_of(uint3 v) {
  return "(" + std::to_string(v.x) + ", " + std::to_string(v.y) + ", " + std::to_string(v.z) + ")";
}

inline std::string hex(std::uint32_t v) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "0x%08x", v);
  return buffer;
}

class Launch {
 public:
  Launch(const char* name, dim3 grid, dim3 block, std::size_t shared_bytes, void (*invoke)(const void*),
         const void* args)
      : name_(name), grid_(grid), block_(block), invoke_(invoke), args_(args), shared_bytes_(shared_bytes) {
    threads_ = block.x * block.y * block.z;
    blocks_ = std::uint64_t{grid.x} * grid.y * grid.z;
    warps_.resize((threads_ + kWarpSize - 1) / kWarpSize);
    for (std::size_t w = 0; w < warps_.size(); ++w) {
      warps_[w] = std::make_unique<Warp>();
      const unsigned lanes = std::min<unsigned>(kWarpSize, threads_ - static_cast<unsigned>(w) * kWarpSize);
      warps_[w]->exists = lanes == kWarpSize ? ~0u : (1u << lanes) - 1;
    }
    shared_.reset(static_cast<unsigned char*>(std::aligned_alloc(128, (shared_bytes + 127) / 128 * 128 + 128)));
    start_block();
  }

  // Runs every block; throws std::runtime_error with the first exception a kernel thread threw.
  // The threads start the kernel once all exist; when one cannot be created, those that exist
  // return at once and the failure is the launch's error.
  void run() {
    std::vector<std::thread> threads;
    threads.reserve(threads_);
    try {
      for (unsigned t = 0; t < threads_; ++t) threads.emplace_back(&Launch::thread_main, this, t);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      abandoned_ = true;
      error_ = std::string("kernel ") + name_ + ": could not start thread " + std::to_string(threads.size()) + " of " +
               std::to_string(threads_) + ": " + e.what();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      started_ = true;
    }
    block_wake_.notify_all();
    for (std::thread& t : threads) t.join();
    if (!error_.empty()) throw std::runtime_error(error_);
  }

  unsigned char* shared() const { return shared_.get(); }

  // __syncthreads: waits until every live thread of the block has arrived.
  void sync_threads() {
    std::unique_lock<std::mutex> lock(mutex_);
    const std::uint64_t generation = sync_generation_;
    if (++sync_arrived_ == live_) return release_sync();
    wait(lock, block_wake_, "__syncthreads", [&] { return sync_generation_ != generation; });
  }

  // A warp collective: this lane's `input` joins those of the other live lanes of `mask`; the last
  // lane to arrive runs `compute` over them; this lane's output is copied to `output`.
  void collective(std::uint32_t mask, const void* input, std::size_t input_bytes, Compute compute, void* output,
                  std::size_t output_bytes, const char* what) {
    const unsigned lane = this_thread().lane;
    Warp& warp = *warps_[this_thread().warp];
    if (!(mask >> lane & 1u))
      throw std::logic_error(std::string(what) + ": mask " + hex(mask) + " leaves out the calling lane " +
                             std::to_string(lane));
    std::unique_lock<std::mutex> lock(mutex_);
    std::memcpy(warp.in[lane], input, input_bytes);
    warp.request[lane] = mask;
    warp.compute[lane] = compute;
    warp.arrived |= 1u << lane;
    const std::uint64_t ticket = warp.done[lane];
    complete_collectives(warp);
    wait(lock, warp.wake, what, [&] { return warp.done[lane] != ticket; });
    if (warp.fault[lane]) throw std::logic_error(std::string(what) + ": " + warp.fault[lane]);
    std::memcpy(output, warp.out[lane], output_bytes);
  }

 private:
  struct ThreadPlace {
    unsigned linear, warp, lane;
  };
  static ThreadPlace& this_thread() {
    static thread_local ThreadPlace place;
    return place;
  }

  void thread_main(unsigned linear) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      block_wake_.wait(lock, [&] { return started_; });
      if (abandoned_) return;
    }
    this_thread() = {linear, linear / kWarpSize, linear % kWarpSize};
    current() = this;
    threadIdx = {linear % block_.x, linear / block_.x % block_.y, linear / (block_.x * block_.y)};
    blockDim = block_;
    gridDim = grid_;
    for (std::uint64_t b = 0; b < blocks_; ++b) {
      blockIdx = {static_cast<unsigned>(b % grid_.x), static_cast<unsigned>(b / grid_.x % grid_.y),
                  static_cast<unsigned>(b / (std::uint64_t{grid_.x} * grid_.y))};
      try {
        invoke_(args_);
      } catch (const std::exception& e) {
        record_error(e.what());
      } catch (...) {
        record_error("an exception not derived from std::exception");
      }
      if (!finish_thread()) break;
    }
    current() = nullptr;
  }

  void record_error(const char* what) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_.empty())
      error_ = std::string("kernel ") + name_ + ": thread " + text_of(threadIdx) + " of block " + text_of(blockIdx) +
               " threw: " + what;
  }

  // The thread has returned from the kernel: it drops out of the block's barriers, then waits for
  // the block's other threads. Returns whether the next block runs (false after an error).
  bool finish_thread() {
    std::unique_lock<std::mutex> lock(mutex_);
    Warp& warp = *warps_[this_thread().warp];
    --live_;
    warp.live &= ~(1u << this_thread().lane);
    if (sync_arrived_ > 0 && sync_arrived_ == live_) release_sync();
    complete_collectives(warp);
    const std::uint64_t generation = block_generation_;
    if (++finished_ == threads_) {
      finished_ = 0;
      ++block_generation_;
      start_block();
      block_wake_.notify_all();
    } else {
      wait(lock, block_wake_, "the end of the block (another thread never finished)",
           [&] { return block_generation_ != generation; });
    }
    return error_.empty();
  }

  // Every thread live again, no barrier pending, shared memory uninitialized (poisoned).
  void start_block() {
    live_ = threads_;
    sync_arrived_ = 0;
    for (auto& warp : warps_) warp->live = warp->exists, warp->arrived = 0;
    std::memset(shared_.get(), kPoison, shared_bytes_);
  }

  void release_sync() {
    sync_arrived_ = 0;
    ++sync_generation_;
    block_wake_.notify_all();
  }

  // Completes every collective of `warp` whose live lanes have all arrived (mutex held).
  void complete_collectives(Warp& warp) {
    std::uint32_t pending = warp.arrived;
    while (pending) {
      const unsigned first = static_cast<unsigned>(__builtin_ctz(pending));
      const std::uint32_t lanes = (warp.request[first] & warp.live) | (1u << first);
      pending &= ~lanes;
      if ((warp.arrived & lanes) != lanes) continue;
      const char* fault = nullptr;
      for (unsigned l = 0; l < kWarpSize; ++l) {
        if ((lanes >> l & 1u) && (warp.compute[l] != warp.compute[first] || warp.request[l] != warp.request[first]))
          fault = "the lanes of the mask are in different warp collectives or passed different masks";
      }
      if (!fault) fault = warp.compute[first](warp, lanes);
      for (unsigned l = 0; l < kWarpSize; ++l) {
        if (lanes >> l & 1u) warp.fault[l] = fault, ++warp.done[l];
      }
      warp.arrived &= ~lanes;
      warp.wake.notify_all();
    }
  }

  template <typename Done>
  void wait(std::unique_lock<std::mutex>& lock, std::condition_variable& wake, const char* where, Done done) {
    if (done()) return;
    lock.unlock();  // the waits are short when the threads fit the cores: yield a while before sleeping
    for (int spin = 0; spin < kSpins && !done(); ++spin) std::this_thread::yield();
    lock.lock();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(watchdog_seconds());
    while (!done()) {
      if (wake.wait_until(lock, deadline) == std::cv_status::timeout && !done()) deadlock(where);
    }
  }

  [[noreturn]] void deadlock(const char* where) {
    const Warp& warp = *warps_[this_thread().warp];
    std::fprintf(stderr,
                 "deepkern CUDA emulation: kernel %s deadlocked: thread %s of block %s waited more than %g s in "
                 "%s (block: %u threads, %u live, %u at __syncthreads; warp %u: live lanes %s, lanes in a "
                 "collective %s)\n",
                 name_, text_of(threadIdx).c_str(), text_of(blockIdx).c_str(), watchdog_seconds(), where, threads_,
                 live_, sync_arrived_, this_thread().warp, hex(warp.live).c_str(), hex(warp.arrived).c_str());
    std::fflush(stderr);
    std::abort();
  }

  const char* name_;
  dim3 grid_, block_;
  void (*invoke_)(const void*);
  const void* args_;
  unsigned threads_ = 0;
  std::uint64_t blocks_ = 0;
  std::size_t shared_bytes_;
  struct FreeDeleter {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, FreeDeleter> shared_;
  std::vector<std::unique_ptr<Warp>> warps_;

  std::mutex mutex_;
  std::condition_variable block_wake_;
  unsigned live_ = 0, sync_arrived_ = 0, finished_ = 0;
  std::atomic<std::uint64_t> sync_generation_{0}, block_generation_{0};
  std::string error_;
  bool started_ = false;    // every thread exists (or creating one failed)
  bool abandoned_ = false;  // creating a thread failed: the kernel does not run

 public:
  // The launch the calling kernel thread belongs to (nullptr outside kernels).
  static Launch*& current() {
    static thread_local Launch* launch = nullptr;
    return launch;
  }
};

// The launch of the calling kernel thread; device functions called outside a kernel are an error.
inline Launch& current_launch(const char* what) {
  Launch* launch = Launch::current();
  if (!launch) throw std::logic_error(std::string(what) + " called outside a kernel");
  return *launch;
}

// Runs kernel `name` (invoke(args) on each thread) over the grid. Launches run one at a time.
inline void run(const char* name, dim3 grid, dim3 block, std::size_t shared_bytes, void (*invoke)(const void*),
                const void* args) {
  static std::mutex one_at_a_time;
  std::lock_guard<std::mutex> lock(one_at_a_time);
  Launch launch(name, grid, block, shared_bytes, invoke, args);
  launch.run();
}

// The lane of the calling thread within its warp.
inline unsigned lane_id() {
  const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return linear % kWarpSize;
}

// A collective over the full warp (every lane of the warp must exist and take part).
template <typename In, typename Out>
void warp_collective(const In& input, Compute compute, Out* output, const char* what, std::uint32_t mask = ~0u) {
  static_assert(sizeof(In) <= kSlotBytes && sizeof(Out) <= kSlotBytes, "exchange slot too small");
  current_launch(what).collective(mask, &input, sizeof(In), compute, output, sizeof(Out), what);
}

// The first sizeof(T) bytes of an exchange slot, as T.
template <typename T>
T slot(const unsigned char (&bytes)[kSlotBytes]) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

}  // namespace dk_emu
