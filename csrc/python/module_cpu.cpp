// deepkern._C: pybind11 bindings of the CPU kernels. Binding only: the Python layer
// (python/deepkern/ops) validates shapes and dtypes; here arrays become pointers and strides,
// the GIL is released, and the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "core/isa_dispatch.h"
#include "core/threading.h"
#include "cpu/conv/conv.h"
#include "cpu/gemm/gemm.h"
#include "cpu/lstm/lstm.h"
#include "cpu/optim/optim.h"
#include "cpu/pool/pool.h"
#include "cpu/roofline/roofline.h"

namespace py = pybind11;
using namespace deepkern;

void bind_activation(py::module_& m);  // bind_activation.cpp

namespace {

// Element strides of the last two axes of `arr`.
std::pair<int64_t, int64_t> matrix_strides(const py::array& arr) {
  const auto nd = arr.ndim();
  const int64_t item = static_cast<int64_t>(arr.itemsize());
  const int64_t rs = static_cast<int64_t>(arr.strides(nd - 2)), cs = static_cast<int64_t>(arr.strides(nd - 1));
  if (rs % item || cs % item)
    throw std::invalid_argument("array strides must be multiples of the item size");
  return {rs / item, cs / item};
}

template <class T>
void gemm_typed(const py::array& a, const py::array& b, py::array& c, const py::array_t<int64_t>& a_off,
                const py::array_t<int64_t>& b_off, const py::array_t<int64_t>& c_off, int64_t k,
                double alpha, double beta, const py::object& bias, int bias_axis, bool relu) {
  const auto [ars, acs] = matrix_strides(a);
  const auto [brs, bcs] = matrix_strides(b);
  const auto [crs, ccs] = matrix_strides(c);
  const int64_t m = c.shape(c.ndim() - 2), n = c.shape(c.ndim() - 1);
  const int64_t batch = a_off.size();
  if (b_off.size() != batch || c_off.size() != batch)
    throw std::invalid_argument("batch offsets must have equal lengths");
  cpu::GemmEpilogue<T> ep;
  ep.relu = relu;
  if (!bias.is_none()) {
    auto bias_arr = bias.cast<py::array>();
    ep.bias = static_cast<const T*>(bias_arr.data());
    ep.bias_axis = static_cast<cpu::BiasAxis>(bias_axis);
  }
  cpu::StridedMatrix<const T> A{static_cast<const T*>(a.data()), ars, acs};
  cpu::StridedMatrix<const T> B{static_cast<const T*>(b.data()), brs, bcs};
  cpu::StridedMatrix<T> C{static_cast<T*>(c.mutable_data()), crs, ccs};
  const int64_t* ao = a_off.data();
  const int64_t* bo = b_off.data();
  const int64_t* co = c_off.data();
  py::gil_scoped_release release;
  cpu::gemm_batched<T>(batch, ao, bo, co, m, n, k, static_cast<T>(alpha), A, B, static_cast<T>(beta), C, ep);
}

// C[batch] = epilogue(alpha * A[batch] @ B[batch] + beta * C[batch]); the matrices are the
// last two axes of a, b, c, problem i at element offsets a_offsets[i], b_offsets[i],
// c_offsets[i] from each array's first element. Shapes, dtypes and offsets were validated by
// deepkern.ops.
void gemm(const py::array& a, const py::array& b, py::array& c, const py::array_t<int64_t>& a_offsets,
          const py::array_t<int64_t>& b_offsets, const py::array_t<int64_t>& c_offsets, int64_t k,
          double alpha, double beta, const py::object& bias, int bias_axis, bool relu) {
  if (c.dtype().is(py::dtype::of<float>()))
    gemm_typed<float>(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis, relu);
  else if (c.dtype().is(py::dtype::of<double>()))
    gemm_typed<double>(a, b, c, a_offsets, b_offsets, c_offsets, k, alpha, beta, bias, bias_axis, relu);
  else
    throw py::type_error("gemm supports float32 and float64");
}

// ---- convolution ------------------------------------------------------------------------------
// Arrays arrive C-contiguous with matching dtypes and shapes checked by deepkern.ops.conv; the
// shape of the convolution is read off them: input (N, C, H, W), weight (K, C/groups, R, S),
// output (N, K, P, Q).
using Pair = std::pair<int64_t, int64_t>;

cpu::Conv2dShape conv_shape(const py::array& input, const py::array& weight, const py::array& output,
                            Pair stride, Pair padding, Pair dilation, int64_t groups) {
  cpu::Conv2dShape s;
  s.batch = input.shape(0);
  s.in_channels = input.shape(1);
  s.in_h = input.shape(2);
  s.in_w = input.shape(3);
  s.out_channels = weight.shape(0);
  s.kernel_h = weight.shape(2);
  s.kernel_w = weight.shape(3);
  s.groups = groups;
  std::tie(s.stride_h, s.stride_w) = stride;
  std::tie(s.pad_h, s.pad_w) = padding;
  std::tie(s.dilation_h, s.dilation_w) = dilation;
  s.out_h = output.shape(2);
  s.out_w = output.shape(3);
  return s;
}

bool is_float32(const py::array& arr) {
  if (arr.dtype().is(py::dtype::of<float>())) return true;
  if (arr.dtype().is(py::dtype::of<double>())) return false;
  throw py::type_error("deepkern kernels support float32 and float64 arrays");
}

void conv2d_forward(const py::array& x, const py::array& w, const py::object& bias, py::array& y,
                    Pair stride, Pair padding, Pair dilation, int64_t groups) {
  const cpu::Conv2dShape s = conv_shape(x, w, y, stride, padding, dilation, groups);
  const bool f32 = is_float32(x);
  const void* xp = x.data();
  const void* wp = w.data();
  void* yp = y.mutable_data();
  const void* bp = bias.is_none() ? nullptr : bias.cast<py::array>().data();
  py::gil_scoped_release release;
  if (f32)
    cpu::conv2d_forward<float>(s, static_cast<const float*>(xp), static_cast<const float*>(wp),
                               static_cast<const float*>(bp), static_cast<float*>(yp));
  else
    cpu::conv2d_forward<double>(s, static_cast<const double*>(xp), static_cast<const double*>(wp),
                                static_cast<const double*>(bp), static_cast<double*>(yp));
}

void conv2d_backward_data(const py::array& grad_y, const py::array& w, py::array& grad_x,
                          Pair stride, Pair padding, Pair dilation, int64_t groups) {
  const cpu::Conv2dShape s = conv_shape(grad_x, w, grad_y, stride, padding, dilation, groups);
  const bool f32 = is_float32(grad_y);
  const void* gyp = grad_y.data();
  const void* wp = w.data();
  void* gxp = grad_x.mutable_data();
  py::gil_scoped_release release;
  if (f32)
    cpu::conv2d_backward_data<float>(s, static_cast<const float*>(gyp), static_cast<const float*>(wp),
                                     static_cast<float*>(gxp));
  else
    cpu::conv2d_backward_data<double>(s, static_cast<const double*>(gyp), static_cast<const double*>(wp),
                                      static_cast<double*>(gxp));
}

void conv2d_backward_weight(const py::array& grad_y, const py::array& x, py::array& grad_w,
                            const py::object& grad_bias, Pair stride, Pair padding, Pair dilation,
                            int64_t groups) {
  const cpu::Conv2dShape s = conv_shape(x, grad_w, grad_y, stride, padding, dilation, groups);
  const bool f32 = is_float32(grad_y);
  const void* gyp = grad_y.data();
  const void* xp = x.data();
  void* gwp = grad_w.mutable_data();
  void* gbp = grad_bias.is_none() ? nullptr : grad_bias.cast<py::array>().mutable_data();
  py::gil_scoped_release release;
  if (f32)
    cpu::conv2d_backward_weight<float>(s, static_cast<const float*>(gyp), static_cast<const float*>(xp),
                                       static_cast<float*>(gwp), static_cast<float*>(gbp));
  else
    cpu::conv2d_backward_weight<double>(s, static_cast<const double*>(gyp), static_cast<const double*>(xp),
                                        static_cast<double*>(gwp), static_cast<double*>(gbp));
}

// ---- LSTM ---------------------------------------------------------------------------------------
// Arrays arrive C-contiguous, of one float dtype, with shapes checked by deepkern.ops.lstm:
// x (T, B, I), w_hh (4H, H); optional arrays are None.

template <class T>
const T* optional_data(const py::object& arr) {
  return arr.is_none() ? nullptr : static_cast<const T*>(arr.cast<py::array>().data());
}

template <class T>
T* data_of(py::array& arr) {
  return static_cast<T*>(arr.mutable_data());
}

template <class T>
T* optional_output(const py::object& arr) {
  return arr.is_none() ? nullptr : static_cast<T*>(arr.cast<py::array>().mutable_data());
}

cpu::LstmShape lstm_shape(const py::array& x, const py::array& w_hh, bool reverse) {
  return {x.shape(0), x.shape(1), x.shape(2), w_hh.shape(1), reverse};
}

void lstm_forward(const py::array& x, const py::object& h0, const py::object& c0, const py::array& w_ih,
                  const py::array& w_hh, const py::object& bias, py::array& y, py::array& h_last,
                  py::array& c_last, const py::object& gates, const py::object& cells,
                  const py::object& hidden, bool reverse) {
  if (gates.is_none() != cells.is_none() || gates.is_none() != hidden.is_none())
    throw std::invalid_argument("lstm_forward: gates, cells and hidden are all arrays (a cache) or all None");
  const cpu::LstmShape s = lstm_shape(x, w_hh, reverse);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T *xp = static_cast<const T*>(x.data()), *h0p = optional_data<T>(h0), *c0p = optional_data<T>(c0);
    const T *wip = static_cast<const T*>(w_ih.data()), *whp = static_cast<const T*>(w_hh.data());
    const T* bp = optional_data<T>(bias);
    T *yp = data_of<T>(y), *hp = data_of<T>(h_last), *cp = data_of<T>(c_last);
    T *gp = optional_output<T>(gates), *cellp = optional_output<T>(cells), *hidp = optional_output<T>(hidden);
    py::gil_scoped_release release;
    cpu::lstm_forward<T>(s, xp, h0p, c0p, wip, whp, bp, yp, hp, cp, gp, cellp, hidp);
  };
  if (is_float32(x)) run(0.0f); else run(0.0);
}

