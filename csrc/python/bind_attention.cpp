// deepkern._C, attention family: scaled dot-product attention forward and backward
// (deepkern.ops.attention; cpu/attention/attention.h).
//
// Every binding's contract: q (N, L, E), k (Nk, S, E), v (Nv, S, Ev), o and grad (N, L, Ev), lse (N, L)
// are C-contiguous arrays of q's float dtype; problem n reads k[k_index[n]] and v[v_index[n]]
// (k_index, v_index int64 (N,), each in range). The mask (None, or (Nm, Lm, Sm) of q's dtype with
// Lm in {1, L} and Sm in {1, S}: a 1 broadcasts) is additive, problem n reading mask[mask_index[n]].
// dq (N, L, E), dk (N, S, E), dv (N, S, Ev) hold one problem each, and so does dmask (None: not
// computed; else (N, Lm, Sm), the mask's gradient, which needs a mask). Outputs are written, never read,
// and overlap no other argument. dropout_p in [0, 1]; seed and offset in [0, 2**64).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/attention/attention.h"
#include "python/boundary.h"
#include "python/dropout_binding.h"

namespace deepkern::python {
namespace {

// The int64 (n,) array `name` as element offsets index * stride, each index in [0, count).
template <class T>
std::vector<int64_t> offsets_of(KernelArrays<T>& arrays, const char* op, const py::object& index, const char* name,
                                int64_t n, int64_t count, int64_t stride) {
  const int64_t* idx = arrays.template input<int64_t>(index, name, {n});
  std::vector<int64_t> offsets(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] >= count)
      throw py::value_error(std::string(op) + ": " + name + "[" + std::to_string(i) + "] = " + std::to_string(idx[i]) +
                            " is out of range for " + std::to_string(count) + " matrices");
    offsets[static_cast<size_t>(i)] = idx[i] * stride;
  }
  return offsets;
}

// The checked inputs of a call, and the vectors their offsets live in.
template <class T>
struct Inputs {
  using Scalar = T;
  cpu::AttentionShape shape{};
  cpu::AttentionInputs<T> in{};
  std::vector<int64_t> k_offsets, v_offsets, mask_offsets;
  int64_t mask_rows = 0, mask_cols = 0;  // the mask matrices' (Lm, Sm)
};

template <class T>
Inputs<T> checked_inputs(KernelArrays<T>& arrays, const char* op, const py::object& q, const py::object& k,
                         const py::object& v, const py::object& k_index, const py::object& v_index,
                         const py::object& mask, const py::object& mask_index) {
  Inputs<T> r;
  const Shape qs = shape_with_ndim(q, op, "q", 3, "(N, L, E)");
  const Shape ks = shape_with_ndim(k, op, "k", 3, "(Nk, S, E)");
  const Shape vs = shape_with_ndim(v, op, "v", 3, "(Nv, S, Ev)");
  const int64_t n = qs[0], l = qs[1], e = qs[2], s = ks[1], ev = vs[2];
  r.shape = {n, l, s, e, ev};
  r.in.q = arrays.input(q, "q", {n, l, e});
  r.in.k = arrays.input(k, "k", {ks[0], s, e});
  r.in.v = arrays.input(v, "v", {vs[0], s, ev});
  r.k_offsets = offsets_of(arrays, op, k_index, "k_index", n, ks[0], s * e);
  r.v_offsets = offsets_of(arrays, op, v_index, "v_index", n, vs[0], s * ev);
  r.in.k_offsets = r.k_offsets.data();
  r.in.v_offsets = r.v_offsets.data();
  if (!mask.is_none()) {
    const Shape ms = shape_with_ndim(mask, op, "mask", 3, "(Nm, L or 1, S or 1)");
    if ((ms[1] != l && ms[1] != 1) || (ms[2] != s && ms[2] != 1))
      throw py::value_error(std::string(op) + ": mask must have shape (Nm, " + std::to_string(l) + " or 1, " +
                            std::to_string(s) + " or 1), got " + shape_str(ms));
    r.in.mask = arrays.input(mask, "mask", {ms[0], ms[1], ms[2]});
    r.mask_offsets = offsets_of(arrays, op, mask_index, "mask_index", n, ms[0], ms[1] * ms[2]);
    r.in.mask_offsets = r.mask_offsets.data();
    r.mask_rows = ms[1];
    r.mask_cols = ms[2];
    r.in.mask_row_stride = ms[1] == 1 ? 0 : ms[2];
    r.in.mask_col_stride = ms[2] == 1 ? 0 : 1;
  } else if (!mask_index.is_none()) {
    throw py::value_error(std::string(op) + ": mask_index must be None without a mask");
  }
  return r;
}

cpu::AttentionOptions checked_options(const char* op, double scale, bool causal, double dropout_p,
                                      const py::object& seed, const py::object& offset) {
  if (!(dropout_p >= 0 && dropout_p <= 1))
    throw py::value_error(std::string(op) + ": dropout_p must be a probability in [0, 1], got " +
                          std::to_string(dropout_p));
  return {scale, causal, dropout_p, dropout_uint64(op, "seed", seed), dropout_uint64(op, "offset", offset)};
}

