// deepkern._cuda, normalization on device arrays: batch_norm_forward/backward,
// layer_norm_forward/backward and group_norm_forward/backward with the arguments and checks of
// deepkern._C's (bind_norm.cpp, norm_binding.h), the kernels of cuda/norm. The kernels are queued
// on the device's current stream and the calls return at once.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <memory>

#include "cuda/memory.h"
#include "cuda/norm/norm.h"
#include "python/bind_cuda.h"
#include "python/cuda_call_arrays.h"
#include "python/norm_binding.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

constexpr cuda::DType kFloat64 = cuda::DType::float64;

void batch_norm_forward(const py::object& x, const py::object& weight, const py::object& bias,
                        const py::object& running_mean, const py::object& running_var, const py::object& out_obj,
                        const py::object& save_mean, const py::object& save_invstd, const NormShapeTuple& shape,
                        bool training, double momentum, double eps) {
  constexpr const char* op = "batch_norm_forward";
  std::int64_t elements = 0;
  const cpu::BatchNormShape s = norm_shape(op, shape, &elements);
  check_forward_options(op, s, training, !running_mean.is_none() && !running_var.is_none(), momentum, eps);
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& xa = arrays.add(x, "x", elements, false);
  const cuda::DeviceArray* wa = arrays.optional(weight, "weight", s.c, false);
  const cuda::DeviceArray* ba = arrays.optional(bias, "bias", s.c, false);
  // Written when training, only read otherwise; taken as written either way, as _C takes them.
  const cuda::DeviceArray* rm = arrays.optional(running_mean, "running_mean", s.c, true);
  const cuda::DeviceArray* rv = arrays.optional(running_var, "running_var", s.c, true);
  const cuda::DeviceArray& oa = arrays.add(out_obj, "out", elements, true);
  const cuda::DeviceArray& sm = arrays.add(save_mean, "save_mean", s.c, true, &kFloat64);
  const cuda::DeviceArray& si = arrays.add(save_invstd, "save_invstd", s.c, true, &kFloat64);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    cuda::launch_batch_norm_forward(s, in<T>(xa), in<T>(wa), in<T>(ba), out<T>(rm), out<T>(rv), out<T>(oa),
                                    out<double>(sm), out<double>(si), training, momentum, eps, stream);
  });
}

void batch_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_invstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias, const NormShapeTuple& shape,
                         bool training) {
  constexpr const char* op = "batch_norm_backward";
  std::int64_t elements = 0;
  const cpu::BatchNormShape s = norm_shape(op, shape, &elements);
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& ga = arrays.add(grad_out, "grad_out", elements, false);
  const cuda::DeviceArray& xa = arrays.add(x, "x", elements, false);
  const cuda::DeviceArray* wa = arrays.optional(weight, "weight", s.c, false);
  const cuda::DeviceArray& sm = arrays.add(save_mean, "save_mean", s.c, false, &kFloat64);
  const cuda::DeviceArray& si = arrays.add(save_invstd, "save_invstd", s.c, false, &kFloat64);
  const cuda::DeviceArray* gx = arrays.optional(grad_x, "grad_x", elements, true);
  const cuda::DeviceArray* gw = arrays.optional(grad_weight, "grad_weight", s.c, true);
  const cuda::DeviceArray* gb = arrays.optional(grad_bias, "grad_bias", s.c, true);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    cuda::launch_batch_norm_backward(s, in<T>(ga), in<T>(xa), in<T>(wa), in<double>(sm), in<double>(si), out<T>(gx),
                                     out<T>(gw), out<T>(gb), training, stream);
  });
}

// Runs launch(stream, x, weight, bias, out, save_mean, save_rstd) on the checked pointers of a
// layer or group norm forward call.
template <class Launch>
void row_norm_forward(const char* op, const RowNormExtents& e, const py::object& x, const py::object& weight,
                      const py::object& bias, const py::object& out_obj, const py::object& save_mean,
                      const py::object& save_rstd, Launch&& launch) {
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& xa = arrays.add(x, "x", e.data, false);
  const cuda::DeviceArray* wa = arrays.optional(weight, "weight", e.params, false);
  const cuda::DeviceArray* ba = arrays.optional(bias, "bias", e.params, false);
  const cuda::DeviceArray& oa = arrays.add(out_obj, "out", e.data, true);
  const cuda::DeviceArray& sm = arrays.add(save_mean, "save_mean", e.stats, true, &kFloat64);
  const cuda::DeviceArray& sr = arrays.add(save_rstd, "save_rstd", e.stats, true, &kFloat64);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    launch(stream, in<T>(xa), in<T>(wa), in<T>(ba), out<T>(oa), out<double>(sm), out<double>(sr));
  });
}

