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

// The array a deepkern._cuda.DeviceArray object holds, for other bindings (it stays valid while
// the object lives); a TypeError naming `op` and the argument `name` for anything else.
const deepkern::cuda::DeviceArray& device_array(const pybind11::handle& object, const char* op, const char* name);
