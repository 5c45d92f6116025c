// deepkern._cuda, convolution: conv2d forward and its two backward passes on device arrays, with
// the arguments of deepkern._C's (bind_conv.cpp) plus the precision, the kernels of cuda/conv.
//
// Every binding's contract: as deepkern._C's (the shapes checked by the same conv_shape), on
// C-contiguous DeviceArrays of one device and one dtype: float32 for precision 'fp32' (the CUDA
// cores) or 'tf32' (the tensor cores on TF32-rounded inputs), bfloat16 for 'bf16'. Outputs are
// written, never read, and overlap no other argument. The work is queued on the current stream of
// the arrays' device; the call returns at once.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cuda/check.h"
#include "cuda/conv/conv.h"
#include "cuda/memory.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/conv_shape.h"
#include "python/cuda_array.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

using Pair = std::pair<int64_t, int64_t>;

// One array argument of a call: its name, and the array or nullptr (None, where allowed).
struct Arg {
  const char* name;
  const cuda::DeviceArray* array;
};

Arg arg(const py::object& obj, const char* op, const char* name, bool optional = false) {
  if (optional && obj.is_none()) return {name, nullptr};
  return {name, &device_array(obj, op, name)};
}

cuda::GemmPrecision precision_of(const char* op, const std::string& precision) {
  if (precision == "fp32") return cuda::GemmPrecision::fp32;
  if (precision == "tf32") return cuda::GemmPrecision::tf32;
  if (precision == "bf16") return cuda::GemmPrecision::bf16;
  throw py::value_error(std::string(op) + ": precision must be 'fp32', 'tf32' or 'bf16', got '" + precision + "'");
}

// The checked call: the shape (conv_shape on the x-, w- and y-shaped arguments), every argument of
// the precision's dtype, on the first one's device, C-contiguous and of its exact extent, the
// outputs apart from every other argument. `shaped` are the x, w and y roles; `vectors` the (K,)
// arrays; `outputs` names which arguments are written.
struct ConvCall {
  cpu::Conv2dShape shape;
  cuda::GemmPrecision precision;
  int device;

  ConvCall(const char* op, const std::string& precision_name, Arg x, Arg w, Arg y, std::vector<Arg> vectors,
           std::vector<const char*> outputs, const ConvOptions& o)
      : precision(precision_of(op, precision_name)), device(x.array->device) {
    const cuda::DType dtype = precision == cuda::GemmPrecision::bf16 ? cuda::DType::bfloat16 : cuda::DType::float32;
    const std::string where = std::string(op) + ": ";
    const char* layouts[] = {"(N, C, H, W)", "(K, C/groups, R, S)", "(N, K, P, Q)"};
    const Arg shaped[] = {x, w, y};
    for (int i = 0; i < 3; ++i)
      if (shaped[i].array->ndim() != 4)
        throw py::value_error(where + shaped[i].name + " must be 4-D " + layouts[i] + ", got shape " +
                              shape_str(shaped[i].array->shape));
    shape = conv_shape(op, {x.name, x.array->shape}, {w.name, w.array->shape}, {y.name, y.array->shape}, o);
    if (!cuda::conv2d_indices_fit(shape))
      throw py::value_error(where + "sizes too large for the GPU kernels' 32-bit indices: " + x.name + " " +
                            shape_str(x.array->shape) + ", " + w.name + " " + shape_str(w.array->shape) + ", " +
                            y.name + " " + shape_str(y.array->shape));
    std::vector<Arg> all = {x, w, y};
    for (const Arg& v : vectors) {
      if (v.array == nullptr) continue;
      if (v.array->shape != Shape{shape.out_channels})
        throw py::value_error(where + v.name + " must have shape (" + std::to_string(shape.out_channels) +
                              ",) (one per output channel), got " + shape_str(v.array->shape));
      all.push_back(v);
    }
    for (const Arg& a : all) {
      if (a.array->dtype != dtype)
        throw py::type_error(where + a.name + " must have dtype " + cuda::info(dtype).name + " for precision '" +
                             precision_name + "', got " + cuda::info(a.array->dtype).name);
      if (a.array->device != device)
        throw py::value_error(where + a.name + " is on cuda:" + std::to_string(a.array->device) + " but " + x.name +
                              " is on cuda:" + std::to_string(device));
      if (!a.array->is_contiguous())
        throw py::value_error(where + a.name + " must be C-contiguous, got element strides " +
                              shape_str(a.array->strides) + " for shape " + shape_str(a.array->shape));
    }
    for (std::size_t i = 0; i < all.size(); ++i) {
      bool written = false;
      for (const char* name : outputs) written = written || std::string(name) == all[i].name;
      for (std::size_t j = 0; written && j < all.size(); ++j)
        if (j != i) check_apart(where, all[i], all[j]);
    }
  }

