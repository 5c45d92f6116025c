// deepkern._cuda, dropout on device arrays: dropout and dropout_backward with the arguments and
// checks of deepkern._C's (bind_dropout.cpp, dropout_binding.h), the kernels of cuda/dropout.
//
// Every binding's contract: x, grad, y and out are C-contiguous device arrays of one float dtype and
// element count (the first argument's) on its device; mask is a C-contiguous bool device array of
// that count; the outputs are written, never read, and overlap no other argument. The kernels are
// queued on the device's current stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/dropout/dropout.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"
#include "python/dropout_binding.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

using Named = std::pair<const char*, const cuda::DeviceArray*>;

std::string shape_text(const std::vector<int64_t>& shape) { return py::str(py::tuple(py::cast(shape))); }

// The first argument `name` of `op`: a C-contiguous float32 or float64 device array.
const cuda::DeviceArray& first_array(py::handle obj, const char* op, const char* name) {
  const cuda::DeviceArray& a = device_array(obj, op, name);
  if (a.dtype != cuda::DType::float32 && a.dtype != cuda::DType::float64)
    throw py::type_error(std::string(op) + ": " + name + " must be float32 or float64, got dtype " +
                         cuda::info(a.dtype).name);
  if (!a.is_contiguous())
    throw py::value_error(std::string(op) + ": " + name + " must be C-contiguous, got element strides " +
                          shape_text(a.strides) + " for shape " + shape_text(a.shape));
  return a;
}

// Argument `name` of `op`: a C-contiguous device array of `dtype`, on first's device, with first's
// element count, sharing no memory with the arrays of `apart`. TypeError / ValueError otherwise.
const cuda::DeviceArray& other_array(py::handle obj, const char* op, const char* name, cuda::DType dtype,
                                     const Named& first, std::initializer_list<Named> apart) {
  const cuda::DeviceArray& a = device_array(obj, op, name);
  const std::string where = std::string(op) + ": " + name;
  if (a.dtype != dtype)
    throw py::type_error(where + " must have dtype " + cuda::info(dtype).name + ", got " + cuda::info(a.dtype).name);
  if (a.device != first.second->device)
    throw py::value_error(where + " is on cuda:" + std::to_string(a.device) + " but " + first.first +
                          " is on cuda:" + std::to_string(first.second->device));
  if (!a.is_contiguous())
    throw py::value_error(where + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                          " for shape " + shape_text(a.shape));
  if (a.size() != first.second->size())
    throw py::value_error(where + " must have " + first.first + "'s " + std::to_string(first.second->size()) +
                          " elements (" + first.first + " has shape " + shape_text(first.second->shape) +
                          "), got shape " + shape_text(a.shape));
  for (const Named& other : apart) {
    const cuda::DeviceArray& b = *other.second;
    if (a.nbytes() > 0 && b.nbytes() > 0 && a.data < b.data + b.nbytes() && b.data < a.data + a.nbytes())
      throw py::value_error(where + " overlaps " + other.first + "; pass separate arrays");
  }
  return a;
}

template <class T>
const T* typed(const cuda::DeviceArray& a) {
  return reinterpret_cast<const T*>(a.data);
}
template <class T>
T* typed_out(const cuda::DeviceArray& a) {
  return reinterpret_cast<T*>(a.data);
}

void dropout(const py::object& x, const py::object& y, const py::object& mask, double p, const py::object& seed,
             const py::object& offset) {
  constexpr const char* op = "dropout";
  p = dropout_probability(op, p);
  const std::uint64_t s = dropout_uint64(op, "seed", seed), o = dropout_uint64(op, "offset", offset);
  const cuda::DeviceArray& xa = first_array(x, op, "x");
  const Named xn{"x", &xa};
  const cuda::DeviceArray& ya = other_array(y, op, "y", xa.dtype, xn, {xn});
  const cuda::DeviceArray& ma = other_array(mask, op, "mask", cuda::DType::bool_, xn, {xn, {"y", &ya}});
  const cuda::DeviceGuard guard(xa.device);
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(xa.device));
  auto* mp = typed_out<std::uint8_t>(ma);
  py::gil_scoped_release release;
  if (xa.dtype == cuda::DType::float32)
    cuda::launch_dropout(typed<float>(xa), typed_out<float>(ya), mp, xa.size(), p, s, o, stream);
  else
    cuda::launch_dropout(typed<double>(xa), typed_out<double>(ya), mp, xa.size(), p, s, o, stream);
}

void dropout_backward(const py::object& grad, const py::object& mask, const py::object& out, double p) {
  constexpr const char* op = "dropout_backward";
  p = dropout_probability(op, p);
  const cuda::DeviceArray& ga = first_array(grad, op, "grad");
  const Named gn{"grad", &ga};
  const cuda::DeviceArray& ma = other_array(mask, op, "mask", cuda::DType::bool_, gn, {});
  const cuda::DeviceArray& oa = other_array(out, op, "out", ga.dtype, gn, {gn, {"mask", &ma}});
  const cuda::DeviceGuard guard(ga.device);
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(ga.device));
  const auto* mp = typed<std::uint8_t>(ma);
  py::gil_scoped_release release;
  if (ga.dtype == cuda::DType::float32)
    cuda::launch_dropout_backward(typed<float>(ga), mp, typed_out<float>(oa), ga.size(), p, stream);
  else
    cuda::launch_dropout_backward(typed<double>(ga), mp, typed_out<double>(oa), ga.size(), p, stream);
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
