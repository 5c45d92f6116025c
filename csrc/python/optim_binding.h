// The optimizer bindings of every device (deepkern._C: bind_optim.cpp, deepkern._cuda:
// bind_cuda_optim.cpp): one set of arguments, list checks and overlap checks, and a device policy
// that turns the lists' arrays into kernel tensors and runs the kernels.
//
// Contract of every optimizer binding: lists with one entry per parameter tensor. params[i], grads[i]
// and entry i of each state list the options use are C-contiguous arrays of the device, of
// params[0]'s float dtype and of params[i]'s element count; params and the states are updated in
// place, and no array that is written shares memory with any other array of the call, of its own
// tensor or of another (the tensors are updated at once; deepkern.ops cannot see that cheaply for
// long lists). A state list the options do not use is not read (None is fine). The per-tensor ints
// (Adam: the step count including this step, >= 1; SGD: nonzero on the first step) are a list or
// None. An empty params does nothing.
//
// A device policy `Device` provides
//   template <class Run> static void tensors(const char* op, const OptimLists& lists, const OptimNames&, Run run):
//     checks every array of `lists` and calls run(std::vector<cpu::OptimTensor<T>>) with T the
//     dtype of params[0] (the ints already stored in each tensor's `step`), GIL held;
//   template <class T> static void sgd / adam / rmsprop(options, tensors): runs the kernel.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cpu/optim/optim.h"

namespace deepkern::python {
namespace py = pybind11;

// Names of the lists, in the order params, grads, state[0..2], and of the per-tensor ints.
struct OptimNames {
  std::array<const char*, 5> lists;
  const char* ints;
};

// The lists of one call with their lengths checked: states[k] empty where the options do not use
// state k, ints one per tensor (zeros when None).
struct OptimLists {
  py::list params, grads;
  std::array<std::optional<py::list>, 3> states;
  std::vector<int64_t> ints;
  size_t count() const { return params.size(); }
};

inline OptimLists optim_lists(const char* op, const py::list& params, const py::list& grads,
                              const std::array<py::object, 3>& states, const py::object& ints,
                              const OptimNames& names) {
  OptimLists lists{params, grads, {}, std::vector<int64_t>(params.size(), 0)};
  const size_t count = params.size();
  if (count == 0) return lists;  // nothing to do: the other lists are not looked at
  auto same_length = [&](size_t length, const char* name) {
    if (length != count)
      throw py::value_error(std::string(op) + ": " + name + " has " + std::to_string(length) +
                            " entries but params has " + std::to_string(count));
  };
  same_length(grads.size(), names.lists[1]);
  for (int k = 0; k < 3; ++k) {
    if (states[k].is_none()) continue;
    lists.states[k] = states[k].cast<py::list>();
    same_length(lists.states[k]->size(), names.lists[k + 2]);
  }
  if (!ints.is_none()) {
    try {
      lists.ints = ints.cast<std::vector<int64_t>>();
    } catch (const py::cast_error&) {
      throw py::type_error(std::string(op) + ": " + names.ints + " must be a list of ints");
    }
    same_length(lists.ints.size(), names.ints);
  }
  return lists;
}

// One array of an optimizer call: its bytes [lo, hi), whether the kernel writes it, its name.
struct OptimSpan {
  uintptr_t lo, hi;
  bool written;
  size_t tensor;
  int list;  // index into OptimNames::lists
};

// Throws naming two arrays that share memory where either is written: arrays of different tensors
// always, arrays of one tensor too when `within_tensors` (a device whose arrays were not compared
// as they were taken). Sorted by start, an array overlaps an earlier one exactly when it starts
// before the largest end so far: of all earlier arrays if it is written, of the earlier written
// arrays if it is only read. (Within one tensor, the earlier array that ends last may be of the same
// tensor while another overlapping one is not: then the pair found is named.)
template <class T>
void check_tensors_apart(const char* op, const std::vector<cpu::OptimTensor<T>>& tensors, const OptimNames& names,
                         bool within_tensors) {
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
    if (other && now.lo < other->hi && (within_tensors || other->tensor != now.tensor))
      throw py::value_error(std::string(op) + ": " + name(now) + " overlaps " + name(*other) +
                            " (the tensors are updated at the same time)");
    if (!reaching || now.hi > reaching->hi) reaching = &now;
    if (now.written && (!reaching_written || now.hi > reaching_written->hi)) reaching_written = &now;
  }
}