  static void check_apart(const std::string& where, const Arg& out, const Arg& other) {
    const cuda::DeviceArray &a = *out.array, &b = *other.array;
    if (a.nbytes() == 0 || b.nbytes() == 0) return;
    if (a.data < b.data + b.nbytes() && b.data < a.data + a.nbytes())
      throw py::value_error(where + out.name + " (shape " + shape_str(a.shape) + ") overlaps " + other.name +
                            " (shape " + shape_str(b.shape) + "); pass a separate output array");
  }

  cudaStream_t stream() const { return static_cast<cudaStream_t>(cuda::current_stream(device)); }

  // The forward pass's and the data gradient's workspace (conv2d_workspace_bytes), or null. Hold it
  // until the kernels are queued: the allocator orders its reuse on `stream`.
  std::shared_ptr<void> workspace(cudaStream_t stream) const {
    const auto bytes = static_cast<std::size_t>(cuda::conv2d_workspace_bytes(shape));
    return bytes > 0 ? cuda::allocate(device, bytes, stream) : nullptr;
  }
};

const void* data(Arg a) { return a.array != nullptr ? a.array->data : nullptr; }
void* output(Arg a) { return a.array != nullptr ? a.array->data : nullptr; }

// y = conv(x, w) + bias.
void conv2d_forward(const py::object& x, const py::object& w, const py::object& bias, const py::object& y, Pair stride,
                    Pair padding, Pair dilation, int64_t groups, const std::string& precision) {
  constexpr const char* op = "conv2d_forward";
  const Arg xa = arg(x, op, "x"), wa = arg(w, op, "w"), ba = arg(bias, op, "bias", true), ya = arg(y, op, "y");
  const ConvCall call(op, precision, xa, wa, ya, {ba}, {"y"}, {stride, padding, dilation, groups});
  py::gil_scoped_release release;
  const cuda::DeviceGuard guard(call.device);
  const cudaStream_t stream = call.stream();
  const std::shared_ptr<void> workspace = call.workspace(stream);
  cuda::conv2d_forward(call.shape, call.precision, data(xa), data(wa), data(ba), output(ya), workspace.get(), stream);
}

// grad_x = the gradient of sum(grad_y * conv(x, w)) with respect to x.
void conv2d_backward_data(const py::object& grad_y, const py::object& w, const py::object& grad_x, Pair stride,
                          Pair padding, Pair dilation, int64_t groups, const std::string& precision) {
  constexpr const char* op = "conv2d_backward_data";
  const Arg gy = arg(grad_y, op, "grad_y"), wa = arg(w, op, "w"), gx = arg(grad_x, op, "grad_x");
  const ConvCall call(op, precision, gx, wa, gy, {}, {"grad_x"}, {stride, padding, dilation, groups});
  py::gil_scoped_release release;
  const cuda::DeviceGuard guard(call.device);
  const cudaStream_t stream = call.stream();
  const std::shared_ptr<void> workspace = call.workspace(stream);
  cuda::conv2d_backward_data(call.shape, call.precision, data(gy), data(wa), output(gx), workspace.get(), stream);
}

// grad_w and, unless None, grad_bias: the gradients with respect to w and the bias. Split along K
// (N * P * Q) over a float32 workspace when the weight is small for the device.
void conv2d_backward_weight(const py::object& grad_y, const py::object& x, const py::object& grad_w,
                            const py::object& grad_bias, Pair stride, Pair padding, Pair dilation, int64_t groups,
                            const std::string& precision) {
  constexpr const char* op = "conv2d_backward_weight";
  const Arg gy = arg(grad_y, op, "grad_y"), xa = arg(x, op, "x"), gw = arg(grad_w, op, "grad_w");
  const Arg gb = arg(grad_bias, op, "grad_bias", true);
  const ConvCall call(op, precision, xa, gw, gy, {gb}, {"grad_w", "grad_bias"}, {stride, padding, dilation, groups});
  py::gil_scoped_release release;
  const cuda::DeviceGuard guard(call.device);
  int sm_count = 0;
  DK_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, call.device));
  const int splits = cuda::conv2d_weight_splits(call.shape, sm_count);
  const auto bytes = static_cast<std::size_t>(cuda::conv2d_weight_workspace_bytes(call.shape, splits));
  const cudaStream_t stream = call.stream();
  // Held until the kernels are queued: the allocator orders its reuse on this stream.
  const std::shared_ptr<void> workspace = bytes > 0 ? cuda::allocate(call.device, bytes, stream) : nullptr;
  cuda::conv2d_backward_weight(call.shape, call.precision, data(gy), data(xa), output(gw), output(gb), splits,
                               workspace.get(), stream);
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_conv(py::module_& m) {
  using namespace deepkern::python;
  m.def(
      "last_conv2d_path",
      [] { return std::string(deepkern::cuda::conv2d_path_name(deepkern::cuda::last_conv2d_path())); },
      "The kernels the last convolution pass ran: 'implicit_gemm', 'depthwise', 'gemm_1x1' ('none' before any).");
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("y"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("precision"));
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("grad_y"), py::arg("w"), py::arg("grad_x"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("precision"));
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("grad_y"), py::arg("x"), py::arg("grad_w"),
        py::arg("grad_bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("precision"));
}
