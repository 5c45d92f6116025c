// deepkern._cuda, softmax family on device arrays: softmax, softmax_backward,
// cross_entropy_forward and cross_entropy_backward with the arguments and checks of deepkern._C's
// (bind_softmax.cpp), the kernels of cuda/softmax.
//
// Every binding's contract: the arrays are C-contiguous device arrays on x's (or y's) device, the
// float ones of its dtype, with exactly the element counts the sizes give (any shape); outputs are
// written, never read, and overlap no other argument. The kernels are queued on the device's
// current stream. The cross-entropy kernels check the targets themselves and record a bad one in
// device memory, which the binding reads back after the kernel (one wait per call) to raise a
// ValueError naming it.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/array.h"
#include "cuda/check.h"
#include "cuda/softmax/softmax.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

namespace dkc = deepkern::cuda;

using deepkern::cuda::shape_text;

// The arrays of one call, checked as they are taken; outputs are compared with every other array.
class Arrays {
 public:
  Arrays(const char* op, const py::handle& first, const char* first_name) : op_(op) {
    const dkc::DeviceArray& a = device_array(first, op, first_name);
    if (a.dtype != dkc::DType::float32 && a.dtype != dkc::DType::float64)
      throw py::type_error(where(first_name) + " must be float32 or float64, got dtype " + dkc::info(a.dtype).name);
    dtype_ = a.dtype;
    device_ = a.device;
  }

  // `obj` (argument `name`), C-contiguous, of `count` elements, of the call's float dtype (or
  // int64 for `index`), on its device.
  const dkc::DeviceArray& take(const py::handle& obj, const char* name, int64_t count, bool written,
                               bool index = false) {
    const dkc::DeviceArray& a = device_array(obj, op_, name);
    const dkc::DType want = index ? dkc::DType::int64 : dtype_;
    if (a.dtype != want)
      throw py::type_error(where(name) + " must have dtype " + dkc::info(want).name + ", got " +
                           dkc::info(a.dtype).name);
    if (a.device != device_)
      throw py::value_error(where(name) + " is on cuda:" + std::to_string(a.device) +
                            ", the other arrays on cuda:" + std::to_string(device_));
    if (!a.is_contiguous())
      throw py::value_error(where(name) + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                            " for shape " + shape_text(a.shape));
    if (a.size() != count)
      throw py::value_error(where(name) + " must have " + std::to_string(count) + " elements, got shape " +
                            shape_text(a.shape));
    for (const auto& [other_name, other] : taken_)
      if ((written || other.written) && overlap(a, *other.array))
        throw py::value_error(where(name) + " overlaps " + other_name + "; pass separate arrays");
    taken_.push_back({name, {&a, written}});
    return a;
  }
  // None: nullptr.
  const dkc::DeviceArray* optional(const py::object& obj, const char* name, int64_t count) {
    return obj.is_none() ? nullptr : &take(obj, name, count, false);
  }

  bool is_double() const { return dtype_ == dkc::DType::float64; }
  int device() const { return device_; }

 private:
  struct Taken {
    const dkc::DeviceArray* array;
    bool written;
  };
  std::string where(const char* name) const { return std::string(op_) + ": " + name; }
  static bool overlap(const dkc::DeviceArray& a, const dkc::DeviceArray& b) {
    return a.nbytes() && b.nbytes() && a.data < b.data + b.nbytes() && b.data < a.data + a.nbytes();
  }

  const char* op_;
  dkc::DType dtype_;
  int device_;
  std::vector<std::pair<std::string, Taken>> taken_;
};

dkc::SoftmaxShape checked_shape(const char* op, const char* names, int64_t outer, int64_t length, int64_t inner,
                                int64_t* count) {
  if (outer < 0 || length < 0 || inner < 0)
    throw py::value_error(std::string(op) + ": " + names + " must be >= 0, got " + std::to_string(outer) + ", " +
                          std::to_string(length) + ", " + std::to_string(inner));
  int64_t n = 1;
  for (const int64_t f : {outer, length, inner})
    if (__builtin_mul_overflow(n, f, &n)) throw py::value_error(std::string(op) + ": " + names + " overflow int64");
  *count = n;
  return {outer, length, inner};
}

