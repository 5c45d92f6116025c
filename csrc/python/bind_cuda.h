// The binding functions of deepkern._cuda, one per file (module_cuda.cpp calls them).
#pragma once
#include <pybind11/pybind11.h>

void bind_cuda_array(pybind11::module_& m);
void bind_cuda_runtime(pybind11::module_& m);
void bind_cuda_optim(pybind11::module_& m);
void bind_cuda_gemm(pybind11::module_& m);
void bind_cuda_elementwise(pybind11::module_& m);
void bind_cuda_activation(pybind11::module_& m);
void bind_cuda_conv(pybind11::module_& m);
void bind_cuda_softmax(pybind11::module_& m);
void bind_cuda_lstm(pybind11::module_& m);
void bind_cuda_dropout(pybind11::module_& m);
void bind_cuda_embedding(pybind11::module_& m);
void bind_cuda_pool(pybind11::module_& m);
void bind_cuda_attention(pybind11::module_& m);
void bind_cuda_norm(pybind11::module_& m);
