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
#include "python/pool_binding.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

// The arrays of one pooling call, checked as they are named: the first fixes the dtype (float32 or
// float64) and the device.
class PoolArrays {
 public:
  explicit PoolArrays(const char* op) : op_(op) {}

  // Argument `name`: `count` elements, of the first array's float dtype (or int64 with `index`);
  // `written` by the kernel or only read.
  const cuda::DeviceArray& add(const py::handle& obj, const char* name, std::int64_t count, bool written,
                               bool index = false) {
    const cuda::DeviceArray& a = device_array(obj, op_, name);
    const std::string where = std::string(op_) + ": " + name;
    if (index && a.dtype != cuda::DType::int64)
      throw py::type_error(where + " must have dtype int64, got " + cuda::info(a.dtype).name);
    if (!index && first_ == nullptr && a.dtype != cuda::DType::float32 && a.dtype != cuda::DType::float64)
      throw py::type_error(where + " must be float32 or float64, got dtype " + cuda::info(a.dtype).name);
    if (!index && first_ != nullptr && a.dtype != first_->dtype)
      throw py::type_error(where + " has dtype " + cuda::info(a.dtype).name + " but " + first_name_ + " has " +
                           cuda::info(first_->dtype).name);
    if (first_ != nullptr && a.device != first_->device)
      throw py::value_error(where + " is on cuda:" + std::to_string(a.device) + " but " + first_name_ +
                            " is on cuda:" + std::to_string(first_->device));
    if (!a.is_contiguous())
      throw py::value_error(where + " must be C-contiguous, got element strides " + shape_str(a.strides) +
                            " for shape " + shape_str(a.shape));
    if (a.size() != count)
      throw py::value_error(where + " must have " + std::to_string(count) + " elements, got shape " +
                            shape_str(a.shape) + " (" + std::to_string(a.size()) + " elements)");
    if (first_ == nullptr) {
      first_ = &a;
      first_name_ = name;
    }
    arrays_.push_back({&a, name, written});
    return a;
  }

  // ValueError when an array added as written shares bytes with any other array of the call.
  void check_written_apart() const {
    for (const Entry& w : arrays_)
      for (const Entry& other : arrays_)
        if (w.written && &w != &other && overlap(*w.array, *other.array))
          throw py::value_error(std::string(op_) + ": " + w.name + " overlaps " + other.name +
                                "; pass a separate output array");
  }

  bool is_double() const { return first_->dtype == cuda::DType::float64; }
  int device() const { return first_->device; }

 private:
  const char* op_;
  const cuda::DeviceArray* first_ = nullptr;
  const char* first_name_ = "";
  struct Entry {
    const cuda::DeviceArray* array;
    const char* name;
    bool written;
  };
  std::vector<Entry> arrays_;

  // Whether two C-contiguous arrays share bytes.
  static bool overlap(const cuda::DeviceArray& a, const cuda::DeviceArray& b) {
    return a.nbytes() > 0 && b.nbytes() > 0 && a.data < b.data + b.nbytes() && b.data < a.data + a.nbytes();
  }
};

// Runs run(T{}, stream) on the arrays' device and its current stream, without the GIL, T the
// arrays' float type.
template <class Run>
void run_on_device(const PoolArrays& arrays, Run&& run) {
  arrays.check_written_apart();
  const cuda::DeviceGuard guard(arrays.device());
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(arrays.device()));
  py::gil_scoped_release release;
  if (arrays.is_double())
    run(double{}, stream);
  else
    run(float{}, stream);
}

template <class T>
const T* in(const cuda::DeviceArray& a) {
  return reinterpret_cast<const T*>(a.data);
}
template <class T>
T* out(const cuda::DeviceArray& a) {
  return reinterpret_cast<T*>(a.data);
}

void max_pool2d(const py::object& x, const py::object& out_obj, const py::object& indices,
                const PoolShapeTuple& shape) {
  constexpr const char* op = "max_pool2d";
  const cpu::Pool2dShape s = pool_shape(op, shape);
  const PoolCounts count = pool_counts(op, s);
  PoolArrays arrays(op);
  const cuda::DeviceArray& xa = arrays.add(x, "x", count.input, false);
  const cuda::DeviceArray& oa = arrays.add(out_obj, "out", count.output, true);
  const cuda::DeviceArray* ia = indices.is_none() ? nullptr : &arrays.add(indices, "indices", count.output, true, true);
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
  PoolArrays arrays(op);
  const cuda::DeviceArray& ga = arrays.add(grad_out, "grad_out", count.output, false);
  const cuda::DeviceArray& ia = arrays.add(indices, "indices", count.output, false, true);
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
  PoolArrays arrays(op);
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
