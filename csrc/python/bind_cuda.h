// The binding functions of deepkern._cuda, one per file (module_cuda.cpp calls them).
#pragma once
#include <pybind11/pybind11.h>

#include "cuda/array.h"

void bind_cuda_array(pybind11::module_& m);
void bind_cuda_runtime(pybind11::module_& m);
void bind_cuda_gemm(pybind11::module_& m);

// The array a deepkern._cuda.DeviceArray object holds, for other bindings (it stays valid while
// the object lives); a TypeError naming `op` and the argument `name` for anything else.
const deepkern::cuda::DeviceArray& device_array(const pybind11::handle& object, const char* op, const char* name);
