// deepkern._C, activations: relu and gelu, forward and backward (deepkern.ops.activation).
//
// Every binding's contract: x, grad and out are C-contiguous arrays of one float dtype (x's:
// float32 or float64, and for relu and relu_backward bfloat16 too) and x's element count, any
// shape; out is written, never read, and overlaps no other argument.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/activation/activation.h"
#include "python/boundary.h"

namespace deepkern::python {
namespace {

cpu::GeluApproximate approximation(bool tanh) { return tanh ? cpu::GeluApproximate::tanh : cpu::GeluApproximate::none; }

// Runs kernel(grad or nullptr, x, out, n) on the checked arrays of a call named `op`, without the GIL
// (for bfloat16 x too where kTakesBf16: only then is the kernel instantiated for it).
template <bool kTakesBf16 = false, class Kernel>
void activation_call(const char* op, const py::object* grad, const py::object& x, const py::object& out,
                     Kernel&& kernel) {
  auto run = [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const int64_t n = as_array(x, op, "x").size();
    const T* xp = arrays.input(x, "x", Extent::elements(n));
    const T* gp = grad ? arrays.input(*grad, "grad", Extent::elements(n)) : nullptr;
    T* outp = arrays.output(out, "out", Extent::elements(n));
    py::gil_scoped_release release;
    kernel(gp, xp, outp, n);
  };
  if constexpr (kTakesBf16) {
    if (is_bfloat16(x)) return run(cpu::bf16{});
  }
  dispatch_float(x, op, "x", run);
}

void relu(const py::object& x, const py::object& out) {
  activation_call<true>("relu", nullptr, x, out, [](auto, auto xp, auto outp, int64_t n) { cpu::relu(xp, outp, n); });
}

void relu_backward(const py::object& grad, const py::object& x, const py::object& out) {
  activation_call<true>("relu_backward", &grad, x, out,
                        [](auto gp, auto xp, auto outp, int64_t n) { cpu::relu_backward(gp, xp, outp, n); });
}

void gelu(const py::object& x, const py::object& out, bool approximate_tanh) {
  activation_call("gelu", nullptr, x, out, [&](auto, auto xp, auto outp, int64_t n) {
    cpu::gelu(xp, outp, n, approximation(approximate_tanh));
  });
}

void gelu_backward(const py::object& grad, const py::object& x, const py::object& out, bool approximate_tanh) {
  activation_call("gelu_backward", &grad, x, out, [&](auto gp, auto xp, auto outp, int64_t n) {
    cpu::gelu_backward(gp, xp, outp, n, approximation(approximate_tanh));
  });
}

}  // namespace

void bind_activation(py::module_& m) {
  m.def("relu", &relu, py::arg("x"), py::arg("out"), "out = max(x, 0) (NaN kept).");
  m.def("relu_backward", &relu_backward, py::arg("grad"), py::arg("x"), py::arg("out"),
        "out = grad where x > 0 (or NaN), else 0.");
  m.def("gelu", &gelu, py::arg("x"), py::arg("out"), py::arg("approximate_tanh"),
        "out = x Phi(x), or PyTorch's tanh approximation.");
  m.def("gelu_backward", &gelu_backward, py::arg("grad"), py::arg("x"), py::arg("out"), py::arg("approximate_tanh"),
        "out = grad * d gelu / dx.");
}

}  // namespace deepkern::python