void lstm_backward(const py::object& grad_y, const py::object& grad_h_last, const py::object& grad_c_last,
                   const py::array& x, const py::object& h0, const py::object& c0, const py::array& w_ih,
                   const py::array& w_hh, const py::array& gates, const py::array& cells,
                   const py::array& hidden, py::array& grad_x, py::array& grad_h0, py::array& grad_c0,
                   py::array& grad_w_ih, py::array& grad_w_hh, py::array& grad_bias, bool reverse) {
  const cpu::LstmShape s = lstm_shape(x, w_hh, reverse);
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const T *gy = optional_data<T>(grad_y), *ghl = optional_data<T>(grad_h_last), *gcl = optional_data<T>(grad_c_last);
    const T *xp = static_cast<const T*>(x.data()), *h0p = optional_data<T>(h0), *c0p = optional_data<T>(c0);
    const T *wip = static_cast<const T*>(w_ih.data()), *whp = static_cast<const T*>(w_hh.data());
    const T *gp = static_cast<const T*>(gates.data()), *cellp = static_cast<const T*>(cells.data());
    const T* hidp = static_cast<const T*>(hidden.data());
    T *gx = data_of<T>(grad_x), *gh0 = data_of<T>(grad_h0), *gc0 = data_of<T>(grad_c0);
    T *gwi = data_of<T>(grad_w_ih), *gwh = data_of<T>(grad_w_hh), *gb = data_of<T>(grad_bias);
    py::gil_scoped_release release;
    cpu::lstm_backward<T>(s, gy, ghl, gcl, xp, h0p, c0p, wip, whp, gp, cellp, hidp, gx, gh0, gc0, gwi, gwh, gb);
  };
  if (is_float32(x)) run(0.0f); else run(0.0);
}

