// deepkern._C, the recurrent layers (LSTM, GRU, Elman RNN): one layer over a sequence, forward and
// backpropagation through time (deepkern.ops.lstm, deepkern.ops.gru, deepkern.ops.rnn).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cpu/lstm/lstm.h"
#include "python/boundary.h"

namespace deepkern::python {
namespace {

// run(T{}) for x's dtype: float32, float64 or bfloat16 (cpu::bf16, whose caches are float32).
template <class Run>
void dispatch_layer(py::handle x, const char* op, Run&& run) {
  if (is_bfloat16(x))
    run(cpu::bf16{});
  else
    dispatch_float(x, op, "x", run);
}

// T, B, I read off x (T, B, I) and H off w_hh (gates * H, H).
cpu::LstmShape lstm_shape(const char* op, py::handle x, py::handle w_hh, bool reverse, int gates = 4) {
  const std::string layout = gates == 1 ? "(H, H)" : "(" + std::to_string(gates) + "H, H)";
  const Shape xs = shape_with_ndim(x, op, "x", 3, "(T, B, I)");
  const Shape ws = shape_with_ndim(w_hh, op, "w_hh", 2, layout.c_str());
  if (ws[0] % gates || ws[0] / gates != ws[1])
    throw py::value_error(std::string(op) + ": w_hh must have shape " + layout + ", got " + shape_str(ws));
  return {xs[0], xs[1], xs[2], ws[1], reverse};
}

// batch_sizes (None, or int64 (T,)): the rows running at each step of a batch of variable lengths
// sorted by decreasing length, so the first is B, none is larger than the one before, and each is
// at least 1. Returns it for LstmShape::batch_sizes (null for None).
template <class T>
const int64_t* packed_batch_sizes(KernelArrays<T>& arrays, const char* op, const py::object& batch_sizes,
                                  const cpu::LstmShape& s) {
  const int64_t* sizes = arrays.template optional_input<int64_t>(batch_sizes, "batch_sizes", {s.steps});
  for (int64_t t = 0; sizes && t < s.steps; ++t) {
    const int64_t most = t ? sizes[t - 1] : s.batch;
    if (sizes[t] < 1 || sizes[t] > most || (t == 0 && sizes[t] != s.batch))
      throw py::value_error(std::string(op) + ": batch_sizes must start at B = " + std::to_string(s.batch) +
                            " (x has T = " + std::to_string(s.steps) + ", B = " + std::to_string(s.batch) +
                            ") and never increase, each >= 1; got batch_sizes[" + std::to_string(t) + "] = " +
                            std::to_string(sizes[t]) + (t ? " after " + std::to_string(sizes[t - 1]) : std::string()));
  }
  return sizes;
}

// The arrays the GRU and RNN bindings check alike: x (T, B, I), h0 (B, H) or None, w_ih (rows, I)
// and w_hh (rows, H), rows = gates * H.
template <class T>
struct LayerInputs {
  const T *x, *h0, *w_ih, *w_hh;
  LayerInputs(KernelArrays<T>& arrays, const cpu::LstmShape& s, int64_t rows, const py::object& x_,
              const py::object& h0_, const py::object& w_ih_, const py::object& w_hh_)
      : x(arrays.input(x_, "x", {s.steps, s.batch, s.input})),
        h0(arrays.optional_input(h0_, "h0", {s.batch, s.hidden})),
        w_ih(arrays.input(w_ih_, "w_ih", {rows, s.input})),
        w_hh(arrays.input(w_hh_, "w_hh", {rows, s.hidden})) {}
};

// Their backward's gradients of those (outputs, same shapes).
template <class T>
struct LayerGrads {
  T *x, *h0, *w_ih, *w_hh;
  LayerGrads(KernelArrays<T>& arrays, const cpu::LstmShape& s, int64_t rows, const py::object& x_,
             const py::object& h0_, const py::object& w_ih_, const py::object& w_hh_)
      : x(arrays.output(x_, "grad_x", {s.steps, s.batch, s.input})),
        h0(arrays.output(h0_, "grad_h0", {s.batch, s.hidden})),
        w_ih(arrays.output(w_ih_, "grad_w_ih", {rows, s.input})),
        w_hh(arrays.output(w_hh_, "grad_w_hh", {rows, s.hidden})) {}
};

// Both bindings' contract: C-contiguous arrays of one float dtype (float32, float64 or bfloat16; a
// bfloat16 layer's caches gates and cells are float32), of the shapes named below; an
// optional array is None (h0, c0: zeros; grad_y, grad_h_last, grad_c_last: zero; bias: none). The
// outputs are written, never read, and overlap no other argument. reverse runs t = T-1 down to 0.
// batch_sizes (None: every step runs all B rows) gives variable lengths, as cpu::LstmShape says: a
// backward takes the forward's.

// x (T, B, I), h0 and c0 (B, H), w_ih (4H, I), w_hh (4H, H), bias (4H,) = b_ih + b_hh. Writes y
// (T, B, H), h_last and c_last (B, H) and, unless all three are None, the cache backward reads:
// gates (T, B, 4H), cells and hidden (T, B, H). Any of T, B, I and H may be 0.
void lstm_forward(const py::object& x, const py::object& h0, const py::object& c0, const py::object& w_ih,
                  const py::object& w_hh, const py::object& bias, const py::object& y, const py::object& h_last,
                  const py::object& c_last, const py::object& gates, const py::object& cells, const py::object& hidden,
                  bool reverse, const py::object& batch_sizes) {
  constexpr const char* op = "lstm_forward";
  if (gates.is_none() != cells.is_none() || gates.is_none() != hidden.is_none())
    throw py::value_error(std::string(op) + ": gates, cells and hidden are all arrays (a cache) or all None");
  dispatch_layer(x, op, [&](auto zero) {
    using T = decltype(zero);
    using A = cpu::Acc<T>;
    cpu::LstmShape s = lstm_shape(op, x, w_hh, reverse);
    const int64_t steps = s.steps, batch = s.batch, units = s.hidden, gate_rows = 4 * s.hidden;
    KernelArrays<T> arrays(op, "x");
    s.batch_sizes = packed_batch_sizes(arrays, op, batch_sizes, s);
    const T* xp = arrays.input(x, "x", {steps, batch, s.input});
    const T* h0p = arrays.optional_input(h0, "h0", {batch, units});
    const T* c0p = arrays.optional_input(c0, "c0", {batch, units});
    const T* wip = arrays.input(w_ih, "w_ih", {gate_rows, s.input});
    const T* whp = arrays.input(w_hh, "w_hh", {gate_rows, units});
    const T* bp = arrays.optional_input(bias, "bias", {gate_rows});
    T* yp = arrays.output(y, "y", {steps, batch, units});
    T* hp = arrays.output(h_last, "h_last", {batch, units});
    T* cp = arrays.output(c_last, "c_last", {batch, units});
    A* gp = arrays.template optional_output<A>(gates, "gates", {steps, batch, gate_rows});
    A* cellp = arrays.template optional_output<A>(cells, "cells", {steps, batch, units});
    T* hidp = arrays.optional_output(hidden, "hidden", {steps, batch, units});
    py::gil_scoped_release release;
    cpu::lstm_forward<T>(s, xp, h0p, c0p, wip, whp, bp, yp, hp, cp, gp, cellp, hidp);
  });
}

// grad_y (T, B, H), grad_h_last and grad_c_last (B, H); x, h0, c0, w_ih, w_hh and the forward's
// cache gates (T, B, 4H), cells and hidden (T, B, H) as the forward had them. Writes grad_x
// (T, B, I), grad_h0 and grad_c0 (B, H), grad_w_ih (4H, I), grad_w_hh (4H, H) and grad_bias (4H,).
void lstm_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& grad_c_last,
                   const py::object& x, const py::object& h0, const py::object& c0, const py::object& w_ih,
                   const py::object& w_hh, const py::object& gates, const py::object& cells, const py::object& hidden,
                   const py::object& grad_x, const py::object& grad_h0, const py::object& grad_c0,
                   const py::object& grad_w_ih, const py::object& grad_w_hh, const py::object& grad_bias, bool reverse,
                   const py::object& batch_sizes) {
  constexpr const char* op = "lstm_backward";
  dispatch_layer(x, op, [&](auto zero) {
    using T = decltype(zero);
    using A = cpu::Acc<T>;
    cpu::LstmShape s = lstm_shape(op, x, w_hh, reverse);
    const int64_t steps = s.steps, batch = s.batch, units = s.hidden, gate_rows = 4 * s.hidden;
    KernelArrays<T> arrays(op, "x");
    s.batch_sizes = packed_batch_sizes(arrays, op, batch_sizes, s);
    const T* gy = arrays.optional_input(grad_y, "grad_y", {steps, batch, units});
    const T* ghl = arrays.optional_input(grad_h_last, "grad_h_last", {batch, units});
    const T* gcl = arrays.optional_input(grad_c_last, "grad_c_last", {batch, units});
    const T* xp = arrays.input(x, "x", {steps, batch, s.input});
    const T* h0p = arrays.optional_input(h0, "h0", {batch, units});
    const T* c0p = arrays.optional_input(c0, "c0", {batch, units});
    const T* wip = arrays.input(w_ih, "w_ih", {gate_rows, s.input});
    const T* whp = arrays.input(w_hh, "w_hh", {gate_rows, units});
    const A* gp = arrays.template input<A>(gates, "gates", {steps, batch, gate_rows});
    const A* cellp = arrays.template input<A>(cells, "cells", {steps, batch, units});
    const T* hidp = arrays.input(hidden, "hidden", {steps, batch, units});
    T* gx = arrays.output(grad_x, "grad_x", {steps, batch, s.input});
    T* gh0 = arrays.output(grad_h0, "grad_h0", {batch, units});
    T* gc0 = arrays.output(grad_c0, "grad_c0", {batch, units});
    T* gwi = arrays.output(grad_w_ih, "grad_w_ih", {gate_rows, s.input});
    T* gwh = arrays.output(grad_w_hh, "grad_w_hh", {gate_rows, units});
    T* gb = arrays.output(grad_bias, "grad_bias", {gate_rows});
    py::gil_scoped_release release;
    cpu::lstm_backward<T>(s, gy, ghl, gcl, xp, h0p, c0p, wip, whp, gp, cellp, hidp, gx, gh0, gc0, gwi, gwh, gb);
  });
}

// The GRU (gates r, z, n): x (T, B, I), h0 (B, H), w_ih (3H, I), w_hh (3H, H), b_ih and b_hh (3H,).
// Writes y (T, B, H), h_last (B, H) and, unless both are None, the cache: gates (T, B, 4H) and
// hidden (T, B, H). Any of T, B, I and H may be 0.
void gru_forward(const py::object& x, const py::object& h0, const py::object& w_ih, const py::object& w_hh,
                 const py::object& b_ih, const py::object& b_hh, const py::object& y, const py::object& h_last,
                 const py::object& gates, const py::object& hidden, bool reverse, const py::object& batch_sizes) {
  constexpr const char* op = "gru_forward";
  if (gates.is_none() != hidden.is_none())
    throw py::value_error(std::string(op) + ": gates and hidden are both arrays (a cache) or both None");
  dispatch_layer(x, op, [&](auto zero) {
    using T = decltype(zero);
    using A = cpu::Acc<T>;
    cpu::LstmShape s = lstm_shape(op, x, w_hh, reverse, 3);
    const int64_t steps = s.steps, batch = s.batch, units = s.hidden, gate_rows = 3 * s.hidden;
    KernelArrays<T> arrays(op, "x");
    s.batch_sizes = packed_batch_sizes(arrays, op, batch_sizes, s);
    const LayerInputs<T> in(arrays, s, gate_rows, x, h0, w_ih, w_hh);
    const T* bip = arrays.optional_input(b_ih, "b_ih", {gate_rows});
    const T* bhp = arrays.optional_input(b_hh, "b_hh", {gate_rows});
    T* yp = arrays.output(y, "y", {steps, batch, units});
    T* hp = arrays.output(h_last, "h_last", {batch, units});
    A* gp = arrays.template optional_output<A>(gates, "gates", {steps, batch, 4 * units});
    T* hidp = arrays.optional_output(hidden, "hidden", {steps, batch, units});
    py::gil_scoped_release release;
    cpu::gru_forward<T>(s, in.x, in.h0, in.w_ih, in.w_hh, bip, bhp, yp, hp, gp, hidp);
  });
}

// grad_y (T, B, H), grad_h_last (B, H); x, h0, w_ih, w_hh and the cache as gru_forward had them.
// Writes grad_x (T, B, I), grad_h0 (B, H), grad_w_ih (3H, I), grad_w_hh (3H, H), grad_b_ih and
// grad_b_hh (3H,).
void gru_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& x, const py::object& h0,
                  const py::object& w_ih, const py::object& w_hh, const py::object& gates, const py::object& hidden,
                  const py::object& grad_x, const py::object& grad_h0, const py::object& grad_w_ih,
                  const py::object& grad_w_hh, const py::object& grad_b_ih, const py::object& grad_b_hh, bool reverse,
                  const py::object& batch_sizes) {
  constexpr const char* op = "gru_backward";
  dispatch_layer(x, op, [&](auto zero) {
    using T = decltype(zero);
    using A = cpu::Acc<T>;
    cpu::LstmShape s = lstm_shape(op, x, w_hh, reverse, 3);
    const int64_t steps = s.steps, batch = s.batch, units = s.hidden, gate_rows = 3 * s.hidden;
    KernelArrays<T> arrays(op, "x");
    s.batch_sizes = packed_batch_sizes(arrays, op, batch_sizes, s);
    const T* gy = arrays.optional_input(grad_y, "grad_y", {steps, batch, units});
    const T* ghl = arrays.optional_input(grad_h_last, "grad_h_last", {batch, units});
    const LayerInputs<T> in(arrays, s, gate_rows, x, h0, w_ih, w_hh);
    const A* gp = arrays.template input<A>(gates, "gates", {steps, batch, 4 * units});
    const T* hidp = arrays.input(hidden, "hidden", {steps, batch, units});
    const LayerGrads<T> out(arrays, s, gate_rows, grad_x, grad_h0, grad_w_ih, grad_w_hh);
    T* gbi = arrays.output(grad_b_ih, "grad_b_ih", {gate_rows});
    T* gbh = arrays.output(grad_b_hh, "grad_b_hh", {gate_rows});
    py::gil_scoped_release release;
    cpu::gru_backward<T>(s, gy, ghl, in.x, in.h0, in.w_ih, in.w_hh, gp, hidp, out.x, out.h0, out.w_ih, out.w_hh, gbi,
                         gbh);
  });
}

