// deepkern._C, dropout from the Philox stream (deepkern.ops.dropout; cpu/dropout/dropout.h).
//
// Every binding's contract: x, grad, out and y are C-contiguous arrays of one float dtype (x's, or
// grad's) and its element count, any shape; mask is a C-contiguous bool array of that count; the
// outputs are written, never read, and overlap no other argument. p in [0, 1]; seed and offset in
// [0, 2**64).
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/dropout/dropout.h"
#include "python/boundary.h"
#include "python/dropout_binding.h"

namespace deepkern::python {
namespace {

void dropout(const py::object& x, const py::object& y, const py::object& mask, double p, const py::object& seed,
             const py::object& offset) {
  constexpr const char* op = "dropout";
  p = dropout_probability(op, p);
  const std::uint64_t s = dropout_uint64(op, "seed", seed), o = dropout_uint64(op, "offset", offset);
  dispatch_float(x, op, "x", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const int64_t n = as_array(x, op, "x").size();
    const T* xp = arrays.input(x, "x", Extent::elements(n));
    T* yp = arrays.output(y, "y", Extent::elements(n));
    bool* mp = arrays.template output<bool>(mask, "mask", Extent::elements(n));
    py::gil_scoped_release release;
    cpu::dropout(xp, yp, reinterpret_cast<std::uint8_t*>(mp), n, p, s, o);
  });
}

void dropout_backward(const py::object& grad, const py::object& mask, const py::object& out, double p) {
  constexpr const char* op = "dropout_backward";
  p = dropout_probability(op, p);
  dispatch_float(grad, op, "grad", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "grad");
    const int64_t n = as_array(grad, op, "grad").size();
    const T* gp = arrays.input(grad, "grad", Extent::elements(n));
    const bool* mp = arrays.template input<bool>(mask, "mask", Extent::elements(n));
    T* outp = arrays.output(out, "out", Extent::elements(n));
    py::gil_scoped_release release;
    cpu::dropout_backward(gp, reinterpret_cast<const std::uint8_t*>(mp), outp, n, p);
  });
}

}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout", &dropout, py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("p"), py::arg("seed"),
        py::arg("offset"),
        "mask = element kept (Philox4x32-10 of (seed, offset + i // 4), p the drop probability), "
        "y = x * mask / (1 - p); consumes ceil(x.size / 4) counters.");
  m.def("dropout_backward", &dropout_backward, py::arg("grad"), py::arg("mask"), py::arg("out"), py::arg("p"),
        "out = grad * mask / (1 - p).");
}

}  // namespace deepkern::python
