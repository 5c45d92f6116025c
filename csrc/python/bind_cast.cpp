// deepkern._C, casts: float32 <-> bfloat16 (deepkern.ops._validate.astype).
//
// Contract: src is a C-contiguous float32 or bfloat16 array, any shape; out a C-contiguous array of
// the other dtype with src's element count (any shape), written, never read, overlapping src
// nowhere.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cpu/cast/cast.h"
#include "python/boundary.h"

namespace deepkern::python {
namespace {

// Converts the checked arrays of a call from `From` to `To`, without the GIL.
template <class From, class To>
void convert_call(const py::object& src, const py::object& out, int64_t n) {
  KernelArrays<From> arrays("cast", "src");
  const From* from = arrays.input(src, "src", Extent::elements(n));
  To* to = arrays.template output<To>(out, "out", Extent::elements(n));
  py::gil_scoped_release release;
  cpu::convert(from, n, to);
}

void cast(const py::object& src, const py::object& out) {
  const py::array arr = as_array(src, "cast", "src");
  if (is_bfloat16(src)) return convert_call<cpu::bf16, float>(src, out, arr.size());
  if (arr.dtype().equal(dtype_of<float>())) return convert_call<float, cpu::bf16>(src, out, arr.size());
  throw py::type_error("cast: src must be float32 or bfloat16, got dtype " + std::string(py::str(arr.dtype())));
}

}  // namespace

void bind_cast(py::module_& m) {
  m.def("cast", &cast, py::arg("src"), py::arg("out"),
        "out = src converted between float32 and bfloat16 (to nearest even; NaN stays NaN).");
}

}  // namespace deepkern::python
