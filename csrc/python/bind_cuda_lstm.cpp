// deepkern._cuda, the recurrent layers: one layer over a sequence on the GPU, lstm_, gru_ and
// rnn_forward and _backward with the arguments and checks of deepkern._C's (bind_lstm.cpp), the
// kernels of cuda/lstm, plus the LSTM forward's path choice for tests and benchmarks.
//
// The bindings' contract: C-contiguous float32 device arrays on x's device, of the shapes named
// below; an optional array is None (h0, c0: zeros; grad_y, grad_h_last, grad_c_last: zero; bias:
// none; relu: the RNN's nonlinearity). The outputs are written, never read, and overlap no other argument. reverse runs
// t = T-1 down to 0. precision: "fp32", or "tf32" (the GEMMs on the tensor cores with TF32-rounded inputs). The work is
// queued on the device's current stream.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
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
      throw py::type_error(std::string(op) +
                           ": x must be float32 (the GPU recurrent layers compute float32), got dtype " +
                           cuda::info(x_.dtype).name);
    if (x_.ndim() != 3)
      throw py::value_error(std::string(op) + ": x must be 3-D (T, B, I), got shape " + shape_text(x_.shape));
    check(x_, "x", x_.shape, "(T, B, I)");
    inputs_.push_back({&x_, "x"});
  }
  const cuda::DeviceArray& x() const { return x_; }
  int device() const { return x_.device; }

  // H from w_hh (gates * H, H), checked for that shape's form; `rows` names it ("4H").
  int64_t hidden_of(const py::object& w_hh, int64_t gates, const char* rows) const {
    const cuda::DeviceArray& w = device_array(w_hh, op_, "w_hh");
    if (w.ndim() != 2 || w.shape[0] % gates || w.shape[0] / gates != w.shape[1])
      throw py::value_error(std::string(op_) + ": w_hh must have shape (" + rows + ", H), got " + shape_text(w.shape));
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

// Queues `run(workspace, stream)` on x's device with the GIL released; the workspace (of `bytes`)
// goes back to the stream's cache when the call returns: later work on the stream that reuses it
// runs after this call's.
template <class Run>
void on_device(const LstmArrays& arrays, std::size_t bytes, Run&& run) {
  const cuda::DeviceGuard guard(arrays.device());
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(arrays.device()));
  py::gil_scoped_release release;
  const auto work = cuda::allocate(arrays.device(), bytes, stream);
  run(work.get(), stream);
}

void lstm_forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& w_ih,
                  const py::object& w_hh, const py::object& bias, const py::object& y, const py::object& h_last,
                  const py::object& c_last, const py::object& gates, const py::object& cells, const py::object& hidden,
                  bool reverse, const std::string& precision) {
  constexpr const char* op = "lstm_forward";
  if (gates.is_none() != cells.is_none() || gates.is_none() != hidden.is_none())
    throw py::value_error(std::string(op) + ": gates, cells and hidden are all arrays (a cache) or all None");
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const int64_t T = arrays.x().shape[0], B = arrays.x().shape[1], I = arrays.x().shape[2],
                H = arrays.hidden_of(w_hh, 4, "4H");
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
  on_device(arrays, cuda::forward_workspace_bytes(cuda::CellKind::lstm, s, gp != nullptr),
            [&](void* work, cudaStream_t stream) {
              cuda::lstm_forward(s, prec, xp, h0p, c0p, wip, whp, bp, yp, hp, cp, gp, cellp, hidp, work, stream);
            });
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
  const int64_t T = arrays.x().shape[0], B = arrays.x().shape[1], I = arrays.x().shape[2],
                H = arrays.hidden_of(w_hh, 4, "4H");
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
  on_device(arrays, cuda::backward_workspace_bytes(cuda::CellKind::lstm, s), [&](void* work, cudaStream_t stream) {
    cuda::lstm_backward(s, prec, gy, ghl, gcl, xp, h0p, c0p, wip, whp, gp, cellp, hidp, gx, gh0, gc0, gwi, gwh, gb,
                        work, stream);
  });
}

std::string layout(const char* rows, const char* cols) { return std::string("(") + rows + cols + ")"; }

// The shapes of a GRU's (gates 3) or an RNN's (gates 1) call from x and w_hh, and its inputs x, h0
// (or None), w_ih and w_hh, checked.
struct LayerShape {
  int64_t T, B, I, H, G;
  const char* rows;  // "3H" or "H"
  const float *x, *h0, *w_ih, *w_hh;
};
LayerShape layer_inputs(LstmArrays& arrays, int64_t gates, const py::object& h0, const py::object& w_ih,
                        const py::object& w_hh) {
  const char* rows = gates == 3 ? "3H" : "H";
  const int64_t H = arrays.hidden_of(w_hh, gates, rows);
  const auto& x = arrays.x().shape;
  LayerShape l{x[0], x[1], x[2], H, gates * H, rows, reinterpret_cast<const float*>(arrays.x().data)};
  l.h0 = arrays.optional_input(h0, "h0", {l.B, H}, "(B, H)");
  l.w_ih = arrays.input(w_ih, "w_ih", {l.G, l.I}, layout(rows, ", I").c_str());
  l.w_hh = arrays.input(w_hh, "w_hh", {l.G, H}, layout(rows, ", H").c_str());
  return l;
}

