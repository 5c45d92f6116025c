// deepkern._cuda's memory, stream and event bindings (csrc/cuda/memory.h, stream.h).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <utility>
#include <vector>

#include "cuda/host_memory.h"
#include "cuda/memory.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"

namespace py = pybind11;
namespace dkc = deepkern::cuda;

namespace {

int device_or_current(std::optional<int> device) { return device ? *device : dkc::current_device(); }

// What `with stream:` replaced, per thread, innermost last: (device, previous current stream).
thread_local std::vector<std::pair<int, void*>> entered_streams;

}  // namespace

void bind_cuda_runtime(py::module_& m) {
  py::register_exception<dkc::OutOfMemory>(m, "OutOfMemoryError", PyExc_MemoryError);

  m.def(
      "memory_stats",
      [](std::optional<int> device) {
        const dkc::MemoryStats s = dkc::memory_stats(device_or_current(device));
        py::dict d;
        d["allocated"] = s.allocated;
        d["reserved"] = s.reserved;
        d["cuda_mallocs"] = s.cuda_mallocs;
        d["cache_hits"] = s.cache_hits;
        return d;
      },
      py::arg("device") = py::none(),
      "The caching allocator's counters for a device: allocated and reserved bytes, cudaMalloc calls, cache hits.");
  m.def(
      "mem_get_info", [](std::optional<int> device) { return dkc::mem_get_info(device_or_current(device)); },
      py::arg("device") = py::none(), "(free, total) bytes of the device, as the driver reports them.");
  m.def("empty_cache", &dkc::empty_cache, "Frees every cached block (blocks in use stay).");
  m.def(
      "pinned_memory_stats",
      [] {
        const dkc::PinnedStats s = dkc::pinned_stats();
        py::dict d;
        d["allocated"] = s.allocated;
        d["reserved"] = s.reserved;
        d["host_allocs"] = s.host_allocs;
        d["cache_hits"] = s.cache_hits;
        d["waiting_on_copies"] = s.waiting_on_copies;
        return d;
      },
      "The pinned host memory cache's counters: allocated and reserved bytes, cudaHostAlloc calls, cache hits, "
      "cached blocks passed over because a copy from them was still running.");
  m.def("empty_pinned_cache", &dkc::empty_pinned_cache,
        "Frees the cached pinned blocks that no array and no running copy uses.");
  m.def("rounded_size", &dkc::rounded_size, py::arg("nbytes"), "The allocator's size class of a request.");
  m.def(
      "synchronize",
      [](std::optional<int> device) {
        const int d = device_or_current(device);
        py::gil_scoped_release release;
        dkc::synchronize_device(d);
      },
      py::arg("device") = py::none(), "Waits for all work on the device.");
  m.def(
      "current_stream",
      [](std::optional<int> device) {
        return reinterpret_cast<std::uintptr_t>(dkc::current_stream(device_or_current(device)));
      },
      py::arg("device") = py::none(),
      "The handle of this thread's current stream of the device (0: the default stream).");

  py::class_<dkc::Stream>(m, "Stream", R"doc(
A CUDA stream. ``with stream:`` makes deepkern queue this thread's work for the stream's device on
it; work already queued on the default stream runs before the stream's work.
)doc")
      .def(py::init([](std::optional<int> device) { return std::make_unique<dkc::Stream>(device_or_current(device)); }),
           py::arg("device") = py::none())
      .def_property_readonly("cuda_stream",
                             [](const dkc::Stream& s) { return reinterpret_cast<std::uintptr_t>(s.handle()); })
      .def_property_readonly("device_index", &dkc::Stream::device)
      .def(
          "synchronize",
          [](const dkc::Stream& s) {
            py::gil_scoped_release release;
            s.synchronize();
          },
          "Waits for the stream's work.")
      .def("query", &dkc::Stream::query, "Whether all the stream's work has finished.")
      .def(
          "wait_event", [](const dkc::Stream& s, const dkc::Event& e) { e.wait_on(s.handle()); }, py::arg("event"),
          "Work queued on this stream from now on waits for `event`.")
      .def(
          "wait_stream",
          [](const dkc::Stream& s, const dkc::Stream& other) {
            dkc::order_after(s.device(), other.handle(), s.handle());
          },
          py::arg("other"), "Work queued on this stream from now on waits for the work queued on `other` so far.")
      .def("__enter__",
           [](py::object self) {
             const auto& s = self.cast<const dkc::Stream&>();
             entered_streams.emplace_back(s.device(), dkc::current_stream(s.device()));
             dkc::set_current_stream(s.device(), s.handle());
             return self;
           })
      .def("__exit__", [](const dkc::Stream&, const py::args&) {
        if (entered_streams.empty()) return;
        const auto [device, previous] = entered_streams.back();
        entered_streams.pop_back();
        dkc::set_current_stream(device, previous);
      });

  py::class_<dkc::Event>(m, "Event", "A CUDA event; with enable_timing=True, elapsed_time measures between two.")
      .def(py::init([](bool enable_timing, std::optional<int> device) {
             return std::make_unique<dkc::Event>(device_or_current(device), enable_timing);
           }),
           py::arg("enable_timing") = false, py::arg("device") = py::none())
      .def(
          "record",
          [](dkc::Event& e, const dkc::Stream* stream) {
            e.record(stream ? stream->handle() : dkc::current_stream(e.device()));
          },
          py::arg("stream") = nullptr, "Records the event on `stream` (default: the current stream).")
      .def(
          "synchronize",
          [](const dkc::Event& e) {
            py::gil_scoped_release release;
            e.synchronize();
          },
          "Waits until the work before the recorded event has finished.")
      .def("query", &dkc::Event::query, "Whether the work before the recorded event has finished.")
      .def(
          "wait",
          [](const dkc::Event& e, const dkc::Stream* stream) {
            e.wait_on(stream ? stream->handle() : dkc::current_stream(e.device()));
          },
          py::arg("stream") = nullptr, "Work queued on `stream` (default: the current one) from now on waits for it.")
      .def("elapsed_time", &dkc::Event::elapsed_ms, py::arg("end"),
           "Milliseconds from this event to `end`, both recorded with enable_timing=True and complete.");
}