// Runs launch(stream, grad_out, x, weight, save_mean, save_rstd, grad_x, grad_weight, grad_bias,
// workspace) on the checked pointers of a layer or group norm backward call; the workspace
// (`workspace_bytes` of device memory) only when grad_weight or grad_bias is wanted.
template <class Launch>
void row_norm_backward(const char* op, const RowNormExtents& e, const py::object& grad_out, const py::object& x,
                       const py::object& weight, const py::object& save_mean, const py::object& save_rstd,
                       const py::object& grad_x, const py::object& grad_weight, const py::object& grad_bias,
                       std::int64_t workspace_bytes, Launch&& launch) {
  DeviceCallArrays arrays(op);
  const cuda::DeviceArray& ga = arrays.add(grad_out, "grad_out", e.data, false);
  const cuda::DeviceArray& xa = arrays.add(x, "x", e.data, false);
  const cuda::DeviceArray* wa = arrays.optional(weight, "weight", e.params, false);
  const cuda::DeviceArray& sm = arrays.add(save_mean, "save_mean", e.stats, false, &kFloat64);
  const cuda::DeviceArray& sr = arrays.add(save_rstd, "save_rstd", e.stats, false, &kFloat64);
  const cuda::DeviceArray* gx = arrays.optional(grad_x, "grad_x", e.data, true);
  const cuda::DeviceArray* gw = arrays.optional(grad_weight, "grad_weight", e.params, true);
  const cuda::DeviceArray* gb = arrays.optional(grad_bias, "grad_bias", e.params, true);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    // Held until the kernels are queued: the allocator orders its reuse on this stream.
    const std::shared_ptr<void> workspace =
        (gw || gb) && workspace_bytes > 0
            ? cuda::allocate(arrays.device(), static_cast<std::size_t>(workspace_bytes), stream)
            : nullptr;
    launch(stream, in<T>(ga), in<T>(xa), in<T>(wa), in<double>(sm), in<double>(sr), out<T>(gx), out<T>(gw), out<T>(gb),
           workspace.get());
  });
}

void layer_norm_forward(const py::object& x, const py::object& weight, const py::object& bias, const py::object& out,
                        const py::object& save_mean, const py::object& save_rstd, const std::array<int64_t, 2>& shape,
                        double eps) {
  constexpr const char* op = "layer_norm_forward";
  const RowNormExtents e = layer_norm_extents(op, shape);
  check_eps(op, eps);
  const cpu::LayerNormShape s{shape[0], shape[1]};
  row_norm_forward(op, e, x, weight, bias, out, save_mean, save_rstd,
                   [&](cudaStream_t stream, auto... p) { cuda::launch_layer_norm_forward(s, p..., eps, stream); });
}

void layer_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_rstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias,
                         const std::array<int64_t, 2>& shape) {
  constexpr const char* op = "layer_norm_backward";
  const RowNormExtents e = layer_norm_extents(op, shape);
  const cpu::LayerNormShape s{shape[0], shape[1]};
  row_norm_backward(op, e, grad_out, x, weight, save_mean, save_rstd, grad_x, grad_weight, grad_bias,
                    cuda::layer_norm_backward_workspace_bytes(s),
                    [&](cudaStream_t stream, auto... p) { cuda::launch_layer_norm_backward(s, p..., stream); });
}

void group_norm_forward(const py::object& x, const py::object& weight, const py::object& bias, const py::object& out,
                        const py::object& save_mean, const py::object& save_rstd, const NormShapeTuple& shape,
                        int64_t groups, double eps) {
  constexpr const char* op = "group_norm_forward";
  const RowNormExtents e = group_norm_extents(op, shape, groups);
  check_eps(op, eps);
  const cpu::GroupNormShape s{shape[0], shape[1], shape[2], groups};
  row_norm_forward(op, e, x, weight, bias, out, save_mean, save_rstd,
                   [&](cudaStream_t stream, auto... p) { cuda::launch_group_norm_forward(s, p..., eps, stream); });
}

void group_norm_backward(const py::object& grad_out, const py::object& x, const py::object& weight,
                         const py::object& save_mean, const py::object& save_rstd, const py::object& grad_x,
                         const py::object& grad_weight, const py::object& grad_bias, const NormShapeTuple& shape,
                         int64_t groups) {
  constexpr const char* op = "group_norm_backward";
  const RowNormExtents e = group_norm_extents(op, shape, groups);
  const cpu::GroupNormShape s{shape[0], shape[1], shape[2], groups};
  row_norm_backward(op, e, grad_out, x, weight, save_mean, save_rstd, grad_x, grad_weight, grad_bias,
                    cuda::group_norm_backward_workspace_bytes(s),
                    [&](cudaStream_t stream, auto... p) { cuda::launch_group_norm_backward(s, p..., stream); });
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_norm(py::module_& m) {
  using namespace deepkern::python;
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("running_mean"), py::arg("running_var"), py::arg("out"), py::arg("save_mean"), py::arg("save_invstd"),
        py::arg("shape"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
        "Batch normalization's fused forward (statistics, normalization, running statistics), on the GPU.");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("save_mean"), py::arg("save_invstd"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
        py::arg("shape"), py::arg("training"), "Batch normalization's fused backward, on the GPU.");
  m.def("layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("shape"), py::arg("eps"),
        "Layer normalization of (rows, len) rows, with the float64 saved statistics, on the GPU.");
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
        py::arg("shape"), "Layer normalization's gradients (each may be None), on the GPU.");
  m.def("group_norm_forward", &group_norm_forward, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("shape"), py::arg("groups"), py::arg("eps"),
        "Group normalization of (n, c, s) data, with the float64 saved statistics, on the GPU.");
  m.def("group_norm_backward", &group_norm_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("save_mean"), py::arg("save_rstd"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
        py::arg("shape"), py::arg("groups"), "Group normalization's gradients (each may be None), on the GPU.");
}