// The Elman RNN, h' = tanh (relu: max(0, .)) of x W_ih^T + h W_hh^T + bias: x (T, B, I), h0 (B, H),
// w_ih (H, I), w_hh (H, H), bias (H,) = b_ih + b_hh. Writes y (T, B, H), h_last (B, H) and, unless
// None, hidden (T, B, H), the cache. Any of T, B, I and H may be 0.
void rnn_forward(const py::object& x, const py::object& h0, const py::object& w_ih, const py::object& w_hh,
                 const py::object& bias, const py::object& y, const py::object& h_last, const py::object& hidden,
                 bool relu, bool reverse, const py::object& batch_sizes) {
  constexpr const char* op = "rnn_forward";
  dispatch_layer(x, op, [&](auto zero) {
    using T = decltype(zero);
    cpu::LstmShape s = lstm_shape(op, x, w_hh, reverse, 1);
    const int64_t steps = s.steps, batch = s.batch, units = s.hidden;
    KernelArrays<T> arrays(op, "x");
    s.batch_sizes = packed_batch_sizes(arrays, op, batch_sizes, s);
    const LayerInputs<T> in(arrays, s, units, x, h0, w_ih, w_hh);
    const T* bp = arrays.optional_input(bias, "bias", {units});
    T* yp = arrays.output(y, "y", {steps, batch, units});
    T* hp = arrays.output(h_last, "h_last", {batch, units});
    T* hidp = arrays.optional_output(hidden, "hidden", {steps, batch, units});
    py::gil_scoped_release release;
    cpu::rnn_forward<T>(s, relu, in.x, in.h0, in.w_ih, in.w_hh, bp, yp, hp, hidp);
  });
}