// ---- pooling -------------------------------------------------------------------------------
// Arrays are C-contiguous NCHW; `shape` is (planes, in_h, in_w, out_h, out_w, kernel_h, kernel_w,
// stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w), validated by deepkern.ops.pool. The
// checks here only keep a direct call of deepkern._C from writing outside an array.

using PoolShapeTuple = std::array<int64_t, 13>;

cpu::Pool2dShape pool_shape(const PoolShapeTuple& t) {
  return {t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12]};
}

// `arr` is a C-contiguous array of `count` elements of `dtype`.
template <class T>
T* pool_data(const py::array& arr, int64_t count, const char* name) {
  if (!arr.dtype().is(py::dtype::of<T>()) || !(arr.flags() & py::array::c_style) || arr.size() != count)
    throw std::invalid_argument(std::string(name) + " must be a C-contiguous array of " + std::to_string(count) +
                                " elements of the pooling dtype");
  return static_cast<T*>(const_cast<void*>(arr.data()));
}

// Calls f(T{}) with T = float or double, the dtype of `x`.
template <class F>
void pool_dispatch(const py::array& x, const char* op, F&& f) {
  if (x.dtype().is(py::dtype::of<float>())) f(float{});
  else if (x.dtype().is(py::dtype::of<double>())) f(double{});
  else throw py::type_error(std::string(op) + " supports float32 and float64");
}

