// deepkern._C, core: build facts, the CPU, the kernel ISA and the thread count.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/isa_dispatch.h"
#include "core/threading.h"

namespace deepkern::python {

namespace py = pybind11;

void bind_core(py::module_& m) {
  m.attr("__version__") = DEEPKERN_VERSION;
  m.attr("compiler") = DEEPKERN_COMPILER;
  // The kernel ISAs this build contains (a portable-only build, as on other processors: generic alone).
#if DEEPKERN_X86
  m.attr("compiled_isas") = py::make_tuple("amx", "avx512", "avx2", "generic");
#else
  m.attr("compiled_isas") = py::make_tuple("generic");
#endif
  // How the build was configured (CMake options).
  py::dict options;
  options["portable_only"] = !DEEPKERN_X86;
  options["cuda"] = static_cast<bool>(DEEPKERN_CUDA_REQUESTED);
  options["sanitize"] = static_cast<bool>(DEEPKERN_SANITIZED);
  options["amx_emulation"] = amx_emulated();
  m.attr("build_options") = options;

  m.def("cpu_brand", &cpu_brand);
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); }, "Best kernel ISA this CPU supports.");
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); }, "Kernel ISA in use.");
  // An unknown name is a ValueError (std::invalid_argument) and keeps the active ISA.
  m.def(
      "set_active_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); }, py::arg("isa"),
      "Choose the kernel ISA ('amx', 'avx512', 'avx2', 'generic').");
  m.def(
      "isa_families",
      [] {
        std::vector<std::string> names;
        for (int f = 0; f < static_cast<int>(IsaFamily::count); ++f)
          names.emplace_back(family_name(static_cast<IsaFamily>(f)));
        return names;
      },
      "The kernel families with per-ISA code.");
  m.def(
      "last_isa",
      [](const std::string& family) -> py::object {
        const char* isa = last_isa_used(family_from_name(family.c_str()));
        return isa ? py::object(py::str(isa)) : py::object(py::none());
      },
      py::arg("family"), "The ISA the family's last kernel call ran on (None if it has not run).");
  m.def("reset_isa_records", &reset_isa_records, "Forget which ISA each family ran on last.");
  // n < 1 is a ValueError naming n.
  m.def("get_num_threads", &num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("set_num_threads(n): num_threads must be >= 1, got " + std::to_string(n));
        set_num_threads(n);
      },
      py::arg("n"));
}

}  // namespace deepkern::python
