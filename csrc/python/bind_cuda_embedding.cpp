// deepkern._cuda, embedding on device arrays (the CUDA backend's `embedding` and
// `embedding_backward` entries, behind F.embedding / nn.Embedding), the kernels of cuda/embedding.
//
// embedding(weight, indices, out): weight (rows, dim) float32/float64, indices int64 of any shape,
// out of weight's dtype with indices.size * dim elements; out[i, :] = weight[indices[i], :].
// embedding_backward(grad, indices, grad_weight, padding_idx): grad_weight (rows, dim) is written
// whole: the sum of the grad rows (indices.size * dim elements, grad_weight's dtype) of each row's
// occurrences, zero elsewhere and in row padding_idx (-1: none). All C-contiguous on one device,
// written arrays overlapping nothing else. An index outside [0, rows) is an IndexError (checked on
// the device; the call waits for the kernel to read the flag back).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda/embedding/embedding.h"
#include "python/bind_cuda.h"
#include "python/cuda_arg_checks.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

// weight or grad_weight: a 2-D float device array.
const cuda::DeviceArray& table(py::handle obj, const char* op, const char* name) {
  const cuda::DeviceArray& a = float_device_array(obj, op, name);
  if (a.ndim() != 2)
    throw py::value_error(std::string(op) + ": " + name + " must be 2-D (rows, dim), got shape " + shape_text(a.shape));
  return a;
}

void embedding(const py::object& weight, const py::object& indices, const py::object& out) {
  constexpr const char* op = "embedding";
  const cuda::DeviceArray& w = table(weight, op, "weight");
  const NamedArray wn{"weight", &w};
  const cuda::DeviceArray& idx = device_array_like(indices, op, "indices", cuda::DType::int64, wn, -1, {});
  const std::int64_t rows = w.shape[0], dim = w.shape[1], n = idx.size();
  const cuda::DeviceArray& o = device_array_like(out, op, "out", w.dtype, wn, n * dim, {wn, {"indices", &idx}});
  run_with_index_check(op, w.device, rows, [&](cudaStream_t stream, std::int64_t* bad) {
    const auto* ip = typed<std::int64_t>(idx);
    if (w.dtype == cuda::DType::float32)
      cuda::launch_embedding(typed<float>(w), rows, dim, ip, n, typed_out<float>(o), bad, stream);
    else
      cuda::launch_embedding(typed<double>(w), rows, dim, ip, n, typed_out<double>(o), bad, stream);
  });
}

void embedding_backward(const py::object& grad, const py::object& indices, const py::object& grad_weight,
                        std::int64_t padding_idx) {
  constexpr const char* op = "embedding_backward";
  const cuda::DeviceArray& gw = table(grad_weight, op, "grad_weight");
  const NamedArray gwn{"grad_weight", &gw};
  const cuda::DeviceArray& idx = device_array_like(indices, op, "indices", cuda::DType::int64, gwn, -1, {gwn});
  const std::int64_t rows = gw.shape[0], dim = gw.shape[1], n = idx.size();
  const cuda::DeviceArray& g = device_array_like(grad, op, "grad", gw.dtype, gwn, n * dim, {gwn});
  if (padding_idx < -1 || padding_idx >= rows)
    throw py::value_error(std::string(op) + ": padding_idx must be -1 (none) or a row in [0, " + std::to_string(rows) +
                          "), got " + std::to_string(padding_idx));
  run_with_index_check(op, gw.device, rows, [&](cudaStream_t stream, std::int64_t* bad) {
    cuda::fill(gw, 0);
    const auto* ip = typed<std::int64_t>(idx);
    if (gw.dtype == cuda::DType::float32)
      cuda::launch_embedding_backward(typed<float>(g), ip, n, rows, dim, padding_idx, typed_out<float>(gw), bad,
                                      stream);
    else
      cuda::launch_embedding_backward(typed<double>(g), ip, n, rows, dim, padding_idx, typed_out<double>(gw), bad,
                                      stream);
  });
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_embedding(py::module_& m) {
  using namespace deepkern::python;
  m.def("embedding", &embedding, py::arg("weight"), py::arg("indices"), py::arg("out"),
        "out[i, :] = weight[indices[i], :] (int64 indices, checked on the device: IndexError), on the GPU.");
  m.def("embedding_backward", &embedding_backward, py::arg("grad"), py::arg("indices"), py::arg("grad_weight"),
        py::arg("padding_idx"),
        "grad_weight = the sum of grad's rows per index (row padding_idx zero; -1: none), on the GPU; deterministic "
        "up to 1024 indices.");
}
