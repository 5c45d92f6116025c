// deepkern._C, roofline: this machine's FMA throughput and copy bandwidth (deepkern.benchmark).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/cpu_features.h"
#include "cpu/gemm_bf16/gemm_bf16.h"
#include "cpu/roofline/roofline.h"

namespace deepkern::python {

namespace py = pybind11;

namespace {

// Bounds of the measurements' arguments: a run longer than this would hold the caller for minutes,
// a larger thread count is not a machine, a larger buffer is not memory this process could have.
constexpr double kMaxSeconds = 60.0;
constexpr int kMaxThreads = 1 << 16;
constexpr int kMaxRepeats = 1000;
constexpr int64_t kMaxBytes = int64_t(1) << 40;

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw py::value_error(std::string(op) + ": " + what);
}

// A peak measurement's arguments: 1 to kMaxThreads threads, (0, kMaxSeconds] seconds.
void require_peak_run(const char* op, int threads, double seconds) {
  require(threads >= 1 && threads <= kMaxThreads, op,
          "threads must be between 1 and " + std::to_string(kMaxThreads) + ", got " + std::to_string(threads));
  require(seconds > 0 && seconds <= kMaxSeconds, op,
          "seconds must be in (0, " + std::to_string(int(kMaxSeconds)) + "], got " + std::to_string(seconds));
}

// Single-precision GFLOP/s of the active `isa` on `threads` for about `seconds`.
double fma_gflops(const std::string& isa, int threads, double seconds) {
  constexpr const char* op = "measure_fma_gflops";
  const Isa chosen = isa_from_name(isa);
  require(chosen == active_isa(), op,
          "isa must be the active ISA ('" + std::string(isa_name(active_isa())) + "'), got '" + isa + "'");
  require_peak_run(op, threads, seconds);
  py::gil_scoped_release release;
  return cpu::measure_fma_gflops(chosen, threads, seconds);
}

// The bfloat16 GEMM's peak GFLOP/s (its active tier's instruction) on `threads` for about `seconds`.
double bf16_gflops(int threads, double seconds) {
  constexpr const char* op = "measure_bf16_gflops";
  require_peak_run(op, threads, seconds);
  py::gil_scoped_release release;
  return cpu::measure_bf16_gflops(threads, seconds);
}

// GB/s of copies between two buffers of `bytes` on `threads`, the median of `repeats`.
double copy_gbps(int64_t bytes, int threads, int repeats) {
  constexpr const char* op = "measure_copy_gbps";
  require(bytes >= 64 && bytes <= kMaxBytes, op, "bytes must be between 64 and 2**40, got " + std::to_string(bytes));
  require(threads >= 1 && threads <= kMaxThreads, op,
          "threads must be between 1 and " + std::to_string(kMaxThreads) + ", got " + std::to_string(threads));
  require(repeats >= 1 && repeats <= kMaxRepeats, op,
          "repeats must be between 1 and " + std::to_string(kMaxRepeats) + ", got " + std::to_string(repeats));
  py::gil_scoped_release release;
  return cpu::measure_copy_gbps(bytes, threads, repeats);
}

}  // namespace

void bind_roofline(py::module_& m) {
  // Out-of-range arguments (an ISA other than the active one, NaN or huge seconds, absurd counts) are
  // a ValueError naming the argument.
  m.def("measure_fma_gflops", &fma_gflops, py::arg("isa"), py::arg("threads"), py::arg("seconds") = 0.2);
  m.def("measure_bf16_gflops", &bf16_gflops, py::arg("threads"), py::arg("seconds") = 0.2);
  m.def("measure_copy_gbps", &copy_gbps, py::arg("bytes"), py::arg("threads"), py::arg("repeats") = 5);
}

}  // namespace deepkern::python