template <class T>
const T* ptr(const dkc::DeviceArray* a) {
  return a ? reinterpret_cast<const T*>(a->data) : nullptr;
}
template <class T>
T* mut(const dkc::DeviceArray& a) {
  return reinterpret_cast<T*>(a.data);
}

// Runs launch(stream, is_double) on the call's device and current stream, without the GIL.
template <class Launch>
void run(const Arrays& arrays, Launch&& launch) {
  py::gil_scoped_release release;
  const dkc::DeviceGuard guard(arrays.device());
  launch(static_cast<cudaStream_t>(dkc::current_stream(arrays.device())));
}

void softmax(const py::object& x, const py::object& out, int64_t outer, int64_t length, int64_t inner, bool log) {
  const char* op = "softmax";
  int64_t n = 0;
  const dkc::SoftmaxShape shape = checked_shape(op, "outer, length, inner", outer, length, inner, &n);
  Arrays arrays(op, x, "x");
  const dkc::DeviceArray& xa = arrays.take(x, "x", n, false);
  const dkc::DeviceArray& oa = arrays.take(out, "out", n, true);
  run(arrays, [&](cudaStream_t stream) {
    if (arrays.is_double())
      dkc::launch_softmax(ptr<double>(&xa), mut<double>(oa), shape, log, stream);
    else
      dkc::launch_softmax(ptr<float>(&xa), mut<float>(oa), shape, log, stream);
  });
}

void softmax_backward(const py::object& grad, const py::object& y, const py::object& out, int64_t outer, int64_t length,
                      int64_t inner, bool log) {
  const char* op = "softmax_backward";
  int64_t n = 0;
  const dkc::SoftmaxShape shape = checked_shape(op, "outer, length, inner", outer, length, inner, &n);
  Arrays arrays(op, y, "y");
  const dkc::DeviceArray& ga = arrays.take(grad, "grad", n, false);
  const dkc::DeviceArray& ya = arrays.take(y, "y", n, false);
  const dkc::DeviceArray& oa = arrays.take(out, "out", n, true);
  run(arrays, [&](cudaStream_t stream) {
    if (arrays.is_double())
      dkc::launch_softmax_backward(ptr<double>(&ga), ptr<double>(&ya), mut<double>(oa), shape, log, stream);
    else
      dkc::launch_softmax_backward(ptr<float>(&ga), ptr<float>(&ya), mut<float>(oa), shape, log, stream);
  });
}

// Runs launch(stream, bad) with `bad` two zeroed int64 of device memory, waits for it, and raises
// the ValueError naming the target the kernel recorded there, if any.
template <class Launch>
void run_checked(const char* op, const Arrays& arrays, int64_t classes, int64_t ignore_index, Launch&& launch) {
  std::int64_t bad[2] = {0, 0};
  run(arrays, [&](cudaStream_t stream) {
    const dkc::DeviceArray flag = dkc::empty({2}, dkc::DType::int64, arrays.device());
    dkc::fill(flag, 0);
    launch(stream, reinterpret_cast<std::int64_t*>(flag.data));
    dkc::copy_to_host(flag, bad);
  });
  if (bad[0] != 0)
    throw py::value_error(std::string(op) + ": target " + std::to_string(bad[1]) + " is out of range for " +
                          std::to_string(classes) + " classes (ignore_index=" + std::to_string(ignore_index) + ")");
}

void check_smoothing(const char* op, double label_smoothing) {
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw py::value_error(std::string(op) + ": label_smoothing must be in [0, 1], got " +
                          std::to_string(label_smoothing));
}

