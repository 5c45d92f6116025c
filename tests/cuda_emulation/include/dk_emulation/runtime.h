// The emulated GPU: runs a kernel's blocks on fibers, one per thread of the block, all on the
// calling host thread (ucontext stacks; a switch costs far less than waking an OS thread). The
// fibers run the grid's blocks one after another (x fastest), with a barrier between blocks. A
// scheduler resumes the fibers round-robin, a fiber running until it waits, in thread order for one
// block and in reverse order for the next (and from one launch to the next): a thread that reads
// what another wrote without a barrier between them reads it unwritten in one of the two orders.
// Inside a block:
// - __syncthreads waits for the block's live threads: a thread that has returned from the kernel
//   drops out, as on the GPU;
// - warp collectives (shuffles, __syncwarp, ldmatrix, mma) wait for the live lanes of their mask:
//   each lane leaves its input in the warp's exchange area, the last one to arrive computes every
//   participant's output, and each lane takes its own;
// - a pass of the scheduler in which no fiber gets past a wait is a deadlock: the launch fails with
//   a message naming the kernel, a waiting thread and its barrier (never a hang);
// - an exception thrown on a kernel thread stops the launch after the current block and is
//   rethrown by run(), naming the kernel, the block and the thread.
// One launch runs at a time (static __shared__ variables are shared by every block).
#pragma once
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "dk_emulation/vector_types.h"

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace dk_emu {

constexpr unsigned kWarpSize = 32;
constexpr std::size_t kSlotBytes = 64;                       // a lane's input or output in a collective
constexpr unsigned char kPoison = 0xff;                      // what uninitialized or undefined data reads as (NaN, -1)
constexpr std::size_t kStackBytes = std::size_t(512) << 10;  // per fiber, touched pages only

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
  std::uint64_t done[kWarpSize] = {};  // collectives completed, per lane
  alignas(16) unsigned char in[kWarpSize][kSlotBytes];
  alignas(16) unsigned char out[kWarpSize][kSlotBytes];
};

inline std::string text_of(uint3 v) {
  return "(" + std::to_string(v.x) + ", " + std::to_string(v.y) + ", " + std::to_string(v.z) + ")";
}

inline std::string hex(std::uint32_t v) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "0x%08x", v);
  return buffer;
}

// swapcontext. AddressSanitizer's own writes a warning that it may not follow the stack switch into
// its report file (which fails tools/sanitize-check); the switches here are annotated for it, so
// under it the C library's swapcontext is called directly.
inline int switch_context(ucontext_t* from, const ucontext_t* to) {
#if defined(__SANITIZE_ADDRESS__)
  using Swap = int (*)(ucontext_t*, const ucontext_t*);
  static const Swap libc_swapcontext = [] {
    void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void* symbol = libc ? dlsym(libc, "swapcontext") : nullptr;
    if (!symbol) throw std::runtime_error("the CUDA emulation could not find the C library's swapcontext");
    return reinterpret_cast<Swap>(symbol);
  }();
  return libc_swapcontext(from, to);
#else
  return swapcontext(from, to);
#endif
}

