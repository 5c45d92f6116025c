// The C++ object behind deepkern._cuda.DeviceArray (registered by bind_cuda_array.cpp), for the
// bindings of deepkern._cuda that take device arrays from Python.
#pragma once
#include <pybind11/pybind11.h>

#include "cuda/array.h"

namespace deepkern::python {

// A DeviceArray plus the array whose memory it views (None when it owns its memory or imported it).
struct PyDeviceArray {
  cuda::DeviceArray a;
  pybind11::object base = pybind11::none();
};

}  // namespace deepkern::python
