// deepkern._C's activations: relu, relu_backward, gelu, gelu_backward (csrc/cpu/activation).
// Each checks its arrays (one float dtype, C-contiguous, equal sizes, `out` writeable and
// overlapping no input; errors name the argument), releases the GIL and runs the kernel. The
// Python layer (deepkern.ops.activation) brings arrays of any layout to this form.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "cpu/activation/activation.h"

namespace py = pybind11;

namespace {

struct Named {
  const py::array& array;
  const char* name;
};

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Checks `inputs` and `out` as described at the top; returns true for float32, false for float64.
bool check_arrays(const char* op, std::initializer_list<Named> inputs, const py::array& out) {
  const py::array& first = inputs.begin()->array;
  const bool f32 = first.dtype().is(py::dtype::of<float>());
  if (!f32 && !first.dtype().is(py::dtype::of<double>()))
    throw py::type_error(std::string(op) + ": " + inputs.begin()->name + " must be float32 or float64, got dtype " +
                         dtype_name(first));
  const auto check = [&](const Named& a) {
    if (!a.array.dtype().is(first.dtype()))
      throw py::type_error(std::string(op) + ": " + a.name + " has dtype " + dtype_name(a.array) + ", " +
                           inputs.begin()->name + " has " + dtype_name(first));
    if (!(a.array.flags() & py::array::c_style))
      throw py::value_error(std::string(op) + ": " + a.name + " must be C-contiguous");
    if (a.array.size() != first.size())
      throw py::value_error(std::string(op) + ": " + a.name + " has " + std::to_string(a.array.size()) +
                            " elements, " + inputs.begin()->name + " has " + std::to_string(first.size()));
  };
  for (const Named& a : inputs) check(a);
  check({out, "out"});
  if (!out.writeable()) throw py::value_error(std::string(op) + ": out is read-only");
  const auto* lo = static_cast<const char*>(out.data());
  const auto bytes = static_cast<std::ptrdiff_t>(out.nbytes());
  for (const Named& a : inputs) {
    const auto* in = static_cast<const char*>(a.array.data());
    if (bytes > 0 && in < lo + bytes && lo < in + bytes)
      throw py::value_error(std::string(op) + ": out overlaps " + a.name);
  }
  return f32;
}

// Runs f(x, out) with the data pointers of the checked dtype (float32 when f32), without the GIL.
template <class F>
void run_typed(bool f32, const py::array& x, py::array& out, F&& f) {
  const void* xp = x.data();
  void* op = out.mutable_data();
  py::gil_scoped_release release;
  if (f32)
    f(static_cast<const float*>(xp), static_cast<float*>(op));
  else
    f(static_cast<const double*>(xp), static_cast<double*>(op));
}

deepkern::cpu::GeluApproximate approximation(bool tanh) {
  return tanh ? deepkern::cpu::GeluApproximate::tanh : deepkern::cpu::GeluApproximate::none;
}

void relu(const py::array& x, py::array& out) {
  const bool f32 = check_arrays("relu", {{x, "x"}}, out);
  const int64_t n = x.size();
  run_typed(f32, x, out, [&](auto xp, auto op) { deepkern::cpu::relu(xp, op, n); });
}

void relu_backward(const py::array& grad, const py::array& x, py::array& out) {
  const bool f32 = check_arrays("relu_backward", {{grad, "grad"}, {x, "x"}}, out);
  const void* gp = grad.data();
  const int64_t n = x.size();
  run_typed(f32, x, out, [&](auto xp, auto op) {
    deepkern::cpu::relu_backward(static_cast<decltype(xp)>(gp), xp, op, n);
  });
}

void gelu(const py::array& x, py::array& out, bool approximate_tanh) {
  const bool f32 = check_arrays("gelu", {{x, "x"}}, out);
  const int64_t n = x.size();
  run_typed(f32, x, out, [&](auto xp, auto op) { deepkern::cpu::gelu(xp, op, n, approximation(approximate_tanh)); });
}

void gelu_backward(const py::array& grad, const py::array& x, py::array& out, bool approximate_tanh) {
  const bool f32 = check_arrays("gelu_backward", {{grad, "grad"}, {x, "x"}}, out);
  const void* gp = grad.data();
  const int64_t n = x.size();
  run_typed(f32, x, out, [&](auto xp, auto op) {
    deepkern::cpu::gelu_backward(static_cast<decltype(xp)>(gp), xp, op, n, approximation(approximate_tanh));
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