// A fiber's stack: mapped once and kept for later launches, with a guard page below it, so an
// overflow faults instead of writing over another fiber's stack.
class Stack {
 public:
  Stack() {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    mapping_ = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping_ == MAP_FAILED) throw std::runtime_error("the CUDA emulation could not map a fiber stack");
    mprotect(mapping_, page, PROT_NONE);
    base_ = static_cast<unsigned char*>(mapping_) + page;
    mapped_bytes_ = kStackBytes + page;
  }
  ~Stack() { munmap(mapping_, mapped_bytes_); }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  void* base() const { return base_; }

 private:
  void* mapping_;
  unsigned char* base_;
  std::size_t mapped_bytes_;
};

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

  // Runs every block; throws std::runtime_error with the first exception a kernel thread threw, or
  // when the threads deadlock.
  void run() {
    static std::vector<std::unique_ptr<Stack>> stacks;  // launches run one at a time
    while (stacks.size() < threads_) stacks.push_back(std::make_unique<Stack>());
    fibers_.resize(threads_);
    for (unsigned t = 0; t < threads_; ++t) {
      Fiber& fiber = fibers_[t];
      fiber.warp = t / kWarpSize;
      fiber.lane = t % kWarpSize;
      fiber.thread_idx = {t % block_.x, t / block_.x % block_.y, t / (block_.x * block_.y)};
      fiber.stack = stacks[t]->base();
#if defined(__SANITIZE_ADDRESS__)
      ASAN_UNPOISON_MEMORY_REGION(fiber.stack, kStackBytes);  // a fiber abandoned by a deadlock left it poisoned
#endif
      getcontext(&fiber.context);
      fiber.context.uc_stack.ss_sp = fiber.stack;
      fiber.context.uc_stack.ss_size = kStackBytes;
      fiber.context.uc_link = &scheduler_;
      makecontext(&fiber.context, &Launch::fiber_entry, 0);
    }
    current() = this;
    blockDim = block_;
    gridDim = grid_;
    static std::uint64_t launches = 0;  // the order alternates from launch to launch, too
    const std::uint64_t launch_number = launches++;
    unsigned unfinished = threads_;
    while (unfinished > 0) {
      const std::uint64_t progress = progress_;
      const bool descending = (launch_number + block_generation_) % 2 == 1;
      for (unsigned k = 0; k < threads_; ++k) {
        const unsigned t = descending ? threads_ - 1 - k : k;
        if (fibers_[t].finished) continue;
        resume(t);
        if (fibers_[t].finished) --unfinished;
      }
      if (unfinished > 0 && progress == progress_) {
        current() = nullptr;
        throw std::runtime_error(deadlock_message());
      }
    }
    current() = nullptr;
    if (!error_.empty()) throw std::runtime_error(error_);
  }

  unsigned char* shared() const { return shared_.get(); }

  // __syncthreads: waits until every live thread of the block has arrived.
  void sync_threads() {
    const std::uint64_t generation = sync_generation_;
    if (++sync_arrived_ == live_) return release_sync();
    wait("__syncthreads", [&] { return sync_generation_ != generation; });
  }

  // A warp collective: this lane's `input` joins those of the other live lanes of `mask`; the last
  // lane to arrive runs `compute` over them; this lane's output is copied to `output`.
  void collective(std::uint32_t mask, const void* input, std::size_t input_bytes, Compute compute, void* output,
                  std::size_t output_bytes, const char* what) {
    const unsigned lane = running_->lane;
    Warp& warp = *warps_[running_->warp];
    if (!(mask >> lane & 1u))
      throw std::logic_error(std::string(what) + ": mask " + hex(mask) + " leaves out the calling lane " +
                             std::to_string(lane));
    std::memcpy(warp.in[lane], input, input_bytes);
    warp.request[lane] = mask;
    warp.compute[lane] = compute;
    warp.arrived |= 1u << lane;
    const std::uint64_t ticket = warp.done[lane];
    complete_collectives(warp);
    wait(what, [&] { return warp.done[lane] != ticket; });
    if (warp.fault[lane]) throw std::logic_error(std::string(what) + ": " + warp.fault[lane]);
    std::memcpy(output, warp.out[lane], output_bytes);
  }

 private:
  struct Fiber {
    ucontext_t context;
    void* stack = nullptr;
    unsigned warp = 0, lane = 0;
    uint3 thread_idx{}, block_idx{};
    const char* waiting_in = nullptr;  // the barrier it waits in
    bool finished = false;
#if defined(__SANITIZE_ADDRESS__)
    void* fake_stack = nullptr;
#endif
  };

  // The scheduler's switch into fiber t and back; threadIdx and blockIdx are the fiber's meanwhile.
  void resume(unsigned t) {
    Fiber& fiber = fibers_[t];
    running_ = &fiber;
    threadIdx = fiber.thread_idx;
    blockIdx = fiber.block_idx;
#if defined(__SANITIZE_ADDRESS__)
    void* scheduler_fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, fiber.stack, kStackBytes);
