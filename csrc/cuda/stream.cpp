// Streams, events and the per-thread current stream (see stream.h).
#include "cuda/stream.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/check.h"

namespace deepkern::cuda {
namespace {

thread_local std::vector<void*> current_streams;  // by device; absent or nullptr: default stream

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

void* current_stream(int device) {
  return device >= 0 && static_cast<std::size_t>(device) < current_streams.size() ? current_streams[device] : nullptr;
}

void set_current_stream(int device, void* stream) {
  if (device < 0) throw std::invalid_argument("device index " + std::to_string(device) + " is negative");
  if (static_cast<std::size_t>(device) >= current_streams.size()) current_streams.resize(device + 1, nullptr);
  current_streams[device] = stream;
}

int current_device() {
  int device = 0;
  DK_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

Stream::Stream(int device) : device_(device) {
  DeviceGuard guard(device);
  cudaStream_t stream = nullptr;
  DK_CUDA_CHECK(cudaStreamCreate(&stream));
  stream_ = stream;
}

Stream::~Stream() {
  cudaStreamSynchronize(as_stream(stream_));  // destructors must not throw: errors are dropped
  cudaStreamDestroy(as_stream(stream_));
}

void Stream::synchronize() const { DK_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream_))); }

bool Stream::query() const {
  const cudaError_t status = cudaStreamQuery(as_stream(stream_));
  if (status == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  DK_CUDA_CHECK(status);
  return true;
}

Event::Event(int device, bool enable_timing) : device_(device), timing_(enable_timing) {
  DeviceGuard guard(device);
  cudaEvent_t event = nullptr;
  DK_CUDA_CHECK(cudaEventCreateWithFlags(&event, enable_timing ? cudaEventDefault : cudaEventDisableTiming));
  event_ = event;
}

Event::~Event() { cudaEventDestroy(static_cast<cudaEvent_t>(event_)); }

void Event::record(void* stream) {
  DeviceGuard guard(device_);
  DK_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), as_stream(stream)));
  recorded_ = true;
}

void Event::synchronize() const { DK_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_))); }

bool Event::query() const {
  const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (status == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  DK_CUDA_CHECK(status);
  return true;
}

void Event::wait_on(void* stream) const {
  DK_CUDA_CHECK(cudaStreamWaitEvent(as_stream(stream), static_cast<cudaEvent_t>(event_), 0));
}

float Event::elapsed_ms(const Event& end) const {
  if (!timing_ || !end.timing_)
    throw std::invalid_argument("elapsed_time needs two events created with enable_timing=True");
  if (!recorded_ || !end.recorded_) throw std::invalid_argument("elapsed_time needs two recorded events");
  float ms = 0;
  DK_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(event_), static_cast<cudaEvent_t>(end.event_)));
  return ms;
}

void synchronize_device(int device) {
  DeviceGuard guard(device);
  DK_CUDA_CHECK(cudaDeviceSynchronize());
}

void order_after(int device, void* producer, void* consumer) {
  if (producer == consumer) return;
  Event ready(device, false);
  ready.record(producer);
  ready.wait_on(consumer);
}

}  // namespace deepkern::cuda
