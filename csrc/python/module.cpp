// deepkern._C: pybind11 bindings of the CPU kernels, one file per op family (bind_*.cpp), each
// checking what it hands a kernel by one policy (boundary.h).
#include <pybind11/pybind11.h>

namespace deepkern::python {
namespace py = pybind11;
void bind_core(py::module_& m);
void bind_activation(py::module_& m);
void bind_gemm(py::module_& m);
void bind_conv(py::module_& m);
void bind_dropout(py::module_& m);
void bind_pool(py::module_& m);
void bind_norm(py::module_& m);
void bind_lstm(py::module_& m);
void bind_optim(py::module_& m);
void bind_roofline(py::module_& m);
void bind_softmax(py::module_& m);
void bind_attention(py::module_& m);
void bind_cast(py::module_& m);
}  // namespace deepkern::python

PYBIND11_MODULE(_C, m) {
  using namespace deepkern::python;
  m.doc() = "deepkern CPU kernels";
  bind_core(m);
  bind_activation(m);
  bind_gemm(m);
  bind_conv(m);
  bind_dropout(m);
  bind_pool(m);
  bind_norm(m);
  bind_lstm(m);
  bind_optim(m);
  bind_roofline(m);
  bind_softmax(m);
  bind_attention(m);
  bind_cast(m);
}