#endif
    switch_context(&scheduler_, &fiber.context);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#endif
    fiber.block_idx = blockIdx;
    running_ = nullptr;
  }

  // The running fiber's switch back to the scheduler, until it resumes the fiber again.
  void yield() {
    Fiber& fiber = *running_;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(&fiber.fake_stack, scheduler_stack_, scheduler_stack_bytes_);
#endif
    switch_context(&fiber.context, &scheduler_);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fiber.fake_stack, nullptr, nullptr);
#endif
  }

  static void fiber_entry() {
    Launch& launch = *current();
#if defined(__SANITIZE_ADDRESS__)
    const void* bottom;
    __sanitizer_finish_switch_fiber(nullptr, &bottom, &launch.scheduler_stack_bytes_);
    launch.scheduler_stack_ = bottom;
#endif
    launch.thread_main();
    launch.running_->finished = true;
    ++launch.progress_;
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(nullptr, launch.scheduler_stack_, launch.scheduler_stack_bytes_);
#endif
  }  // returns to the scheduler (uc_link)

  void thread_main() {
    ++progress_;
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
  }

  void record_error(const char* what) {
    if (error_.empty())
      error_ = std::string("kernel ") + name_ + ": thread " + text_of(threadIdx) + " of block " + text_of(blockIdx) +
               " threw: " + what;
  }

  // The thread has returned from the kernel: it drops out of the block's barriers, then waits for
  // the block's other threads. Returns whether the next block runs (false after an error).
  bool finish_thread() {
    Warp& warp = *warps_[running_->warp];
    --live_;
    warp.live &= ~(1u << running_->lane);
    if (sync_arrived_ > 0 && sync_arrived_ == live_) release_sync();
    complete_collectives(warp);
    const std::uint64_t generation = block_generation_;
    if (++finished_ == threads_) {
      finished_ = 0;
      ++block_generation_;
      start_block();
    } else {
      wait("the end of the block (another thread never finished)", [&] { return block_generation_ != generation; });
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
  }

  // Completes every collective of `warp` whose live lanes have all arrived.
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
    }
  }

  // Yields until done(); getting past a wait is the progress the scheduler looks for.
  template <typename Done>
  void wait(const char* where, Done done) {
    while (!done()) {
      running_->waiting_in = where;
      yield();
    }
    running_->waiting_in = nullptr;
    ++progress_;
  }

  std::string deadlock_message() const {
    const Fiber* waiting = nullptr;
    for (const Fiber& fiber : fibers_)
      if (!fiber.finished && fiber.waiting_in) {
        waiting = &fiber;
        break;
      }
    std::string message = std::string("kernel ") + name_ + " deadlocked";
    if (!waiting) return message;
    const Warp& warp = *warps_[waiting->warp];
    return message + ": thread " + text_of(waiting->thread_idx) + " of block " + text_of(waiting->block_idx) +
           " waits in " + waiting->waiting_in + " (block: " + std::to_string(threads_) + " threads, " +
           std::to_string(live_) + " live, " + std::to_string(sync_arrived_) + " at __syncthreads; warp " +
           std::to_string(waiting->warp) + ": live lanes " + hex(warp.live) + ", lanes in a collective " +
           hex(warp.arrived) + ")";
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

  std::vector<Fiber> fibers_;
  ucontext_t scheduler_;
  Fiber* running_ = nullptr;
  std::uint64_t progress_ = 0;  // fibers started, finished or past a wait
#if defined(__SANITIZE_ADDRESS__)
  const void* scheduler_stack_ = nullptr;
  std::size_t scheduler_stack_bytes_ = 0;
#endif
  unsigned live_ = 0, sync_arrived_ = 0, finished_ = 0;
  std::uint64_t sync_generation_ = 0, block_generation_ = 0;
  std::string error_;

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
