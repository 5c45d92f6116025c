// deepkern._C, optimizer steps: SGD, Adam / AdamW and RMSprop over lists of parameter tensors
// (deepkern.ops.optim).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cpu/optim/optim.h"
#include "python/boundary.h"

namespace deepkern::python {
namespace {

// Every optimizer binding's contract: lists with one entry per parameter tensor. params[i], grads[i]
// and entry i of each state list the options use are C-contiguous arrays of params[0]'s float dtype
// and of params[i]'s element count; params and the states are updated in place, and no array that is
// written shares memory with any other array of the call, of its own tensor or of another (threads
// update the tensors at once; deepkern.ops cannot see that cheaply for long lists). A state list the
// options do not use is not read (None is fine). The per-tensor ints (Adam: the step count including
// this step, >= 1; SGD: nonzero on the first step) are a list or None. An empty params does nothing.

// Names of the lists, in the order params, grads, state[0..2], and of the per-tensor ints.
struct OptimNames {
  std::array<const char*, 5> lists;
  const char* ints;
};

// The kernel's tensors from the lists (a state list that is None is not used), checked as the
// contract says; then run(tensors) with the GIL held, T the dtype of params[0].
template <class Run>
void optim_step(const char* op, const py::list& params, const py::list& grads, const std::array<py::object, 3>& states,
                const py::object& ints, const OptimNames& names, Run&& run) {
  const size_t count = params.size();
  if (count == 0) return;
  auto same_length = [&](size_t length, const char* name) {
    if (length != count)
      throw py::value_error(std::string(op) + ": " + name + " has " + std::to_string(length) +
                            " entries but params has " + std::to_string(count));
  };
  same_length(grads.size(), names.lists[1]);
  std::array<std::optional<py::list>, 3> state_lists;
  for (int k = 0; k < 3; ++k) {
    if (states[k].is_none()) continue;
    state_lists[k] = states[k].cast<py::list>();
    same_length(state_lists[k]->size(), names.lists[k + 2]);
  }
  std::vector<int64_t> int_values(count, 0);
  if (!ints.is_none()) {
    try {
      int_values = ints.cast<std::vector<int64_t>>();
    } catch (const py::cast_error&) {
      throw py::type_error(std::string(op) + ": " + names.ints + " must be a list of ints");
    }
    same_length(int_values.size(), names.ints);
  }
  dispatch_float(params[0], op, "params[0]", [&](auto zero) {
    using T = decltype(zero);
    std::vector<cpu::OptimTensor<T>> tensors(count);
    for (size_t i = 0; i < count; ++i) {
      const std::string at = "[" + std::to_string(i) + "]";
      KernelArrays<T> arrays(op, "params[0]");
      const int64_t size = as_array(params[i], op, names.lists[0] + at).size();
      const Extent extent = Extent::elements(size);
      cpu::OptimTensor<T>& t = tensors[i];
      t.param = arrays.output(params[i], names.lists[0] + at, extent);
      t.grad = arrays.input(grads[i], names.lists[1] + at, extent);
      for (int k = 0; k < 3; ++k)
        t.state[k] = state_lists[k] ? arrays.output((*state_lists[k])[i], names.lists[k + 2] + at, extent) : nullptr;
      t.size = size;
      t.step = int_values[i];
    }
    check_tensors_apart(op, tensors, names);
    run(tensors);
  });
}

// One array of an optimizer call: its bytes [lo, hi), whether the kernel writes it, its name.
struct OptimSpan {
  uintptr_t lo, hi;
  bool written;
  size_t tensor;
  int list;  // index into OptimNames::lists
};

// Throws naming two arrays of different tensors that share memory where either is written (arrays
// of one tensor were compared as they were taken). Sorted by start, an array overlaps an earlier one
// exactly when it starts before the largest end so far: of all earlier arrays if it is written, of
// the earlier written arrays if it is only read.
template <class T>
void check_tensors_apart(const char* op, const std::vector<cpu::OptimTensor<T>>& tensors, const OptimNames& names) {
  std::vector<OptimSpan> spans;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const auto add = [&](const void* data, bool written, int list) {
      const auto lo = reinterpret_cast<uintptr_t>(data);
      if (data && t.size > 0) spans.push_back({lo, lo + t.size * sizeof(T), written, i, list});
    };
    add(t.param, true, 0);
    add(t.grad, false, 1);
    for (int k = 0; k < 3; ++k) add(t.state[k], true, k + 2);
  }
  std::sort(spans.begin(), spans.end(), [](const OptimSpan& a, const OptimSpan& b) { return a.lo < b.lo; });
  const OptimSpan* reaching = nullptr;          // the earlier array that ends last
  const OptimSpan* reaching_written = nullptr;  // the earlier written array that ends last
  auto name = [&](const OptimSpan& s) {
    return std::string(names.lists[s.list]) + "[" + std::to_string(s.tensor) + "]";
  };
  for (const OptimSpan& now : spans) {
    const OptimSpan* other = now.written ? reaching : reaching_written;
    if (other && now.lo < other->hi && other->tensor != now.tensor)
      throw py::value_error(std::string(op) + ": " + name(now) + " overlaps " + name(*other) +
                            " (the tensors are updated at the same time)");
    if (!reaching || now.hi > reaching->hi) reaching = &now;
    if (now.written && (!reaching_written || now.hi > reaching_written->hi)) reaching_written = &now;
  }
}

// ValueError unless a state list the options use (`used`, `reason` says when) was given: the kernel
// would read and write through a null pointer.
void require_state(const char* op, const py::object& list, const char* name, bool used, const char* reason) {
  if (used && list.is_none())
    throw py::value_error(std::string(op) + ": " + name + " is required when " + reason + ", got None");
}

template <class T>
int64_t tensor_count(const std::vector<cpu::OptimTensor<T>>& tensors) {
  return static_cast<int64_t>(tensors.size());
}

// SGD: state momentum_buffers (used when momentum != 0); first_steps nonzero where a buffer holds no
// history yet (it is then set to the gradient).
void sgd_step(const py::list& params, const py::list& grads, const py::object& momentum_buffers,
              const py::object& first_steps, double lr, double momentum, double dampening, double weight_decay,
              bool nesterov, bool maximize) {
  const cpu::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize};
  const py::object none = py::none();
  require_state("sgd_step", momentum_buffers, "momentum_buffers", momentum != 0, "momentum != 0");
  optim_step("sgd_step", params, grads, {momentum != 0 ? momentum_buffers : none, none, none}, first_steps,
             {{"params", "grads", "momentum_buffers", "", ""}, "first_steps"}, [&](const auto& tensors) {
               py::gil_scoped_release release;
               cpu::sgd_step(o, tensors.data(), tensor_count(tensors));
             });
}