void cross_entropy_forward(const py::object& x, const py::object& target, const py::object& weight,
                           const py::object& loss, const py::object& stats, int64_t batch, int64_t classes,
                           int64_t inner, int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy_forward";
  int64_t n = 0, stat_count = 0;
  const dkc::SoftmaxShape shape = checked_shape(op, "batch, classes, inner", batch, classes, inner, &n);
  checked_shape(op, "batch, 3, inner", batch, 3, inner, &stat_count);
  check_smoothing(op, label_smoothing);
  Arrays arrays(op, x, "x");
  const dkc::DeviceArray& xa = arrays.take(x, "x", n, false);
  const dkc::DeviceArray& ta = arrays.take(target, "target", stat_count / 3, false, true);
  const dkc::DeviceArray* wa = arrays.optional(weight, "weight", classes);
  const dkc::DeviceArray& la = arrays.take(loss, "loss", stat_count / 3, true);
  const dkc::DeviceArray& sa = arrays.take(stats, "stats", stat_count, true);
  run_checked(op, arrays, classes, ignore_index, [&](cudaStream_t stream, std::int64_t* bad) {
    const dkc::CrossEntropyArgs args{ignore_index, label_smoothing, bad};
    const auto* t = ptr<std::int64_t>(&ta);
    if (arrays.is_double())
      dkc::launch_cross_entropy_forward(ptr<double>(&xa), t, ptr<double>(wa), mut<double>(la), mut<double>(sa), shape,
                                        args, stream);
    else
      dkc::launch_cross_entropy_forward(ptr<float>(&xa), t, ptr<float>(wa), mut<float>(la), mut<float>(sa), shape, args,
                                        stream);
  });
}

void cross_entropy_backward(const py::object& grad, const py::object& x, const py::object& target,
                            const py::object& weight, const py::object& stats, const py::object& out, int64_t batch,
                            int64_t classes, int64_t inner, int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy_backward";
  int64_t n = 0, stat_count = 0;
  const dkc::SoftmaxShape shape = checked_shape(op, "batch, classes, inner", batch, classes, inner, &n);
  checked_shape(op, "batch, 3, inner", batch, 3, inner, &stat_count);
  check_smoothing(op, label_smoothing);
  Arrays arrays(op, x, "x");
  const int64_t grad_count = device_array(grad, op, "grad").size() == 1 ? 1 : stat_count / 3;
  const dkc::DeviceArray& ga = arrays.take(grad, "grad", grad_count, false);
  const dkc::DeviceArray& xa = arrays.take(x, "x", n, false);
  const dkc::DeviceArray& ta = arrays.take(target, "target", stat_count / 3, false, true);
  const dkc::DeviceArray* wa = arrays.optional(weight, "weight", classes);
  const dkc::DeviceArray& sa = arrays.take(stats, "stats", stat_count, false);
  const dkc::DeviceArray& oa = arrays.take(out, "out", n, true);
  run_checked(op, arrays, classes, ignore_index, [&](cudaStream_t stream, std::int64_t* bad) {
    const dkc::CrossEntropyArgs args{ignore_index, label_smoothing, bad};
    const auto* t = ptr<std::int64_t>(&ta);
    if (arrays.is_double())
      dkc::launch_cross_entropy_backward(ptr<double>(&ga), grad_count, ptr<double>(&xa), t, ptr<double>(wa),
                                         ptr<double>(&sa), mut<double>(oa), shape, args, stream);
    else
      dkc::launch_cross_entropy_backward(ptr<float>(&ga), grad_count, ptr<float>(&xa), t, ptr<float>(wa),
                                         ptr<float>(&sa), mut<float>(oa), shape, args, stream);
  });
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_softmax(py::module_& m) {
  using namespace deepkern::python;
  m.def("softmax", &softmax, py::arg("x"), py::arg("out"), py::arg("outer"), py::arg("length"), py::arg("inner"),
        py::arg("log"),
        "out = softmax (log: log_softmax) of x seen as (outer, length, inner), along length, on the GPU.");
  m.def("softmax_backward", &softmax_backward, py::arg("grad"), py::arg("y"), py::arg("out"), py::arg("outer"),
        py::arg("length"), py::arg("inner"), py::arg("log"),
        "out = gradient wrt x of softmax (log: log_softmax) from grad and the saved output y, on the GPU.");
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("x"), py::arg("target"), py::arg("weight"),
        py::arg("loss"), py::arg("stats"), py::arg("batch"), py::arg("classes"), py::arg("inner"),
        py::arg("ignore_index"), py::arg("label_smoothing"),
        "Per-sample cross entropy and its statistics (see deepkern._C.cross_entropy_forward), on the GPU.");
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("grad"), py::arg("x"), py::arg("target"),
        py::arg("weight"), py::arg("stats"), py::arg("out"), py::arg("batch"), py::arg("classes"), py::arg("inner"),
        py::arg("ignore_index"), py::arg("label_smoothing"),
        "Gradient wrt x of the per-sample losses times grad (see deepkern._C.cross_entropy_backward), on the GPU.");
}