// A backward's output gradients grad_y and grad_h_last (None: zero), checked.
std::pair<const float*, const float*> output_gradients(LstmArrays& arrays, const LayerShape& l,
                                                       const py::object& grad_y, const py::object& grad_h_last) {
  return {arrays.optional_input(grad_y, "grad_y", {l.T, l.B, l.H}, "(T, B, H)"),
          arrays.optional_input(grad_h_last, "grad_h_last", {l.B, l.H}, "(B, H)")};
}

// A backward's weight and bias gradients (grad_b_hh None for the RNN's one bias gradient).
struct WeightGradients {
  float *w_ih, *w_hh, *b_ih, *b_hh;
};
WeightGradients weight_gradients(LstmArrays& arrays, const LayerShape& l, const py::object& grad_w_ih,
                                 const py::object& grad_w_hh, const py::object& grad_b_ih, const char* b_ih_name,
                                 const py::object& grad_b_hh) {
  return {arrays.output(grad_w_ih, "grad_w_ih", {l.G, l.I}, layout(l.rows, ", I").c_str()),
          arrays.output(grad_w_hh, "grad_w_hh", {l.G, l.H}, layout(l.rows, ", H").c_str()),
          arrays.output(grad_b_ih, b_ih_name, {l.G}, layout(l.rows, ",").c_str()),
          arrays.optional_output(grad_b_hh, "grad_b_hh", {l.G}, layout(l.rows, ",").c_str())};
}

void gru_forward(const py::object& x, const py::object& h0, const py::object& w_ih, const py::object& w_hh,
                 const py::object& b_ih, const py::object& b_hh, const py::object& y, const py::object& h_last,
                 const py::object& gates, const py::object& hidden, bool reverse, const std::string& precision) {
  constexpr const char* op = "gru_forward";
  if (gates.is_none() != hidden.is_none())
    throw py::value_error(std::string(op) + ": gates and hidden are both arrays (a cache) or both None");
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const LayerShape l = layer_inputs(arrays, 3, h0, w_ih, w_hh);
  const float* bip = arrays.optional_input(b_ih, "b_ih", {l.G}, "(3H,)");
  const float* bhp = arrays.optional_input(b_hh, "b_hh", {l.G}, "(3H,)");
  float* yp = arrays.output(y, "y", {l.T, l.B, l.H}, "(T, B, H)");
  float* hp = arrays.output(h_last, "h_last", {l.B, l.H}, "(B, H)");
  float* gp = arrays.optional_output(gates, "gates", {l.T, l.B, 4 * l.H}, "(T, B, 4H)");
  float* hidp = arrays.optional_output(hidden, "hidden", {l.T, l.B, l.H}, "(T, B, H)");
  const cuda::LstmShape s{l.T, l.B, l.I, l.H, reverse};
  on_device(arrays, cuda::forward_workspace_bytes(cuda::CellKind::gru, s, hidp != nullptr),
            [&](void* work, cudaStream_t stream) {
              cuda::gru_forward(s, prec, l.x, l.h0, l.w_ih, l.w_hh, bip, bhp, yp, hp, gp, hidp, work, stream);
            });
}

void gru_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& x, const py::object& h0,
                  const py::object& w_ih, const py::object& w_hh, const py::object& gates, const py::object& hidden,
                  const py::object& grad_x, const py::object& grad_h0, const py::object& grad_w_ih,
                  const py::object& grad_w_hh, const py::object& grad_b_ih, const py::object& grad_b_hh, bool reverse,
                  const std::string& precision) {
  constexpr const char* op = "gru_backward";
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const LayerShape l = layer_inputs(arrays, 3, h0, w_ih, w_hh);
  const auto [gy, ghl] = output_gradients(arrays, l, grad_y, grad_h_last);
  const float* gp = arrays.input(gates, "gates", {l.T, l.B, 4 * l.H}, "(T, B, 4H)");
  const float* hidp = arrays.input(hidden, "hidden", {l.T, l.B, l.H}, "(T, B, H)");
  float* gx = arrays.output(grad_x, "grad_x", {l.T, l.B, l.I}, "(T, B, I)");
  float* gh0 = arrays.output(grad_h0, "grad_h0", {l.B, l.H}, "(B, H)");
  const WeightGradients g = weight_gradients(arrays, l, grad_w_ih, grad_w_hh, grad_b_ih, "grad_b_ih", grad_b_hh);
  if (!g.b_hh) throw py::type_error(std::string(op) + ": grad_b_hh must be a DeviceArray, got None");
  const cuda::LstmShape s{l.T, l.B, l.I, l.H, reverse};
  on_device(arrays, cuda::backward_workspace_bytes(cuda::CellKind::gru, s), [&](void* work, cudaStream_t stream) {
    cuda::gru_backward(s, prec, gy, ghl, l.x, l.h0, l.w_ih, l.w_hh, gp, hidp, gx, gh0, g.w_ih, g.w_hh, g.b_ih, g.b_hh,
                       work, stream);
  });
}

