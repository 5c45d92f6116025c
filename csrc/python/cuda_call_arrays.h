// The argument checks of the deepkern._cuda kernel bindings whose arrays are C-contiguous device
// arrays of exact element counts (pooling, batch normalization): dtype, device, contiguity, count,
// written arrays overlapping nothing; and the launch on the arrays' device and current stream.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/check.h"
#include "cuda/stream.h"
#include "python/boundary.h"
#include "python/cuda_array.h"

namespace deepkern::python {

namespace py = pybind11;

// The device arrays of one call, checked as they are added: the first float one fixes the dtype
// (float32 or float64) and every array must be on its device.
class DeviceCallArrays {
 public:
  explicit DeviceCallArrays(const char* op) : op_(op) {}

  // Argument `name`: a C-contiguous DeviceArray of `count` elements, of the first array's float
  // dtype (or of dtype *exact when given: indices, float64 statistics); `written` by the kernel or
  // only read.
  const cuda::DeviceArray& add(const py::handle& obj, const char* name, std::int64_t count, bool written,
                               const cuda::DType* exact = nullptr) {
    const cuda::DeviceArray& a = device_array(obj, op_, name);
    const std::string where = std::string(op_) + ": " + name;
    const bool index = exact != nullptr;
    if (index && a.dtype != *exact)
      throw py::type_error(where + " must have dtype " + cuda::info(*exact).name + ", got " + cuda::info(a.dtype).name);
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

  // add() for an argument that may be None: nullptr then.
  const cuda::DeviceArray* optional(const py::object& obj, const char* name, std::int64_t count, bool written,
                                    const cuda::DType* exact = nullptr) {
    return obj.is_none() ? nullptr : &add(obj, name, count, written, exact);
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
inline void run_on_device(const DeviceCallArrays& arrays, Run&& run) {
  arrays.check_written_apart();
  const cuda::DeviceGuard guard(arrays.device());
  const auto stream = static_cast<cudaStream_t>(cuda::current_stream(arrays.device()));
  py::gil_scoped_release release;
  if (arrays.is_double())
    run(double{}, stream);
  else
    run(float{}, stream);
}

// The typed pointer of a device array (nullptr for none).
template <class T>
const T* in(const cuda::DeviceArray* a) {
  return a ? reinterpret_cast<const T*>(a->data) : nullptr;
}
template <class T>
T* out(const cuda::DeviceArray* a) {
  return a ? reinterpret_cast<T*>(a->data) : nullptr;
}
template <class T>
const T* in(const cuda::DeviceArray& a) {
  return in<T>(&a);
}
template <class T>
T* out(const cuda::DeviceArray& a) {
  return out<T>(&a);
}

}  // namespace deepkern::python