// The arrays every call reads: the queries, keys, values, their index maps and the optional mask.
struct CallInputs {
  const py::object &q, &k, &v, &k_index, &v_index, &mask, &mask_index;
};

// Checks the options and the inputs (q's float type chooses T), then calls
// run(arrays, inputs, options) to take the call's other arrays and run the kernel.
template <class Run>
void with_inputs(const char* op, const CallInputs& c, double scale, bool causal, double dropout_p,
                 const py::object& seed, const py::object& offset, Run&& run) {
  const cpu::AttentionOptions options = checked_options(op, scale, causal, dropout_p, seed, offset);
  dispatch_float(c.q, op, "q", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "q");
    const Inputs<T> r = checked_inputs(arrays, op, c.q, c.k, c.v, c.k_index, c.v_index, c.mask, c.mask_index);
    run(arrays, r, options);
  });
}

void attention_forward(const py::object& q, const py::object& k, const py::object& v, const py::object& k_index,
                       const py::object& v_index, const py::object& mask, const py::object& mask_index,
                       const py::object& o, const py::object& lse, double scale, bool causal, double dropout_p,
                       const py::object& seed, const py::object& offset) {
  const CallInputs c{q, k, v, k_index, v_index, mask, mask_index};
  with_inputs("attention_forward", c, scale, causal, dropout_p, seed, offset,
              [&](auto& arrays, const auto& r, const cpu::AttentionOptions& options) {
                using T = typename std::decay_t<decltype(r)>::Scalar;
                const cpu::AttentionShape& sh = r.shape;
                T* op_o = arrays.output(o, "o", {sh.n, sh.l, sh.ev});
                T* op_lse = arrays.output(lse, "lse", {sh.n, sh.l});
                py::gil_scoped_release release;
                cpu::attention_forward(r.in, sh, options, op_o, op_lse);
              });
}

void attention_backward(const py::object& q, const py::object& k, const py::object& v, const py::object& k_index,
                        const py::object& v_index, const py::object& mask, const py::object& mask_index,
                        const py::object& o, const py::object& lse, const py::object& grad, const py::object& dq,
                        const py::object& dk, const py::object& dv, double scale, bool causal, double dropout_p,
                        const py::object& seed, const py::object& offset, const py::object& dmask) {
  const CallInputs c{q, k, v, k_index, v_index, mask, mask_index};
  with_inputs("attention_backward", c, scale, causal, dropout_p, seed, offset,
              [&](auto& arrays, const auto& r, const cpu::AttentionOptions& options) {
                using T = typename std::decay_t<decltype(r)>::Scalar;
                const cpu::AttentionShape& sh = r.shape;
                const T* op_o = arrays.input(o, "o", {sh.n, sh.l, sh.ev});
                const T* op_lse = arrays.input(lse, "lse", {sh.n, sh.l});
                const T* op_grad = arrays.input(grad, "grad", {sh.n, sh.l, sh.ev});
                T* op_dq = arrays.output(dq, "dq", {sh.n, sh.l, sh.e});
                T* op_dk = arrays.output(dk, "dk", {sh.n, sh.s, sh.e});
                T* op_dv = arrays.output(dv, "dv", {sh.n, sh.s, sh.ev});
                if (!dmask.is_none() && mask.is_none())
                  throw py::value_error("attention_backward: dmask (the mask's gradient) needs a mask");
                const cpu::AttentionMaskGrad<T> op_dmask{
                    arrays.optional_output(dmask, "dmask", {sh.n, r.mask_rows, r.mask_cols}), r.mask_rows, r.mask_cols};
                py::gil_scoped_release release;
                cpu::attention_backward(r.in, sh, options, op_o, op_lse, op_grad, op_dq, op_dk, op_dv, op_dmask);
              });
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention_forward", &attention_forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("k_index"),
        py::arg("v_index"), py::arg("mask"), py::arg("mask_index"), py::arg("o"), py::arg("lse"), py::arg("scale"),
        py::arg("causal"), py::arg("dropout_p"), py::arg("seed"), py::arg("offset"),
        "o = softmax(scale q k^T + mask) v per problem (dropout from Philox), lse = the rows' log-sum-exp; "
        "consumes ceil(N L S / 4) counters when dropout_p > 0.");
  m.def("attention_backward", &attention_backward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("k_index"),
        py::arg("v_index"), py::arg("mask"), py::arg("mask_index"), py::arg("o"), py::arg("lse"), py::arg("grad"),
        py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("scale"), py::arg("causal"), py::arg("dropout_p"),
        py::arg("seed"), py::arg("offset"), py::arg("dmask") = py::none(),
        "dq, and dk, dv per problem, of attention_forward's o given grad, from o and lse; dmask (optional): "
        "the mask's gradient per problem (the pre-softmax scores' gradient, summed over the mask's size-1 dims).");
}

}  // namespace deepkern::python