// grad_y (T, B, H), grad_h_last (B, H); x, h0, w_ih, w_hh and hidden as rnn_forward had them.
// Writes grad_x (T, B, I), grad_h0 (B, H), grad_w_ih (H, I), grad_w_hh (H, H), grad_bias (H,).
void rnn_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& x, const py::object& h0,
                  const py::object& w_ih, const py::object& w_hh, const py::object& hidden, const py::object& grad_x,
                  const py::object& grad_h0, const py::object& grad_w_ih, const py::object& grad_w_hh,
                  const py::object& grad_bias, bool relu, bool reverse, const py::object& batch_sizes) {
  constexpr const char* op = "rnn_backward";
  dispatch_layer(x, op, [&](auto zero) {
    using T = decltype(zero);
    cpu::LstmShape s = lstm_shape(op, x, w_hh, reverse, 1);
    const int64_t steps = s.steps, batch = s.batch, units = s.hidden;
    KernelArrays<T> arrays(op, "x");
    s.batch_sizes = packed_batch_sizes(arrays, op, batch_sizes, s);
    const T* gy = arrays.optional_input(grad_y, "grad_y", {steps, batch, units});
    const T* ghl = arrays.optional_input(grad_h_last, "grad_h_last", {batch, units});
    const LayerInputs<T> in(arrays, s, units, x, h0, w_ih, w_hh);
    const T* hidp = arrays.input(hidden, "hidden", {steps, batch, units});
    const LayerGrads<T> out(arrays, s, units, grad_x, grad_h0, grad_w_ih, grad_w_hh);
    T* gb = arrays.output(grad_bias, "grad_bias", {units});
    py::gil_scoped_release release;
    cpu::rnn_backward<T>(s, relu, gy, ghl, in.x, in.h0, in.w_ih, in.w_hh, hidp, out.x, out.h0, out.w_ih, out.w_hh, gb);
  });
}

}  // namespace

