// deepkern._cuda, attention family on device arrays: attention_forward and attention_backward with
// the arguments and checks of deepkern._C's (bind_attention.cpp), the kernels of cuda/attention.
//
// Every binding's contract is _C's on device arrays: q (N, L, E), k (Nk, S, E), v (Nv, S, Ev), o and
// grad (N, L, Ev), lse (N, L), the mask (None, or (Nm, L or 1, S or 1)), dq (N, L, E), dk (N, S, E),
// dv (N, S, Ev) and dmask (None, or (N, Lm, Sm): needs a mask) are C-contiguous DeviceArrays of q's
// float dtype on q's device; k_index, v_index and mask_index are host NumPy int64 arrays (N,) whose
// entries pick a matrix of k, v and the mask (each in range); written arrays overlap nothing. The
// index maps go to the device as element offsets (one copy per call), the kernels are queued on the
// device's current stream and the calls return at once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/attention/attention.h"
#include "cuda/check.h"
#include "cuda/memory.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"
#include "python/cuda_call_arrays.h"
#include "python/dropout_binding.h"

namespace py = pybind11;

namespace deepkern::python {
namespace {

// Device array `name`'s shape, which must have 3 dims (`layout` names them).
const Shape& shape3(const py::object& obj, const char* op, const char* name, const char* layout) {
  const cuda::DeviceArray& a = device_array(obj, op, name);
  if (a.shape.size() != 3)
    throw py::value_error(std::string(op) + ": " + name + " must be 3-D " + layout + ", got shape " +
                          shape_str(a.shape));
  return a.shape;
}

// The host int64 (n,) array `name` as element offsets index * stride, each index in [0, count).
void append_offsets(std::vector<std::int64_t>& offsets, const char* op, const py::object& index, const char* name,
                    std::int64_t n, std::int64_t count, std::int64_t stride) {
  if (!py::isinstance<py::array>(index) ||
      !py::reinterpret_borrow<py::array>(index).dtype().is(py::dtype::of<std::int64_t>()))
    throw py::type_error(std::string(op) + ": " + name + " must be a host NumPy int64 array, got " +
                         std::string(py::str(py::type::of(index).attr("__name__"))));
  const auto idx = py::array_t<std::int64_t, py::array::c_style>::ensure(index);
  if (idx.ndim() != 1 || idx.shape(0) != n)
    throw py::value_error(std::string(op) + ": " + name + " must have shape (" + std::to_string(n) + ",)");
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t at = idx.at(i);
    if (at < 0 || at >= count)
      throw py::value_error(std::string(op) + ": " + name + "[" + std::to_string(i) + "] = " + std::to_string(at) +
                            " is out of range for " + std::to_string(count) + " matrices");
    offsets.push_back(at * stride);
  }
}

// A call's checked inputs: the shape, the device arrays read, the offsets (k's, v's, the mask's).
struct Inputs {
  cuda::AttentionShape shape{};
  const cuda::DeviceArray *q = nullptr, *k = nullptr, *v = nullptr, *mask = nullptr;
  std::vector<std::int64_t> offsets;
  std::int64_t mask_rows = 0, mask_cols = 0;
};

Inputs checked_inputs(DeviceCallArrays& arrays, const char* op, const py::object& q, const py::object& k,
                      const py::object& v, const py::object& k_index, const py::object& v_index, const py::object& mask,
                      const py::object& mask_index) {
  Inputs r;
  const Shape qs = shape3(q, op, "q", "(N, L, E)");
  const Shape ks = shape3(k, op, "k", "(Nk, S, E)");
  const Shape vs = shape3(v, op, "v", "(Nv, S, Ev)");
  const std::int64_t n = qs[0], l = qs[1], e = qs[2], s = ks[1], ev = vs[2];
  if (ks[2] != e || vs[1] != s)
    throw py::value_error(std::string(op) + ": k must be (Nk, S, " + std::to_string(e) +
                          ") and v (Nv, S, Ev) with k's S, got k " + shape_str(ks) + " and v " + shape_str(vs));
  r.shape = {n, l, s, e, ev};
  r.q = &arrays.add(q, "q", n * l * e, false);
  r.k = &arrays.add(k, "k", ks[0] * s * e, false);
  r.v = &arrays.add(v, "v", vs[0] * s * ev, false);
  append_offsets(r.offsets, op, k_index, "k_index", n, ks[0], s * e);
  append_offsets(r.offsets, op, v_index, "v_index", n, vs[0], s * ev);
  if (!mask.is_none()) {
    const Shape ms = shape3(mask, op, "mask", "(Nm, L or 1, S or 1)");
    if ((ms[1] != l && ms[1] != 1) || (ms[2] != s && ms[2] != 1))
      throw py::value_error(std::string(op) + ": mask must have shape (Nm, " + std::to_string(l) + " or 1, " +
                            std::to_string(s) + " or 1), got " + shape_str(ms));
    r.mask = &arrays.add(mask, "mask", ms[0] * ms[1] * ms[2], false);
    append_offsets(r.offsets, op, mask_index, "mask_index", n, ms[0], ms[1] * ms[2]);
    r.mask_rows = ms[1];
    r.mask_cols = ms[2];
  } else if (!mask_index.is_none()) {
    throw py::value_error(std::string(op) + ": mask_index must be None without a mask");
  }
  return r;
}

// A call's options, checked.
struct Options {
  double scale;
  bool causal;
  double dropout_p;
  std::uint64_t seed, offset;
};

Options checked_options(const char* op, double scale, bool causal, double dropout_p, const py::object& seed,
                        const py::object& offset) {
  if (!(dropout_p >= 0 && dropout_p <= 1))
    throw py::value_error(std::string(op) + ": dropout_p must be a probability in [0, 1], got " +
                          std::to_string(dropout_p));
  return {scale, causal, dropout_p, dropout_uint64(op, "seed", seed), dropout_uint64(op, "offset", offset)};
}

// The kernels' arguments of a call of float type T, its offsets uploaded into `memory` (device memory
// on `stream`, which the caller keeps until the kernels are queued).
template <class T>
cuda::AttentionArgs<T> device_args(const Inputs& in, const Options& o, int device, cudaStream_t stream,
                                   std::shared_ptr<void>& memory) {
  const std::size_t bytes = in.offsets.size() * sizeof(std::int64_t);
  memory = cuda::allocate(device, bytes, stream);
  if (bytes) DK_CUDA_CHECK(cudaMemcpyAsync(memory.get(), in.offsets.data(), bytes, cudaMemcpyHostToDevice, stream));
  return {in.shape,
          python::in<T>(in.q),
          python::in<T>(in.k),
          python::in<T>(in.v),
          python::in<T>(in.mask),
          static_cast<const std::int64_t*>(memory.get()),
          in.mask_rows == 1 ? 0 : in.mask_cols,
          in.mask_cols == 1 ? 0 : 1,
          o.scale,
          o.causal,
          o.dropout_p,
          o.seed,
          o.offset};
}

void attention_forward(const py::object& q, const py::object& k, const py::object& v, const py::object& k_index,
                       const py::object& v_index, const py::object& mask, const py::object& mask_index,
                       const py::object& o, const py::object& lse, double scale, bool causal, double dropout_p,
                       const py::object& seed, const py::object& offset) {
  constexpr const char* op = "attention_forward";
  const Options options = checked_options(op, scale, causal, dropout_p, seed, offset);
  DeviceCallArrays arrays(op);
  const Inputs in = checked_inputs(arrays, op, q, k, v, k_index, v_index, mask, mask_index);
  const cuda::AttentionShape& sh = in.shape;
  const cuda::DeviceArray& oa = arrays.add(o, "o", sh.n * sh.l * sh.ev, true);
  const cuda::DeviceArray& la = arrays.add(lse, "lse", sh.n * sh.l, true);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    std::shared_ptr<void> offsets;
    cuda::launch_attention_forward(device_args<T>(in, options, arrays.device(), stream, offsets), out<T>(oa),
                                   out<T>(la), stream);
  });
}