void max_pool2d(const py::array& x, py::array& out, const py::object& indices, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = pool_shape(shape);
  pool_dispatch(x, "max_pool2d", [&](auto zero) {
    using T = decltype(zero);
    const T* xp = pool_data<T>(x, s.planes * s.in_h * s.in_w, "x");
    T* op = pool_data<T>(out, s.planes * s.out_h * s.out_w, "out");
    int64_t* ip = indices.is_none() ? nullptr
        : pool_data<int64_t>(indices.cast<py::array>(), s.planes * s.out_h * s.out_w, "indices");
    py::gil_scoped_release release;
    cpu::max_pool2d<T>(s, xp, op, ip);
  });
}

void max_pool2d_backward(const py::array& grad_out, const py::array& indices, py::array& grad_x,
                         const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = pool_shape(shape);
  pool_dispatch(grad_out, "max_pool2d_backward", [&](auto zero) {
    using T = decltype(zero);
    const T* gp = pool_data<T>(grad_out, s.planes * s.out_h * s.out_w, "grad_out");
    const int64_t* ip = pool_data<int64_t>(indices, s.planes * s.out_h * s.out_w, "indices");
    T* gxp = pool_data<T>(grad_x, s.planes * s.in_h * s.in_w, "grad_x");
    py::gil_scoped_release release;
    cpu::max_pool2d_backward<T>(s, gp, ip, gxp);
  });
}

void avg_pool2d(const py::array& x, py::array& out, const PoolShapeTuple& shape, bool count_include_pad,
                int64_t divisor_override) {
  const cpu::Pool2dShape s = pool_shape(shape);
  pool_dispatch(x, "avg_pool2d", [&](auto zero) {
    using T = decltype(zero);
    const T* xp = pool_data<T>(x, s.planes * s.in_h * s.in_w, "x");
    T* op = pool_data<T>(out, s.planes * s.out_h * s.out_w, "out");
    py::gil_scoped_release release;
    cpu::avg_pool2d<T>(s, xp, op, count_include_pad, divisor_override);
  });
}

void avg_pool2d_backward(const py::array& grad_out, py::array& grad_x, const PoolShapeTuple& shape,
                         bool count_include_pad, int64_t divisor_override) {
  const cpu::Pool2dShape s = pool_shape(shape);
  pool_dispatch(grad_out, "avg_pool2d_backward", [&](auto zero) {
    using T = decltype(zero);
    const T* gp = pool_data<T>(grad_out, s.planes * s.out_h * s.out_w, "grad_out");
    T* gxp = pool_data<T>(grad_x, s.planes * s.in_h * s.in_w, "grad_x");
    py::gil_scoped_release release;
    cpu::avg_pool2d_backward<T>(s, gp, gxp, count_include_pad, divisor_override);
  });
}

