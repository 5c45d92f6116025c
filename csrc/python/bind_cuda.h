// The binding functions of deepkern._cuda, one per file (module_cuda.cpp calls them).
#pragma once
#include <pybind11/pybind11.h>

#include "cuda/array.h"

// A DeviceArray plus the array whose memory it views (None when it owns its memory or imported it):
// the C++ side of deepkern._cuda.DeviceArray, which every CUDA binding takes and returns.
struct PyDeviceArray {
  deepkern::cuda::DeviceArray a;
  pybind11::object base = pybind11::none();
};

void bind_cuda_array(pybind11::module_& m);
void bind_cuda_runtime(pybind11::module_& m);
void bind_cuda_elementwise(pybind11::module_& m);