void attention_backward(const py::object& q, const py::object& k, const py::object& v, const py::object& k_index,
                        const py::object& v_index, const py::object& mask, const py::object& mask_index,
                        const py::object& o, const py::object& lse, const py::object& grad, const py::object& dq,
                        const py::object& dk, const py::object& dv, double scale, bool causal, double dropout_p,
                        const py::object& seed, const py::object& offset, const py::object& dmask) {
  constexpr const char* op = "attention_backward";
  const Options options = checked_options(op, scale, causal, dropout_p, seed, offset);
  DeviceCallArrays arrays(op);
  const Inputs in = checked_inputs(arrays, op, q, k, v, k_index, v_index, mask, mask_index);
  const cuda::AttentionShape& sh = in.shape;
  const cuda::DeviceArray& oa = arrays.add(o, "o", sh.n * sh.l * sh.ev, false);
  const cuda::DeviceArray& la = arrays.add(lse, "lse", sh.n * sh.l, false);
  const cuda::DeviceArray& ga = arrays.add(grad, "grad", sh.n * sh.l * sh.ev, false);
  const cuda::DeviceArray& dqa = arrays.add(dq, "dq", sh.n * sh.l * sh.e, true);
  const cuda::DeviceArray& dka = arrays.add(dk, "dk", sh.n * sh.s * sh.e, true);
  const cuda::DeviceArray& dva = arrays.add(dv, "dv", sh.n * sh.s * sh.ev, true);
  if (!dmask.is_none() && in.mask == nullptr) throw py::value_error(std::string(op) + ": dmask needs a mask");
  const cuda::DeviceArray* dma = arrays.optional(dmask, "dmask", sh.n * in.mask_rows * in.mask_cols, true);
  run_on_device(arrays, [&](auto zero, cudaStream_t stream) {
    using T = decltype(zero);
    std::shared_ptr<void> offsets;
    const cuda::AttentionArgs<T> args = device_args<T>(in, options, arrays.device(), stream, offsets);
    const std::shared_ptr<void> scratch = cuda::allocate(arrays.device(), 4 * sh.n * sh.l * sizeof(T), stream);
    cuda::launch_attention_backward(args, python::in<T>(oa), python::in<T>(la), python::in<T>(ga), out<T>(dqa),
                                    out<T>(dka), out<T>(dva), out<T>(dma), in.mask_rows, in.mask_cols,
                                    static_cast<T*>(scratch.get()), stream);
  });
}

}  // namespace
}  // namespace deepkern::python

void bind_cuda_attention(py::module_& m) {
  using namespace deepkern::python;
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("k_index"),
        py::arg("v_index"), py::arg("mask"), py::arg("mask_index"), py::arg("o"), py::arg("lse"), py::arg("scale"),
        py::arg("causal"), py::arg("dropout_p"), py::arg("seed"), py::arg("offset"),
        "o and lse of scaled dot-product attention on device arrays (deepkern._C.attention_forward's contract).");
  m.def("attention_backward", &attention_backward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("k_index"),
        py::arg("v_index"), py::arg("mask"), py::arg("mask_index"), py::arg("o"), py::arg("lse"), py::arg("grad"),
        py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("scale"), py::arg("causal"), py::arg("dropout_p"),
        py::arg("seed"), py::arg("offset"), py::arg("dmask") = py::none(),
        "dq, dk, dv (and dmask) of scaled dot-product attention on device arrays "
        "(deepkern._C.attention_backward's contract).");
}
