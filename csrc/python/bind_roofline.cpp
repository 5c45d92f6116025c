// deepkern._C, roofline: this machine's FMA throughput and copy bandwidth (deepkern.benchmark).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/cpu_features.h"
#include "cpu/roofline/roofline.h"

namespace deepkern::python {

namespace py = pybind11;

void bind_roofline(py::module_& m) {
  // Single-precision GFLOP/s of `isa` (one this CPU supports) on threads >= 1 for about `seconds`.
  m.def(
      "measure_fma_gflops",
      [](const std::string& isa, int threads, double seconds) {
        const Isa chosen = isa_from_name(isa);
        if (static_cast<int>(chosen) > static_cast<int>(detected_isa()))
          throw std::invalid_argument("isa '" + isa + "' is not supported by this CPU");
        if (threads < 1) throw std::invalid_argument("threads must be >= 1");
        py::gil_scoped_release release;
        return cpu::measure_fma_gflops(chosen, threads, seconds);
      },
      py::arg("isa"), py::arg("threads"), py::arg("seconds") = 0.2);
  // GB/s of copies between two buffers of bytes >= 64 on threads >= 1, the median of `repeats`.
  m.def(
      "measure_copy_gbps",
      [](int64_t bytes, int threads, int repeats) {
        if (bytes < 64 || threads < 1) throw std::invalid_argument("bytes must be >= 64 and threads >= 1");
        py::gil_scoped_release release;
        return cpu::measure_copy_gbps(bytes, threads, repeats);
      },
      py::arg("bytes"), py::arg("threads"), py::arg("repeats") = 5);
}

}  // namespace deepkern::python