void adaptive_avg_pool2d(const py::array& x, py::array& out, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = pool_shape(shape);
  pool_dispatch(x, "adaptive_avg_pool2d", [&](auto zero) {
    using T = decltype(zero);
    const T* xp = pool_data<T>(x, s.planes * s.in_h * s.in_w, "x");
    T* op = pool_data<T>(out, s.planes * s.out_h * s.out_w, "out");
    py::gil_scoped_release release;
    cpu::adaptive_avg_pool2d<T>(s, xp, op);
  });
}

void adaptive_avg_pool2d_backward(const py::array& grad_out, py::array& grad_x, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = pool_shape(shape);
  pool_dispatch(grad_out, "adaptive_avg_pool2d_backward", [&](auto zero) {
    using T = decltype(zero);
    const T* gp = pool_data<T>(grad_out, s.planes * s.out_h * s.out_w, "grad_out");
    T* gxp = pool_data<T>(grad_x, s.planes * s.in_h * s.in_w, "grad_x");
    py::gil_scoped_release release;
    cpu::adaptive_avg_pool2d_backward<T>(s, gp, gxp);
  });
}

// ---- optimizer steps ---------------------------------------------------------------------------
// Lists with one entry per parameter tensor, validated by deepkern.ops.optim (arrays of one float
// dtype and one shape per tensor, C-contiguous, param and states writeable); a state list the
// options do not use is None. `steps` holds one int per tensor (Adam: the step count; SGD: nonzero
// on the first step) or is None. The checks here read only pointers and sizes: they keep a direct
// call of deepkern._C from writing outside an array, and reject arrays of one tensor that share
// memory (which the ops cannot see cheaply for long lists), naming both.

// Names of the lists, in the order params, grads, state[0..2].
using OptimNames = std::array<const char*, 5>;

template <class T>
py::array optim_array(const py::handle& item, const char* name, size_t i, bool write) {
  if (!py::isinstance<py::array>(item))
    throw py::type_error(std::string(name) + "[" + std::to_string(i) + "] must be a numpy.ndarray");
  auto arr = py::reinterpret_borrow<py::array>(item);
  if (!arr.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + "[" + std::to_string(i) + "] has a dtype other than params[0]'s");
  if (!(arr.flags() & py::array::c_style) || (write && !arr.writeable()))
    throw py::value_error(std::string(name) + "[" + std::to_string(i) + "] must be C-contiguous" +
                          (write ? " and writeable" : ""));
  return arr;
}

template <class T>
std::vector<cpu::OptimTensor<T>> optim_tensors(const py::list& params, const py::list& grads,
                                               const std::array<py::object, 3>& states, const py::object& steps,
                                               const OptimNames& names) {
  const size_t count = params.size();
  std::array<py::list, 3> state_lists;
  bool used[3] = {false, false, false};
  for (int k = 0; k < 3; ++k) {
    if (states[k].is_none()) continue;
    state_lists[k] = states[k].cast<py::list>();
    used[k] = true;
    if (state_lists[k].size() != count) throw py::value_error(std::string(names[k + 2]) + " and params differ in length");
  }
  if (grads.size() != count) throw py::value_error("grads and params differ in length");
  std::vector<int64_t> step_values;
  if (!steps.is_none()) {
    step_values = steps.cast<std::vector<int64_t>>();
    if (step_values.size() != count) throw py::value_error("steps and params differ in length");
  }
  std::vector<cpu::OptimTensor<T>> tensors(count);
  for (size_t i = 0; i < count; ++i) {
    py::array arrays[5] = {optim_array<T>(params[i], names[0], i, true), optim_array<T>(grads[i], names[1], i, false)};
    const bool present[5] = {true, true, used[0], used[1], used[2]};
    for (int k = 0; k < 3; ++k)
      if (used[k]) arrays[k + 2] = optim_array<T>(state_lists[k][i], names[k + 2], i, true);
    const int64_t size = arrays[0].size();
    const char* lo[5] = {};
    for (int a = 0; a < 5; ++a) {
      if (!present[a]) continue;
      if (arrays[a].size() != size)
        throw py::value_error(std::string(names[a]) + "[" + std::to_string(i) + "] and params[" +
                              std::to_string(i) + "] differ in size");
      lo[a] = static_cast<const char*>(arrays[a].data());
      for (int b = 0; b < a && size > 0; ++b)
        if (lo[b] && lo[a] < lo[b] + size * sizeof(T) && lo[b] < lo[a] + size * sizeof(T))
          throw py::value_error(std::string(names[a]) + "[" + std::to_string(i) + "] overlaps " + names[b] + "[" +
                                std::to_string(i) + "]");
    }
    auto& t = tensors[i];
    t.param = static_cast<T*>(arrays[0].mutable_data());
    t.grad = static_cast<const T*>(arrays[1].data());
    for (int k = 0; k < 3; ++k) t.state[k] = used[k] ? static_cast<T*>(arrays[k + 2].mutable_data()) : nullptr;
    t.size = size;
    t.step = step_values.empty() ? 0 : step_values[i];
  }
  return tensors;
}

