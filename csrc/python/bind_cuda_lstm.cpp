// deepkern._cuda, LSTM: one layer over a sequence on the GPU, lstm_forward and lstm_backward with
// the arguments and checks of deepkern._C's (bind_lstm.cpp), the kernels of cuda/lstm, plus the
// forward's path choice for tests and benchmarks.
//
// Both bindings' contract: C-contiguous float32 device arrays on x's device, of the shapes named
// below; an optional array is None (h0, c0: zeros; grad_y, grad_h_last, grad_c_last: zero; bias:
// none). The outputs are written, never read, and overlap no other argument. reverse runs t = T-1
// down to 0. precision: "fp32", or "tf32" (the GEMMs on the tensor cores with TF32-rounded inputs).
// The work is queued on the device's current stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/lstm/lstm.h"
#include "cuda/memory.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

using deepkern::cuda::shape_text;

cuda::GemmPrecision precision_of(const char* op, const std::string& name) {
  if (name == "fp32") return cuda::GemmPrecision::fp32;
  if (name == "tf32") return cuda::GemmPrecision::tf32;
  throw py::value_error(std::string(op) + ": precision must be 'fp32' or 'tf32', got '" + name + "'");
}

// The arrays of one call, checked one by one against x (dtype float32, device, C order, exact
// shape); outputs are then checked to overlap no other argument.
class LstmArrays {
 public:
  LstmArrays(const char* op, const py::object& x) : op_(op), x_(device_array(x, op, "x")) {
    if (x_.dtype != cuda::DType::float32)
      throw py::type_error(std::string(op) + ": x must be float32 (the GPU LSTM computes float32), got dtype " +
                           cuda::info(x_.dtype).name);
    if (x_.ndim() != 3)
      throw py::value_error(std::string(op) + ": x must be 3-D (T, B, I), got shape " + shape_text(x_.shape));
    check(x_, "x", x_.shape, "(T, B, I)");
    inputs_.push_back({&x_, "x"});
  }
  const cuda::DeviceArray& x() const { return x_; }
  int device() const { return x_.device; }

  // H from w_hh (4H, H), checked for that shape's form.
  int64_t hidden_of(const py::object& w_hh) const {
    const cuda::DeviceArray& w = device_array(w_hh, op_, "w_hh");
    if (w.ndim() != 2 || w.shape[0] % 4 || w.shape[0] / 4 != w.shape[1])
      throw py::value_error(std::string(op_) + ": w_hh must have shape (4H, H), got " + shape_text(w.shape));
    return w.shape[1];
  }

  const float* input(const py::object& obj, const char* name, std::vector<int64_t> shape, const char* layout) {
    const cuda::DeviceArray& a = device_array(obj, op_, name);
    check(a, name, shape, layout);
    inputs_.push_back({&a, name});
    return reinterpret_cast<const float*>(a.data);
  }
  const float* optional_input(const py::object& obj, const char* name, std::vector<int64_t> shape, const char* layout) {
    return obj.is_none() ? nullptr : input(obj, name, std::move(shape), layout);
  }
  float* output(const py::object& obj, const char* name, std::vector<int64_t> shape, const char* layout) {
    const cuda::DeviceArray& a = device_array(obj, op_, name);
    check(a, name, shape, layout);
    for (const Named& other : inputs_) apart(a, name, other);
    for (const Named& other : outputs_) apart(a, name, other);
    outputs_.push_back({&a, name});
    return reinterpret_cast<float*>(a.data);
  }
  float* optional_output(const py::object& obj, const char* name, std::vector<int64_t> shape, const char* layout) {
    return obj.is_none() ? nullptr : output(obj, name, std::move(shape), layout);
  }

 private:
  struct Named {
    const cuda::DeviceArray* a;
    const char* name;
  };