// Adam / AdamW (decoupled_weight_decay): states exp_avgs, exp_avg_sqs and max_exp_avg_sqs (amsgrad);
// steps, each >= 1.
void adam_step(const py::list& params, const py::list& grads, const py::list& exp_avgs, const py::list& exp_avg_sqs,
               const py::object& max_exp_avg_sqs, const py::object& steps, double lr, double beta1, double beta2,
               double eps, double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  const cpu::AdamOptions o{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay};
  require_state("adam_step", max_exp_avg_sqs, "max_exp_avg_sqs", amsgrad, "amsgrad is true");
  optim_step("adam_step", params, grads, {exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : py::none()}, steps,
             {{"params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"}, "steps"}, [&](const auto& tensors) {
               for (const auto& t : tensors)
                 if (t.step < 1) throw py::value_error("adam_step: steps must be >= 1 (the count including this step)");
               py::gil_scoped_release release;
               cpu::adam_step(o, tensors.data(), tensor_count(tensors));
             });
}

// RMSprop: states square_avgs, momentum_buffers (momentum > 0) and grad_avgs (centered).
void rmsprop_step(const py::list& params, const py::list& grads, const py::list& square_avgs,
                  const py::object& momentum_buffers, const py::object& grad_avgs, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize) {
  const cpu::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
  const py::object none = py::none();
  require_state("rmsprop_step", momentum_buffers, "momentum_buffers", momentum > 0, "momentum > 0");
  require_state("rmsprop_step", grad_avgs, "grad_avgs", centered, "centered is true");
  optim_step("rmsprop_step", params, grads,
             {square_avgs, momentum > 0 ? momentum_buffers : none, centered ? grad_avgs : none}, none,
             {{"params", "grads", "square_avgs", "momentum_buffers", "grad_avgs"}, ""}, [&](const auto& tensors) {
               py::gil_scoped_release release;
               cpu::rmsprop_step(o, tensors.data(), tensor_count(tensors));
             });
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("first_steps"),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"));
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("amsgrad"), py::arg("maximize"), py::arg("decoupled_weight_decay"));
  m.def("rmsprop_step", &rmsprop_step, py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
        py::arg("momentum_buffers"), py::arg("grad_avgs"), py::arg("lr"), py::arg("alpha"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("momentum"), py::arg("centered"), py::arg("maximize"));
}

}  // namespace deepkern::python