// Calls run(T{}) with T = the dtype of params[0] (float32 or float64); an empty list does nothing.
template <class Run>
void optim_dispatch(const py::list& params, Run&& run) {
  if (params.size() == 0) return;
  py::handle first = params[0];
  if (py::isinstance<py::array>(first) && py::reinterpret_borrow<py::array>(first).dtype().is(py::dtype::of<double>()))
    run(0.0);
  else if (py::isinstance<py::array>(first) && py::reinterpret_borrow<py::array>(first).dtype().is(py::dtype::of<float>()))
    run(0.0f);
  else
    throw py::type_error("params[0] must be a float32 or float64 numpy.ndarray");
}

void sgd_step(const py::list& params, const py::list& grads, const py::object& momentum_buffers,
              const py::object& first_steps, double lr, double momentum, double dampening, double weight_decay,
              bool nesterov, bool maximize) {
  const cpu::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize};
  const py::object none = py::none();
  optim_dispatch(params, [&](auto zero) {
    using T = decltype(zero);
    const auto tensors = optim_tensors<T>(params, grads, {momentum != 0 ? momentum_buffers : none, none, none},
                                          first_steps, {"params", "grads", "momentum_buffers", "", ""});
    py::gil_scoped_release release;
    cpu::sgd_step<T>(o, tensors.data(), static_cast<int64_t>(tensors.size()));
  });
}

void adam_step(const py::list& params, const py::list& grads, const py::list& exp_avgs, const py::list& exp_avg_sqs,
               const py::object& max_exp_avg_sqs, const py::object& steps, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  const cpu::AdamOptions o{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay};
  optim_dispatch(params, [&](auto zero) {
    using T = decltype(zero);
    const auto tensors = optim_tensors<T>(params, grads, {exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : py::none()},
                                          steps, {"params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"});
    for (const auto& t : tensors)
      if (t.step < 1) throw py::value_error("steps must be >= 1 (the count including this step)");
    py::gil_scoped_release release;
    cpu::adam_step<T>(o, tensors.data(), static_cast<int64_t>(tensors.size()));
  });
}

