// Argument checks of the deepkern._cuda bindings of single-array kernels (dropout, embedding): the
// first float array of a call, the others against it, and the device flag that reports a bad index.
// Every error is a TypeError / ValueError / IndexError whose message starts with the op and names
// the argument.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "cuda/array.h"
#include "cuda/check.h"
#include "cuda/stream.h"
#include "python/cuda_array.h"

namespace deepkern::python {

// An argument's name and its array, for messages.
struct NamedArray {
  const char* name;
  const cuda::DeviceArray* array;
};

using cuda::shape_text;

// The array's first element as a T pointer (its dtype checked by the caller).
template <class T>
const T* typed(const cuda::DeviceArray& a) {
  return reinterpret_cast<const T*>(a.data);
}
template <class T>
T* typed_out(const cuda::DeviceArray& a) {
  return reinterpret_cast<T*>(a.data);
}

// Argument `name` of `op`: a C-contiguous float32 or float64 device array.
inline const cuda::DeviceArray& float_device_array(pybind11::handle obj, const char* op, const char* name) {
  const cuda::DeviceArray& a = device_array(obj, op, name);
  const std::string where = std::string(op) + ": " + name;
  if (a.dtype != cuda::DType::float32 && a.dtype != cuda::DType::float64)
    throw pybind11::type_error(where + " must be float32 or float64, got dtype " + cuda::info(a.dtype).name);
  if (!a.is_contiguous())
    throw pybind11::value_error(where + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                                " for shape " + shape_text(a.shape));
  return a;
}

// Argument `name` of `op`: a C-contiguous device array of `dtype` on first's device with `count`
// elements (any when negative), sharing no memory with the arrays of `apart`.
inline const cuda::DeviceArray& device_array_like(pybind11::handle obj, const char* op, const char* name,
                                                  cuda::DType dtype, const NamedArray& first, std::int64_t count,
                                                  std::initializer_list<NamedArray> apart) {
  const cuda::DeviceArray& a = device_array(obj, op, name);
  const std::string where = std::string(op) + ": " + name;
  if (a.dtype != dtype)
    throw pybind11::type_error(where + " must have dtype " + cuda::info(dtype).name + ", got " +
                               cuda::info(a.dtype).name);
  if (a.device != first.array->device)
    throw pybind11::value_error(where + " is on cuda:" + std::to_string(a.device) + " but " + first.name +
                                " is on cuda:" + std::to_string(first.array->device));
  if (!a.is_contiguous())
    throw pybind11::value_error(where + " must be C-contiguous, got element strides " + shape_text(a.strides) +
                                " for shape " + shape_text(a.shape));
  if (count >= 0 && a.size() != count)
    throw pybind11::value_error(where + " must have " + std::to_string(count) + " elements (" + first.name +
                                " has shape " + shape_text(first.array->shape) + "), got shape " + shape_text(a.shape));
  for (const NamedArray& other : apart) {
    const cuda::DeviceArray& b = *other.array;
    if (a.nbytes() > 0 && b.nbytes() > 0 && a.data < b.data + b.nbytes() && b.data < a.data + a.nbytes())
      throw pybind11::value_error(where + " overlaps " + other.name + "; pass separate arrays");
  }
  return a;
}

// Runs run(stream) on `device`'s current stream without the GIL.
template <class Run>
void on_current_stream(int device, Run&& run) {
  pybind11::gil_scoped_release release;
  const cuda::DeviceGuard guard(device);
  run(static_cast<cudaStream_t>(cuda::current_stream(device)));
}

// Runs run(stream, bad) with `bad` two zeroed int64 of device memory, waits for it (one copy of 16
// bytes back to the host), and raises IndexError "<op>: index K is out of range for a weight of
// `rows` rows" for the index the kernels recorded there, if any.
template <class Run>
void run_with_index_check(const char* op, int device, std::int64_t rows, Run&& run) {
  std::int64_t bad[2] = {0, 0};
  on_current_stream(device, [&](cudaStream_t stream) {
    const cuda::DeviceArray flag = cuda::empty({2}, cuda::DType::int64, device);
    cuda::fill(flag, 0);
    run(stream, reinterpret_cast<std::int64_t*>(flag.data));
    cuda::copy_to_host(flag, bad);
  });
  if (bad[0] != 0)
    throw pybind11::index_error(std::string(op) + ": index " + std::to_string(bad[1]) +
                                " is out of range for a weight of " + std::to_string(rows) + " rows");
}

}  // namespace deepkern::python