// ValueError unless a state list the options use (`used`, `reason` says when) was given: the kernel
// would read and write through a null pointer.
inline void require_state(const char* op, const py::object& list, const char* name, bool used, const char* reason) {
  if (used && list.is_none())
    throw py::value_error(std::string(op) + ": " + name + " is required when " + reason + ", got None");
}

// Defines sgd_step, adam_step and rmsprop_step on `m` for the device policy `Device` (see above).
template <class Device>
void def_optim_steps(py::module_& m) {
  m.def(
      "sgd_step",
      [](const py::list& params, const py::list& grads, const py::object& momentum_buffers,
         const py::object& first_steps, double lr, double momentum, double dampening, double weight_decay,
         bool nesterov, bool maximize) {
        // momentum_buffers: used when momentum != 0; first_steps nonzero where a buffer holds no
        // history yet (it is then set to the gradient).
        const cpu::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize};
        const py::object none = py::none();
        require_state("sgd_step", momentum_buffers, "momentum_buffers", momentum != 0, "momentum != 0");
        const OptimNames names{{"params", "grads", "momentum_buffers", "", ""}, "first_steps"};
        const OptimLists lists = optim_lists("sgd_step", params, grads,
                                             {momentum != 0 ? momentum_buffers : none, none, none}, first_steps, names);
        if (lists.count() == 0) return;
        Device::tensors("sgd_step", lists, names, [&](const auto& tensors) { Device::sgd(o, tensors); });
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("first_steps"), py::arg("lr"),
      py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"));
  m.def(
      "adam_step",
      [](const py::list& params, const py::list& grads, const py::list& exp_avgs, const py::list& exp_avg_sqs,
         const py::object& max_exp_avg_sqs, const py::object& steps, double lr, double beta1, double beta2, double eps,
         double weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
        // Adam / AdamW (decoupled_weight_decay); max_exp_avg_sqs used with amsgrad; steps >= 1.
        const cpu::AdamOptions o{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay};
        require_state("adam_step", max_exp_avg_sqs, "max_exp_avg_sqs", amsgrad, "amsgrad is true");
        const OptimNames names{{"params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"}, "steps"};
        const OptimLists lists = optim_lists(
            "adam_step", params, grads, {exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : py::none()}, steps, names);
        if (lists.count() == 0) return;
        for (int64_t step : lists.ints)
          if (step < 1) throw py::value_error("adam_step: steps must be >= 1 (the count including this step)");
        Device::tensors("adam_step", lists, names, [&](const auto& tensors) { Device::adam(o, tensors); });
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
      py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("amsgrad"), py::arg("maximize"), py::arg("decoupled_weight_decay"));
  m.def(
      "rmsprop_step",
      [](const py::list& params, const py::list& grads, const py::list& square_avgs, const py::object& momentum_buffers,
         const py::object& grad_avgs, double lr, double alpha, double eps, double weight_decay, double momentum,
         bool centered, bool maximize) {
        // momentum_buffers used when momentum > 0, grad_avgs when centered.
        const cpu::RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
        const py::object none = py::none();
        require_state("rmsprop_step", momentum_buffers, "momentum_buffers", momentum > 0, "momentum > 0");
        require_state("rmsprop_step", grad_avgs, "grad_avgs", centered, "centered is true");
        const OptimNames names{{"params", "grads", "square_avgs", "momentum_buffers", "grad_avgs"}, ""};
        const OptimLists lists = optim_lists(
            "rmsprop_step", params, grads,
            {square_avgs, momentum > 0 ? momentum_buffers : none, centered ? grad_avgs : none}, none, names);
        if (lists.count() == 0) return;
        Device::tensors("rmsprop_step", lists, names, [&](const auto& tensors) { Device::rmsprop(o, tensors); });
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"), py::arg("grad_avgs"),
      py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
      py::arg("centered"), py::arg("maximize"));
}

}  // namespace deepkern::python