void bind_lstm(py::module_& m) {
  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("bias"), py::arg("y"), py::arg("h_last"), py::arg("c_last"), py::arg("gates"), py::arg("cells"),
        py::arg("hidden"), py::arg("reverse"), py::arg("batch_sizes") = py::none());
  m.def("lstm_backward", &lstm_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("grad_c_last"),
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"),
        py::arg("cells"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"), py::arg("grad_c0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_bias"), py::arg("reverse"),
        py::arg("batch_sizes") = py::none());
  m.def("gru_forward", &gru_forward, py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
        py::arg("b_hh"), py::arg("y"), py::arg("h_last"), py::arg("gates"), py::arg("hidden"), py::arg("reverse"),
        py::arg("batch_sizes") = py::none());
  m.def("gru_backward", &gru_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("x"), py::arg("h0"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_b_ih"), py::arg("grad_b_hh"), py::arg("reverse"),
        py::arg("batch_sizes") = py::none());
  m.def("rnn_forward", &rnn_forward, py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("bias"),
        py::arg("y"), py::arg("h_last"), py::arg("hidden"), py::arg("relu"), py::arg("reverse"),
        py::arg("batch_sizes") = py::none());
  m.def("rnn_backward", &rnn_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("x"), py::arg("h0"),
        py::arg("w_ih"), py::arg("w_hh"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_bias"), py::arg("relu"), py::arg("reverse"),
        py::arg("batch_sizes") = py::none());
}

}  // namespace deepkern::python