void rmsprop_step(const py::list& params, const py::list& grads, const py::list& square_avgs,
                  const py::object& momentum_buffers, const py::object& grad_avgs, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize) {
  const cpu::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
  const py::object none = py::none();
  optim_dispatch(params, [&](auto zero) {
    using T = decltype(zero);
    const auto tensors = optim_tensors<T>(
        params, grads, {square_avgs, momentum > 0 ? momentum_buffers : none, centered ? grad_avgs : none}, none,
        {"params", "grads", "square_avgs", "momentum_buffers", "grad_avgs"});
    py::gil_scoped_release release;
    cpu::rmsprop_step<T>(o, tensors.data(), static_cast<int64_t>(tensors.size()));
  });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "deepkern CPU kernels";
  m.attr("__version__") = DEEPKERN_VERSION;
  m.attr("compiler") = DEEPKERN_COMPILER;

  m.def("cpu_brand", &cpu_brand);
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); },
        "Best kernel ISA this CPU supports.");
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); },
        "Kernel ISA in use.");
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); },
        py::arg("isa"), "Choose the kernel ISA ('avx512', 'avx2', 'generic').");
  m.def("isa_families", [] {
          std::vector<std::string> names;
          for (int f = 0; f < static_cast<int>(IsaFamily::count); ++f)
            names.emplace_back(family_name(static_cast<IsaFamily>(f)));
          return names;
        },
        "The kernel families with per-ISA code.");
  m.def("last_isa",
        [](const std::string& family) -> py::object {
          const char* isa = last_isa_used(family_from_name(family.c_str()));
          return isa ? py::object(py::str(isa)) : py::object(py::none());
        },
        py::arg("family"), "The ISA the family's last kernel call ran on (None if it has not run).");
  m.def("reset_isa_records", &reset_isa_records, "Forget which ISA each family ran on last.");
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("gemm_kernel_name", &cpu::gemm_kernel_name, py::arg("double_precision") = false);

  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("a_offsets"),
        py::arg("b_offsets"), py::arg("c_offsets"), py::arg("k"), py::arg("alpha"),
        py::arg("beta"), py::arg("bias"), py::arg("bias_axis"), py::arg("relu"));

  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("y"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("grad_y"), py::arg("w"),
        py::arg("grad_x"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("grad_y"), py::arg("x"),
        py::arg("grad_w"), py::arg("grad_bias"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"));

  // pooling (deepkern.ops.pool)
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("out"), py::arg("indices"), py::arg("shape"));
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_out"), py::arg("indices"),
        py::arg("grad_x"), py::arg("shape"));
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("out"), py::arg("shape"),
        py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_out"), py::arg("grad_x"), py::arg("shape"),
        py::arg("count_include_pad"), py::arg("divisor_override"));
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d, py::arg("x"), py::arg("out"), py::arg("shape"));
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_out"),
        py::arg("grad_x"), py::arg("shape"));

  m.def("lstm_forward", &lstm_forward, py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("bias"), py::arg("y"), py::arg("h_last"), py::arg("c_last"),
        py::arg("gates"), py::arg("cells"), py::arg("hidden"), py::arg("reverse"));
  m.def("lstm_backward", &lstm_backward, py::arg("grad_y"), py::arg("grad_h_last"), py::arg("grad_c_last"),
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"),
        py::arg("cells"), py::arg("hidden"), py::arg("grad_x"), py::arg("grad_h0"), py::arg("grad_c0"),
        py::arg("grad_w_ih"), py::arg("grad_w_hh"), py::arg("grad_bias"), py::arg("reverse"));

  // optimizer steps (deepkern.ops.optim): lists of arrays, one entry per parameter tensor
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
        py::arg("first_steps"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"),
        py::arg("nesterov"), py::arg("maximize"));
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("amsgrad"), py::arg("maximize"),
        py::arg("decoupled_weight_decay"));
  m.def("rmsprop_step", &rmsprop_step, py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
        py::arg("momentum_buffers"), py::arg("grad_avgs"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"));

  bind_activation(m);

  m.def("measure_fma_gflops",
        [](const std::string& isa, int threads, double seconds) {
          const Isa chosen = isa_from_name(isa);
          if (static_cast<int>(chosen) > static_cast<int>(detected_isa()))
            throw std::invalid_argument("isa '" + isa + "' is not supported by this CPU");
          if (threads < 1) throw std::invalid_argument("threads must be >= 1");
          py::gil_scoped_release release;
          return cpu::measure_fma_gflops(chosen, threads, seconds);
        },
        py::arg("isa"), py::arg("threads"), py::arg("seconds") = 0.2);
  m.def("measure_copy_gbps",
        [](int64_t bytes, int threads, int repeats) {
          if (bytes < 64 || threads < 1) throw std::invalid_argument("bytes must be >= 64 and threads >= 1");
          py::gil_scoped_release release;
          return cpu::measure_copy_gbps(bytes, threads, repeats);
        },
        py::arg("bytes"), py::arg("threads"), py::arg("repeats") = 5);
}
