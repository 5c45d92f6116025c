// deepkern._cuda, optimizer steps on device arrays: sgd_step, adam_step and rmsprop_step with the
// arguments and checks of deepkern._C's (optim_binding.h), the kernels of cuda/optim.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/optim/optim.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"
#include "python/optim_binding.h"

namespace deepkern::python {
namespace {

using deepkern::cuda::shape_text;

// `obj` as a device array of `dtype` on `device`, C-contiguous, of `size` elements (any when
// negative); TypeError / ValueError naming `name` of `op` otherwise.
const cuda::DeviceArray& checked_array(py::handle obj, const char* op, const std::string& name, cuda::DType dtype,
                                       int device, int64_t size) {
  if (!py::isinstance<PyDeviceArray>(obj))
    throw py::type_error(std::string(op) + ": " + name + " must be a deepkern._cuda.DeviceArray, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  const cuda::DeviceArray& a = obj.cast<const PyDeviceArray&>().a;
  const std::string where = std::string(op) + ": " + name;
  if (a.dtype != dtype)
    throw py::type_error(where + " has dtype " + cuda::info(a.dtype).name + " but params[0] has " +
                         cuda::info(dtype).name + "; use one dtype");
  if (a.device != device)
    throw py::value_error(where + " is on cuda:" + std::to_string(a.device) +
                          " but params[0] is on cuda:" + std::to_string(device));
  if (!a.is_contiguous())
    throw py::value_error(where + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                          " for shape " + shape_text(a.shape));
  if (size >= 0 && a.size() != size)
    throw py::value_error(where + " must have " + std::to_string(size) + " elements, got shape " + shape_text(a.shape) +
                          " (" + std::to_string(a.size()) + " elements)");
  return a;
}

// The CUDA policy of def_optim_steps: device arrays of params[0]'s device and dtype, every pair of
// arrays compared for overlap, the kernels queued on that device's current stream.
struct CudaOptim {
  template <class Run>
  static void tensors(const char* op, const OptimLists& lists, const OptimNames& names, Run&& run) {
    if (!py::isinstance<PyDeviceArray>(lists.params[0]))
      throw py::type_error(std::string(op) + ": params[0] must be a deepkern._cuda.DeviceArray, got " +
                           std::string(py::str(py::type::of(lists.params[0]).attr("__name__"))));
    const cuda::DeviceArray& first = lists.params[0].cast<const PyDeviceArray&>().a;
    if (first.dtype != cuda::DType::float32 && first.dtype != cuda::DType::float64)
      throw py::type_error(std::string(op) + ": params[0] must be float32 or float64, got dtype " +
                           cuda::info(first.dtype).name);
    if (first.dtype == cuda::DType::float32)
      collect<float>(op, lists, names, first, run);
    else
      collect<double>(op, lists, names, first, run);
  }

  template <class T, class Run>
  static void collect(const char* op, const OptimLists& lists, const OptimNames& names, const cuda::DeviceArray& first,
                      Run& run) {
    std::vector<cpu::OptimTensor<T>> tensors(lists.count());
    for (size_t i = 0; i < lists.count(); ++i) {
      const std::string at = "[" + std::to_string(i) + "]";
      auto take = [&](py::handle obj, int list, int64_t size) {
        return reinterpret_cast<T*>(
            checked_array(obj, op, names.lists[list] + at, first.dtype, first.device, size).data);
      };
      cpu::OptimTensor<T>& t = tensors[i];
      t.param = take(lists.params[i], 0, -1);
      t.size = lists.params[i].cast<const PyDeviceArray&>().a.size();
      t.grad = take(lists.grads[i], 1, t.size);
      for (int k = 0; k < 3; ++k) t.state[k] = lists.states[k] ? take((*lists.states[k])[i], k + 2, t.size) : nullptr;
      t.step = lists.ints[i];
    }
    check_tensors_apart(op, tensors, names, true);
    const cuda::DeviceGuard guard(first.device);
    run(tensors);
  }

  static cudaStream_t stream() { return static_cast<cudaStream_t>(cuda::current_stream(cuda::current_device())); }

  template <class T>
  static void sgd(const cpu::SgdOptions& o, const std::vector<cpu::OptimTensor<T>>& t) {
    const cudaStream_t s = stream();
    py::gil_scoped_release release;
    cuda::sgd_step(o, t.data(), static_cast<int64_t>(t.size()), s);
  }
  template <class T>
  static void adam(const cpu::AdamOptions& o, const std::vector<cpu::OptimTensor<T>>& t) {
    const cudaStream_t s = stream();
    py::gil_scoped_release release;
    cuda::adam_step(o, t.data(), static_cast<int64_t>(t.size()), s);
  }
  template <class T>
  static void rmsprop(const cpu::RmspropOptions& o, const std::vector<cpu::OptimTensor<T>>& t) {
    const cudaStream_t s = stream();
    py::gil_scoped_release release;
    cuda::rmsprop_step(o, t.data(), static_cast<int64_t>(t.size()), s);
  }
};

}  // namespace
}  // namespace deepkern::python

void bind_cuda_optim(pybind11::module_& m) { deepkern::python::def_optim_steps<deepkern::python::CudaOptim>(m); }
