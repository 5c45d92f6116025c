// deepkern._cuda, dropout on device arrays: dropout and dropout_backward with the arguments and
// checks of deepkern._C's (bind_dropout.cpp, dropout_binding.h), the kernels of cuda/dropout.
//
// Every binding's contract: x, grad, y and out are C-contiguous device arrays of one float dtype and
// element count (the first argument's) on its device; mask is a C-contiguous bool device array of
// that count; the outputs are written, never read, and overlap no other argument. The kernels are
// queued on the device's current stream.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cuda/dropout/dropout.h"
#include "python/bind_cuda.h"
#include "python/cuda_arg_checks.h"
#include "python/dropout_binding.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

void dropout(const py::object& x, const py::object& y, const py::object& mask, double p, const py::object& seed,
             const py::object& offset) {
  constexpr const char* op = "dropout";
  p = dropout_probability(op, p);
  const std::uint64_t s = dropout_uint64(op, "seed", seed), o = dropout_uint64(op, "offset", offset);
  const cuda::DeviceArray& xa = float_device_array(x, op, "x");
  const NamedArray xn{"x", &xa};
  const cuda::DeviceArray& ya = device_array_like(y, op, "y", xa.dtype, xn, xa.size(), {xn});
  const cuda::DeviceArray& ma =
      device_array_like(mask, op, "mask", cuda::DType::bool_, xn, xa.size(), {xn, {"y", &ya}});
  auto* mp = typed_out<std::uint8_t>(ma);
  on_current_stream(xa.device, [&](cudaStream_t stream) {
    if (xa.dtype == cuda::DType::float32)
      cuda::launch_dropout(typed<float>(xa), typed_out<float>(ya), mp, xa.size(), p, s, o, stream);
    else
      cuda::launch_dropout(typed<double>(xa), typed_out<double>(ya), mp, xa.size(), p, s, o, stream);
  });
}

void dropout_backward(const py::object& grad, const py::object& mask, const py::object& out, double p) {
  constexpr const char* op = "dropout_backward";
  p = dropout_probability(op, p);
  const cuda::DeviceArray& ga = float_device_array(grad, op, "grad");
  const NamedArray gn{"grad", &ga};
  const cuda::DeviceArray& ma = device_array_like(mask, op, "mask", cuda::DType::bool_, gn, ga.size(), {});
  const cuda::DeviceArray& oa = device_array_like(out, op, "out", ga.dtype, gn, ga.size(), {gn, {"mask", &ma}});
  const auto* mp = typed<std::uint8_t>(ma);
  on_current_stream(ga.device, [&](cudaStream_t stream) {
    if (ga.dtype == cuda::DType::float32)
      cuda::launch_dropout_backward(typed<float>(ga), mp, typed_out<float>(oa), ga.size(), p, stream);
    else
      cuda::launch_dropout_backward(typed<double>(ga), mp, typed_out<double>(oa), ga.size(), p, stream);
  });
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_dropout(py::module_& m) {
  using namespace deepkern::python;
  m.def("dropout", &dropout, py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("p"), py::arg("seed"),
        py::arg("offset"),
        "mask = element kept (Philox4x32-10, the CPU's stream), y = x * mask / (1 - p), on the GPU.");
  m.def("dropout_backward", &dropout_backward, py::arg("grad"), py::arg("mask"), py::arg("out"), py::arg("p"),
        "out = grad * mask / (1 - p), on the GPU.");
}