  void check(const cuda::DeviceArray& a, const char* name, const std::vector<int64_t>& shape,
             const char* layout) const {
    const std::string where = std::string(op_) + ": " + name;
    if (a.dtype != x_.dtype)
      throw py::type_error(where + " has dtype " + cuda::info(a.dtype).name + " but x has " +
                           cuda::info(x_.dtype).name + "; use one dtype");
    if (a.device != x_.device)
      throw py::value_error(where + " is on cuda:" + std::to_string(a.device) +
                            " but x is on cuda:" + std::to_string(x_.device));
    if (a.shape != shape)
      throw py::value_error(where + " must have shape " + layout + " = " + shape_text(shape) + ", got " +
                            shape_text(a.shape));
    if (!a.is_contiguous())
      throw py::value_error(where + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                            " for shape " + shape_text(a.shape));
  }

  void apart(const cuda::DeviceArray& out, const char* name, const Named& other) const {
    const cuda::DeviceArray& b = *other.a;
    if (out.nbytes() == 0 || b.nbytes() == 0) return;
    if (out.data < b.data + b.nbytes() && b.data < out.data + out.nbytes())
      throw py::value_error(std::string(op_) + ": " + name + " overlaps " + other.name + "; pass separate arrays");
  }

  const char* op_;
  const cuda::DeviceArray& x_;
  std::vector<Named> inputs_, outputs_;
};

void lstm_forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& w_ih,
                  const py::object& w_hh, const py::object& bias, const py::object& y, const py::object& h_last,
                  const py::object& c_last, const py::object& gates, const py::object& cells, const py::object& hidden,
                  bool reverse, const std::string& precision) {
  constexpr const char* op = "lstm_forward";
  if (gates.is_none() != cells.is_none() || gates.is_none() != hidden.is_none())
    throw py::value_error(std::string(op) + ": gates, cells and hidden are all arrays (a cache) or all None");
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const int64_t T = arrays.x().shape[0], B = arrays.x().shape[1], I = arrays.x().shape[2], H = arrays.hidden_of(w_hh);
  const float* xp = reinterpret_cast<const float*>(arrays.x().data);
  const float* h0p = arrays.optional_input(h0, "h0", {B, H}, "(B, H)");
  const float* c0p = arrays.optional_input(c0, "c0", {B, H}, "(B, H)");
  const float* wip = arrays.input(w_ih, "w_ih", {4 * H, I}, "(4H, I)");
  const float* whp = arrays.input(w_hh, "w_hh", {4 * H, H}, "(4H, H)");
  const float* bp = arrays.optional_input(bias, "bias", {4 * H}, "(4H,)");
  float* yp = arrays.output(y, "y", {T, B, H}, "(T, B, H)");
  float* hp = arrays.output(h_last, "h_last", {B, H}, "(B, H)");
  float* cp = arrays.output(c_last, "c_last", {B, H}, "(B, H)");
  float* gp = arrays.optional_output(gates, "gates", {T, B, 4 * H}, "(T, B, 4H)");
  float* cellp = arrays.optional_output(cells, "cells", {T, B, H}, "(T, B, H)");
  float* hidp = arrays.optional_output(hidden, "hidden", {T, B, H}, "(T, B, H)");
  const cuda::LstmShape s{T, B, I, H, reverse};
  const cuda::DeviceGuard guard(arrays.device());
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(arrays.device()));
  py::gil_scoped_release release;
  // The workspace goes back to the stream's cache when the call returns: later work on the stream
  // that reuses it runs after this call's.
  const auto work = cuda::allocate(arrays.device(), cuda::lstm_forward_workspace_bytes(s, gp != nullptr), stream);
  cuda::lstm_forward(s, prec, xp, h0p, c0p, wip, whp, bp, yp, hp, cp, gp, cellp, hidp, work.get(), stream);
}

