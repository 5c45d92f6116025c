// deepkern._cuda, activations on device arrays: relu, relu_backward, gelu and gelu_backward with
// the arguments and checks of deepkern._C's (bind_activation.cpp), the kernels of cuda/activation.
//
// Every binding's contract: x, grad and out are C-contiguous device arrays of one float dtype (x's),
// x's element count (any shape) and x's device; out is written, never read, and overlaps no other
// argument. The kernels are queued on the device's current stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/activation/activation.h"
#include "cuda/check.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

using cuda::ActivationOp;

using deepkern::cuda::shape_text;

// The device array `name` of call `op`, C-contiguous; with `x`, also of x's dtype, device and element
// count. TypeError / ValueError naming the argument otherwise.
const cuda::DeviceArray& checked(py::handle obj, const char* op, const char* name, const cuda::DeviceArray* x) {
  const cuda::DeviceArray& a = device_array(obj, op, name);
  const std::string where = std::string(op) + ": " + name;
  if (x == nullptr && a.dtype != cuda::DType::float32 && a.dtype != cuda::DType::float64)
    throw py::type_error(where + " must be float32 or float64, got dtype " + cuda::info(a.dtype).name);
  if (x != nullptr && a.dtype != x->dtype)
    throw py::type_error(where + " has dtype " + cuda::info(a.dtype).name + " but x has " + cuda::info(x->dtype).name);
  if (x != nullptr && a.device != x->device)
    throw py::value_error(where + " is on cuda:" + std::to_string(a.device) +
                          " but x is on cuda:" + std::to_string(x->device));
  if (!a.is_contiguous())
    throw py::value_error(where + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                          " for shape " + shape_text(a.shape));
  if (x != nullptr && a.size() != x->size())
    throw py::value_error(where + " must have x's " + std::to_string(x->size()) + " elements (x has shape " +
                          shape_text(x->shape) + "), got shape " + shape_text(a.shape));
  return a;
}

// ValueError when out's bytes overlap input `name`'s (both contiguous).
void check_apart(const char* op, const cuda::DeviceArray& out, const cuda::DeviceArray& input, const char* name) {
  if (out.nbytes() == 0 || input.nbytes() == 0) return;
  if (out.data < input.data + input.nbytes() && input.data < out.data + out.nbytes())
    throw py::value_error(std::string(op) + ": out overlaps " + name + "; pass a separate output array");
}

// Runs `op` on the checked arrays (grad nullptr for the forward ops) on x's device and its current
// stream, without the GIL.
void activation_call(const char* op, ActivationOp code, const py::object* grad, const py::object& x,
                     const py::object& out) {
  const cuda::DeviceArray& xa = checked(x, op, "x", nullptr);
  const cuda::DeviceArray* ga = grad ? &checked(*grad, op, "grad", &xa) : nullptr;
  const cuda::DeviceArray& oa = checked(out, op, "out", &xa);
  check_apart(op, oa, xa, "x");
  if (ga) check_apart(op, oa, *ga, "grad");
  const cuda::DeviceGuard guard(xa.device);
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(xa.device));
  const char* g = ga ? ga->data : nullptr;
  py::gil_scoped_release release;
  if (xa.dtype == cuda::DType::float32)
    cuda::launch_activation(code, reinterpret_cast<const float*>(g), reinterpret_cast<const float*>(xa.data),
                            reinterpret_cast<float*>(oa.data), xa.size(), stream);
  else
    cuda::launch_activation(code, reinterpret_cast<const double*>(g), reinterpret_cast<const double*>(xa.data),
                            reinterpret_cast<double*>(oa.data), xa.size(), stream);
}

void relu(const py::object& x, const py::object& out) { activation_call("relu", ActivationOp::relu, nullptr, x, out); }

void relu_backward(const py::object& grad, const py::object& x, const py::object& out) {
  activation_call("relu_backward", ActivationOp::relu_backward, &grad, x, out);
}

void gelu(const py::object& x, const py::object& out, bool approximate_tanh) {
  activation_call("gelu", approximate_tanh ? ActivationOp::gelu_tanh : ActivationOp::gelu, nullptr, x, out);
}

void gelu_backward(const py::object& grad, const py::object& x, const py::object& out, bool approximate_tanh) {
  activation_call("gelu_backward", approximate_tanh ? ActivationOp::gelu_tanh_backward : ActivationOp::gelu_backward,
                  &grad, x, out);
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_activation(py::module_& m) {
  using namespace deepkern::python;
  m.def("relu", &relu, py::arg("x"), py::arg("out"), "out = max(x, 0) (NaN kept), on the GPU.");
  m.def("relu_backward", &relu_backward, py::arg("grad"), py::arg("x"), py::arg("out"),
        "out = grad where x > 0 (or NaN), else 0, on the GPU.");
  m.def("gelu", &gelu, py::arg("x"), py::arg("out"), py::arg("approximate_tanh"),
        "out = x Phi(x), or PyTorch's tanh approximation, on the GPU.");
  m.def("gelu_backward", &gelu_backward, py::arg("grad"), py::arg("x"), py::arg("out"), py::arg("approximate_tanh"),
        "out = grad * d gelu / dx, on the GPU.");
}
