// deepkern._cuda, pooling on device arrays: max_pool2d, avg_pool2d, adaptive_avg_pool2d and their
// backward passes with the arguments and checks of deepkern._C's (bind_pool.cpp, pool_binding.h),
// the kernels of cuda/pool.
//
// Every binding's contract is _C's (pool_binding.h) on device arrays: the arrays are C-contiguous
// DeviceArrays on one device (the first array's), of the first array's float dtype (indices: int64)
// and of exactly the element counts `shape` gives; the output overlaps no input. The kernels are
// queued on the device's current stream and the calls return at once, except max_pool2d_backward,
// which waits for its index check (a bad index is a ValueError, with grad_x left as it was).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/pool/pool.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"
#include "python/cuda_call_arrays.h"
#include "python/pool_binding.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

constexpr cuda::DType kInt64 = cuda::DType::int64;

void max_pool2d(const py::object& x, const py::object& out_obj, const py::object& indices,
                const PoolShapeTuple& shape) {
  constexpr const char* op = "max_pool2d";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  const PoolCounts count = pool_counts(op, s);
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& xa = arrays.add(x, "x", count.input, false);
  const cuda::DeviceArray& oa = arrays.add(out_obj, "out", count.output, true);
  const cuda::DeviceArray* ia =
      indices.is_none() ? nullptr : &arrays.add(indices, "indices", count.output, true, &kInt64);
  std::int64_t* ip = ia ? reinterpret_cast<std::int64_t*>(ia->data) : nullptr;
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    cuda::launch_max_pool2d(s, in<T>(xa), out<T>(oa), ip, stream);
  });
}

void max_pool2d_backward(const py::object& grad_out, const py::object& indices, const py::object& grad_x,
                         const PoolShapeTuple& shape) {
  constexpr const char* op = "max_pool2d_backward";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  const PoolCounts count = pool_counts(op, s);
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& ga = arrays.add(grad_out, "grad_out", count.output, false);
  const cuda::DeviceArray& ia = arrays.add(indices, "indices", count.output, false, &kInt64);
  const cuda::DeviceArray& gxa = arrays.add(grad_x, "grad_x", count.input, true);
  const auto* ip = reinterpret_cast<const std::int64_t*>(ia.data);
  // The check and the scatter run back to back on the stream; the scatter does nothing when the
  // check found a bad index, so one wait tells whether grad_x was written.
  static_assert(sizeof(cuda::PoolBadIndex) <= 3 * sizeof(std::int64_t));
  const cuda::DeviceArray flag = cuda::empty({3}, cuda::DType::int64, arrays.device());
  cuda::fill(flag, 0);
  auto* bad = reinterpret_cast<cuda::PoolBadIndex*>(flag.data);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    cuda::launch_check_pool_indices(s, ip, bad, stream);
    cuda::launch_max_pool2d_backward(s, in<T>(ga), ip, out<T>(gxa), bad, stream);
  });
  cuda::PoolBadIndex found{};
  {
    py::gil_scoped_release release;
    const cuda::DeviceGuard guard(arrays.device());
    std::int64_t host[3];
    cuda::copy_to_host(flag, host);
    std::memcpy(&found, host, sizeof(found));
  }
  if (found.found != 0)
    throw py::value_error(std::string(op) + ": index " + std::to_string(found.index) + " at flat position " +
                          std::to_string(found.position) + " is outside [0, " + std::to_string(s.in_h * s.in_w) +
                          ") (H*W of the input)");
}

enum class Pass { forward, backward };

// A pooling call that reads one array and writes one: the forward reads x (the input's count) and
// writes out, the backward reads grad_out (the output's count) and writes grad_x. run(T{}, s,
// const T* read, T* written, stream) launches the kernel.
template <class Run>
void read_write(const char* op, const cpu::Pool2dShape& s, Pass pass, const py::object& read, const py::object& written,
                Run&& run) {
  const bool forward = pass == Pass::forward;
  const PoolCounts count = pool_counts(op, s);
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& ra =
      arrays.add(read, forward ? "x" : "grad_out", forward ? count.input : count.output, false);
  const cuda::DeviceArray& wa =
      arrays.add(written, forward ? "out" : "grad_x", forward ? count.output : count.input, true);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    run(zero, in<T>(ra), out<T>(wa), stream);
  });
}

// avg_pool2d's shape: dilation 1.
cpu::Pool2dShape avg_shape(const char* op, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = pool_shape(op, shape);
  require_no_dilation(op, s);
  return s;
}

void avg_pool2d(const py::object& x, const py::object& out_obj, const PoolShapeTuple& shape, bool count_include_pad,
                std::int64_t divisor_override) {
  const cpu::Pool2dShape s = avg_shape("avg_pool2d", shape);
  read_write("avg_pool2d", s, Pass::forward, x, out_obj, [&](auto, const auto* xp, auto* op, cudaStream_t stream) {
    cuda::launch_avg_pool2d(s, xp, op, count_include_pad, divisor_override, stream);
  });
}

void avg_pool2d_backward(const py::object& grad_out, const py::object& grad_x, const PoolShapeTuple& shape,
                         bool count_include_pad, std::int64_t divisor_override) {
  const cpu::Pool2dShape s = avg_shape("avg_pool2d_backward", shape);
  read_write("avg_pool2d_backward", s, Pass::backward, grad_out, grad_x,
             [&](auto, const auto* gp, auto* gxp, cudaStream_t stream) {
               cuda::launch_avg_pool2d_backward(s, gp, gxp, count_include_pad, divisor_override, stream);
             });
}

void adaptive_avg_pool2d(const py::object& x, const py::object& out_obj, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = adaptive_pool_shape("adaptive_avg_pool2d", shape);
  read_write("adaptive_avg_pool2d", s, Pass::forward, x, out_obj,
             [&](auto, const auto* xp, auto* op, cudaStream_t stream) {
               cuda::launch_adaptive_avg_pool2d(s, xp, op, stream);
             });
}

void adaptive_avg_pool2d_backward(const py::object& grad_out, const py::object& grad_x, const PoolShapeTuple& shape) {
  const cpu::Pool2dShape s = adaptive_pool_shape("adaptive_avg_pool2d_backward", shape);
  read_write("adaptive_avg_pool2d_backward", s, Pass::backward, grad_out, grad_x,
             [&](auto, const auto* gp, auto* gxp, cudaStream_t stream) {
               cuda::launch_adaptive_avg_pool2d_backward(s, gp, gxp, stream);
             });
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_pool(py::module_& m) {
  using namespace deepkern::python;
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("out"), py::arg("indices"), py::arg("shape"),
        "out = the max over each window, indices (unless None) its flat position in the plane, on the GPU.");
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_out"), py::arg("indices"), py::arg("grad_x"),
        py::arg("shape"), "grad_x = zeros plus each grad_out element at its index, on the GPU (deterministic).");
  m.def("avg_pool2d", &avg_pool2d, py::arg("x"), py::arg("out"), py::arg("shape"), py::arg("count_include_pad"),
        py::arg("divisor_override"), "out = the mean over each window, on the GPU.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_out"), py::arg("grad_x"), py::arg("shape"),
        py::arg("count_include_pad"), py::arg("divisor_override"), "grad_x = the gradient of avg_pool2d, on the GPU.");
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d, py::arg("x"), py::arg("out"), py::arg("shape"),
        "out = the mean over PyTorch's adaptive windows, on the GPU.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_out"), py::arg("grad_x"),
        py::arg("shape"), "grad_x = the gradient of adaptive_avg_pool2d, on the GPU.");
}
