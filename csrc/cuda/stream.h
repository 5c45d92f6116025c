// Streams and events. Plain C++: handles are opaque pointers (a cudaStream_t, a cudaEvent_t).
#pragma once
#include <cstdint>

namespace deepkern::cuda {

// The stream deepkern queues work on for `device` in this thread (nullptr: the legacy default
// stream, the initial one), and the way to change it. Stream's context manager uses these.
void* current_stream(int device);
void set_current_stream(int device, void* stream);
// The current device of this thread (cudaGetDevice).
int current_device();

// A stream of `device` that synchronizes with the legacy default stream (created with default
// flags), so work queued before on the default stream runs before its work. Destroying it waits
// for its work first.
class Stream {
 public:
  explicit Stream(int device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return stream_; }
  int device() const { return device_; }
  void synchronize() const;
  bool query() const;  // true when all its work has finished

 private:
  void* stream_ = nullptr;
  int device_ = 0;
};

// An event of `device`; timing events can measure the time between two recorded points.
class Event {
 public:
  Event(int device, bool enable_timing);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(void* stream);  // nullptr: the legacy default stream
  void synchronize() const;
  bool query() const;
  void wait_on(void* stream) const;  // work queued on `stream` after this waits for the event
  // Milliseconds from this event to `end`, both recorded and complete, both timing events.
  float elapsed_ms(const Event& end) const;
  int device() const { return device_; }
  bool recorded() const { return recorded_; }

 private:
  void* event_ = nullptr;
  int device_ = 0;
  bool timing_ = false;
  bool recorded_ = false;
};

// Waits for all work on `device`.
void synchronize_device(int device);
// Work queued on `consumer` after this call waits for the work queued on `producer` so far; no-op
// when they are the same stream.
void order_after(int device, void* producer, void* consumer);

}  // namespace deepkern::cuda
