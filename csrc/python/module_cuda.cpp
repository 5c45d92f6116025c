// deepkern._cuda: pybind11 bindings of the CUDA side. Importing it needs no GPU and no driver
// (cudart is linked statically); every query degrades to "no device".
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cuda/device.h"
#include "python/bind_cuda.h"

namespace py = pybind11;
namespace dkc = deepkern::cuda;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "deepkern CUDA kernels";
  m.attr("compiled_archs") = DEEPKERN_CUDA_ARCHS;
  m.def("device_count", &dkc::device_count);
  m.def("unavailable_reason", &dkc::unavailable_reason);
  m.def("runtime_version", &dkc::runtime_version);
  m.def(
      "device_info",
      [](int index) {
        const dkc::DeviceInfo info = dkc::device_info(index);
        py::dict d;
        d["name"] = info.name;
        d["capability"] = py::make_tuple(info.major, info.minor);
        d["total_memory"] = info.total_memory;
        return d;
      },
      py::arg("index"));
  m.def(
      "iota_on_device",
      [](int n) {
        py::gil_scoped_release release;
        return dkc::iota_on_device(n);
      },
      py::arg("n"));
  bind_cuda_runtime(m);
  bind_cuda_array(m);
  bind_cuda_elementwise(m);
  bind_cuda_activation(m);
  bind_cuda_dropout(m);
  bind_cuda_embedding(m);
  bind_cuda_pool(m);
  bind_cuda_attention(m);
  bind_cuda_norm(m);
  bind_cuda_optim(m);
  bind_cuda_gemm(m);
  bind_cuda_conv(m);
  bind_cuda_softmax(m);
  bind_cuda_lstm(m);
}