void lstm_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& grad_c_last,
                   const py::object& x, const py::object& h0, const py::object& c0, const py::object& w_ih,
                   const py::object& w_hh, const py::object& gates, const py::object& cells, const py::object& hidden,
                   const py::object& grad_x, const py::object& grad_h0, const py::object& grad_c0,
                   const py::object& grad_w_ih, const py::object& grad_w_hh, const py::object& grad_bias, bool reverse,
                   const std::string& precision) {
  constexpr const char* op = "lstm_backward";
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const int64_t T = arrays.x().shape[0], B = arrays.x().shape[1], I = arrays.x().shape[2], H = arrays.hidden_of(w_hh);
  const float* xp = reinterpret_cast<const float*>(arrays.x().data);
  const float* gy = arrays.optional_input(grad_y, "grad_y", {T, B, H}, "(T, B, H)");
  const float* ghl = arrays.optional_input(grad_h_last, "grad_h_last", {B, H}, "(B, H)");
  const float* gcl = arrays.optional_input(grad_c_last, "grad_c_last", {B, H}, "(B, H)");
  const float* h0p = arrays.optional_input(h0, "h0", {B, H}, "(B, H)");
  const float* c0p = arrays.optional_input(c0, "c0", {B, H}, "(B, H)");
  const float* wip = arrays.input(w_ih, "w_ih", {4 * H, I}, "(4H, I)");
  const float* whp = arrays.input(w_hh, "w_hh", {4 * H, H}, "(4H, H)");
  const float* gp = arrays.input(gates, "gates", {T, B, 4 * H}, "(T, B, 4H)");
  const float* cellp = arrays.input(cells, "cells", {T, B, H}, "(T, B, H)");
  const float* hidp = arrays.input(hidden, "hidden", {T, B, H}, "(T, B, H)");
  float* gx = arrays.output(grad_x, "grad_x", {T, B, I}, "(T, B, I)");
  float* gh0 = arrays.output(grad_h0, "grad_h0", {B, H}, "(B, H)");
  float* gc0 = arrays.output(grad_c0, "grad_c0", {B, H}, "(B, H)");
  float* gwi = arrays.output(grad_w_ih, "grad_w_ih", {4 * H, I}, "(4H, I)");
  float* gwh = arrays.output(grad_w_hh, "grad_w_hh", {4 * H, H}, "(4H, H)");
  float* gb = arrays.output(grad_bias, "grad_bias", {4 * H}, "(4H,)");
  const cuda::LstmShape s{T, B, I, H, reverse};
  const cuda::DeviceGuard guard(arrays.device());
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(arrays.device()));
  py::gil_scoped_release release;
  const auto work = cuda::allocate(arrays.device(), cuda::lstm_backward_workspace_bytes(s), stream);
  cuda::lstm_backward(s, prec, gy, ghl, gcl, xp, h0p, c0p, wip, whp, gp, cellp, hidp, gx, gh0, gc0, gwi, gwh, gb,
                      work.get(), stream);
}

cuda::LstmPath path_from_name(const std::string& name) {
  for (const cuda::LstmPath p : {cuda::LstmPath::automatic, cuda::LstmPath::per_step, cuda::LstmPath::persistent})
    if (name == cuda::lstm_path_name(p)) return p;
  throw py::value_error("set_lstm_path: path must be 'automatic', 'per_step' or 'persistent', got '" + name + "'");
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_lstm(py::module_& m) {
  using namespace deepkern::python;
  namespace dkc = deepkern::cuda;
  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("bias"), py::arg("y"), py::arg("h_last"), py::arg("c_last"), py::arg("gates"), py::arg("cells"),
        py::arg("hidden"), py::arg("reverse"), py::arg("precision") = "fp32",
        "One LSTM layer over x (T, B, I) on the GPU, the device version of deepkern._C.lstm_forward.");
  m.def("lstm_backward", &lstm_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("grad_c_last"),
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"),
        py::arg("cells"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"), py::arg("grad_c0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_bias"), py::arg("reverse"),
        py::arg("precision") = "fp32",
        "Backpropagation through time on the GPU, the device version of deepkern._C.lstm_backward.");
  m.def(
      "set_lstm_path", [](const std::string& name) { dkc::set_lstm_path(path_from_name(name)); }, py::arg("path"),
      "Makes every LSTM forward take `path` ('per_step', 'persistent'), or choose ('automatic'); a forced persistent "
      "path that cannot take a layer makes that call a ValueError saying why.");
  m.def("lstm_path", [] { return dkc::lstm_path_name(dkc::lstm_path()); }, "The path set_lstm_path chose.");
  m.def(
      "last_lstm_path", [] { return dkc::lstm_path_name(dkc::last_lstm_path()); },
      "The path the last LSTM forward took ('automatic' before any, or after one without a step).");
}