void rnn_forward(const py::object& x, const py::object& h0, const py::object& w_ih, const py::object& w_hh,
                 const py::object& bias, const py::object& y, const py::object& h_last, const py::object& hidden,
                 bool relu, bool reverse, const std::string& precision) {
  constexpr const char* op = "rnn_forward";
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const LayerShape l = layer_inputs(arrays, 1, h0, w_ih, w_hh);
  const float* bp = arrays.optional_input(bias, "bias", {l.G}, "(H,)");
  float* yp = arrays.output(y, "y", {l.T, l.B, l.H}, "(T, B, H)");
  float* hp = arrays.output(h_last, "h_last", {l.B, l.H}, "(B, H)");
  float* hidp = arrays.optional_output(hidden, "hidden", {l.T, l.B, l.H}, "(T, B, H)");
  const cuda::LstmShape s{l.T, l.B, l.I, l.H, reverse};
  const cuda::CellKind kind = relu ? cuda::CellKind::rnn_relu : cuda::CellKind::rnn_tanh;
  on_device(arrays, cuda::forward_workspace_bytes(kind, s, hidp != nullptr), [&](void* work, cudaStream_t stream) {
    cuda::rnn_forward(s, relu, prec, l.x, l.h0, l.w_ih, l.w_hh, bp, yp, hp, hidp, work, stream);
  });
}

void rnn_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& x, const py::object& h0,
                  const py::object& w_ih, const py::object& w_hh, const py::object& hidden, const py::object& grad_x,
                  const py::object& grad_h0, const py::object& grad_w_ih, const py::object& grad_w_hh,
                  const py::object& grad_bias, bool relu, bool reverse, const std::string& precision) {
  constexpr const char* op = "rnn_backward";
  const cuda::GemmPrecision prec = precision_of(op, precision);
  LstmArrays arrays(op, x);
  const LayerShape l = layer_inputs(arrays, 1, h0, w_ih, w_hh);
  const auto [gy, ghl] = output_gradients(arrays, l, grad_y, grad_h_last);
  const float* hidp = arrays.input(hidden, "hidden", {l.T, l.B, l.H}, "(T, B, H)");
  float* gx = arrays.output(grad_x, "grad_x", {l.T, l.B, l.I}, "(T, B, I)");
  float* gh0 = arrays.output(grad_h0, "grad_h0", {l.B, l.H}, "(B, H)");
  const WeightGradients g = weight_gradients(arrays, l, grad_w_ih, grad_w_hh, grad_bias, "grad_bias", py::none());
  const cuda::LstmShape s{l.T, l.B, l.I, l.H, reverse};
  const cuda::CellKind kind = relu ? cuda::CellKind::rnn_relu : cuda::CellKind::rnn_tanh;
  on_device(arrays, cuda::backward_workspace_bytes(kind, s), [&](void* work, cudaStream_t stream) {
    cuda::rnn_backward(s, relu, prec, gy, ghl, l.x, l.h0, l.w_ih, l.w_hh, hidp, gx, gh0, g.w_ih, g.w_hh, g.b_ih, work,
                       stream);
  });
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
  m.def("gru_forward", &gru_forward, py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("y"), py::arg("h_last"), py::arg("gates"), py::arg("hidden"), py::arg("reverse"),
        py::arg("precision") = "fp32",
        "One GRU layer over x (T, B, I) on the GPU, the device version of deepkern._C.gru_forward.");
  m.def("gru_backward", &gru_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("x"), py::arg("h0"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_b_ih"), py::arg("grad_b_hh"), py::arg("reverse"),
        py::arg("precision") = "fp32",
        "Backpropagation through time on the GPU, the device version of deepkern._C.gru_backward.");
  m.def("rnn_forward", &rnn_forward, py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("bias"),
        py::arg("y"), py::arg("h_last"), py::arg("hidden"), py::arg("relu"), py::arg("reverse"),
        py::arg("precision") = "fp32",
        "One Elman RNN layer over x (T, B, I) on the GPU, the device version of deepkern._C.rnn_forward.");
  m.def("rnn_backward", &rnn_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("x"), py::arg("h0"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_bias"), py::arg("relu"), py::arg("reverse"),
        py::arg("precision") = "fp32",
        "Backpropagation through time on the GPU, the device version of deepkern._C.rnn_backward.");
  m.def(
      "set_lstm_path", [](const std::string& name) { dkc::set_lstm_path(path_from_name(name)); }, py::arg("path"),
      "Makes every LSTM forward take `path` ('per_step', 'persistent'), or choose ('automatic'); a forced persistent "
      "path that cannot take a layer makes that call a ValueError saying why.");
  m.def("lstm_path", [] { return dkc::lstm_path_name(dkc::lstm_path()); }, "The path set_lstm_path chose.");
  m.def(
      "last_lstm_path", [] { return dkc::lstm_path_name(dkc::last_lstm_path()); },
      "The path the last LSTM forward took ('automatic' before any, or after one without a step).");
}
