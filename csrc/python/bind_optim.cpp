// deepkern._C, optimizer steps: SGD, Adam / AdamW and RMSprop over lists of parameter tensors
// (deepkern.ops.optim). The arguments and list checks are every device's (optim_binding.h); this
// file checks NumPy arrays and runs the CPU kernels.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/optim/optim.h"
#include "python/boundary.h"
#include "python/optim_binding.h"

namespace deepkern::python {
namespace {

// The CPU policy of def_optim_steps: NumPy arrays checked by KernelArrays (which also compares
// the arrays of one tensor), kernels run without the GIL.
struct CpuOptim {
  template <class Run>
  static void tensors(const char* op, const OptimLists& lists, const OptimNames& names, Run&& run) {
    dispatch_float(lists.params[0], op, "params[0]", [&](auto zero) {
      using T = decltype(zero);
      std::vector<cpu::OptimTensor<T>> tensors(lists.count());
      for (size_t i = 0; i < lists.count(); ++i) {
        const std::string at = "[" + std::to_string(i) + "]";
        KernelArrays<T> arrays(op, "params[0]");
        const int64_t size = as_array(lists.params[i], op, names.lists[0] + at).size();
        const Extent extent = Extent::elements(size);
        cpu::OptimTensor<T>& t = tensors[i];
        t.param = arrays.output(lists.params[i], names.lists[0] + at, extent);
        t.grad = arrays.input(lists.grads[i], names.lists[1] + at, extent);
        for (int k = 0; k < 3; ++k)
          t.state[k] =
              lists.states[k] ? arrays.output((*lists.states[k])[i], names.lists[k + 2] + at, extent) : nullptr;
        t.size = size;
        t.step = lists.ints[i];
      }
      check_tensors_apart(op, tensors, names, false);
      run(tensors);
    });
  }
  template <class T>
  static void sgd(const cpu::SgdOptions& o, const std::vector<cpu::OptimTensor<T>>& t) {
    py::gil_scoped_release release;
    cpu::sgd_step(o, t.data(), static_cast<int64_t>(t.size()));
  }
  template <class T>
  static void adam(const cpu::AdamOptions& o, const std::vector<cpu::OptimTensor<T>>& t) {
    py::gil_scoped_release release;
    cpu::adam_step(o, t.data(), static_cast<int64_t>(t.size()));
  }
  template <class T>
  static void rmsprop(const cpu::RmspropOptions& o, const std::vector<cpu::OptimTensor<T>>& t) {
    py::gil_scoped_release release;
    cpu::rmsprop_step(o, t.data(), static_cast<int64_t>(t.size()));
  }
};

}  // namespace

void bind_optim(py::module_& m) { def_optim_steps<CpuOptim>(m); }

}  // namespace deepkern::python
