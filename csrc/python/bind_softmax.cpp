// deepkern._C, softmax family: softmax and log_softmax forward and backward along the middle axis
// of (outer, length, inner), and cross entropy with class-index targets (deepkern.ops.softmax).
//
// Every binding's contract: the float arrays are C-contiguous, of one dtype (x's, or grad's) and
// exactly the element counts the sizes give (any shape); outputs are written, never read, and
// overlap no other argument. Targets are int64, each in [0, classes) or equal to ignore_index
// (checked before anything runs: a ValueError names the first other one).
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "cpu/softmax/softmax.h"
#include "python/boundary.h"

namespace deepkern::python {
namespace {

// (outer, length, inner) checked non-negative, with their product (the element count).
cpu::SoftmaxShape checked_shape(const char* op, const char* names, int64_t outer, int64_t length, int64_t inner,
                                int64_t* count) {
  if (outer < 0 || length < 0 || inner < 0)
    throw py::value_error(std::string(op) + ": " + names + " must be >= 0, got " + std::to_string(outer) + ", " +
                          std::to_string(length) + ", " + std::to_string(inner));
  *count = checked_product(op, names, {outer, length, inner});
  return {outer, length, inner};
}

void softmax(const py::object& x, const py::object& out, int64_t outer, int64_t length, int64_t inner, bool log) {
  const char* op = "softmax";
  int64_t n = 0;
  const cpu::SoftmaxShape shape = checked_shape(op, "outer, length, inner", outer, length, inner, &n);
  dispatch_float(x, op, "x", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const T* xp = arrays.input(x, "x", Extent::elements(n));
    T* outp = arrays.output(out, "out", Extent::elements(n));
    py::gil_scoped_release release;
    cpu::softmax(xp, outp, shape, log);
  });
}

void softmax_backward(const py::object& grad, const py::object& y, const py::object& out, int64_t outer, int64_t length,
                      int64_t inner, bool log) {
  const char* op = "softmax_backward";
  int64_t n = 0;
  const cpu::SoftmaxShape shape = checked_shape(op, "outer, length, inner", outer, length, inner, &n);
  dispatch_float(y, op, "y", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "y");
    const T* gp = arrays.input(grad, "grad", Extent::elements(n));
    const T* yp = arrays.input(y, "y", Extent::elements(n));
    T* outp = arrays.output(out, "out", Extent::elements(n));
    py::gil_scoped_release release;
    cpu::softmax_backward(gp, yp, outp, shape, log);
  });
}

// ValueError naming the first target outside [0, classes) that is not ignore_index.
void check_targets(const char* op, const int64_t* target, int64_t count, int64_t classes, int64_t ignore_index) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t t = target[i];
    if (t != ignore_index && (t < 0 || t >= classes))
      throw py::value_error(std::string(op) + ": target " + std::to_string(t) + " is out of range for " +
                            std::to_string(classes) + " classes (ignore_index=" + std::to_string(ignore_index) + ")");
  }
}

cpu::CrossEntropyOptions checked_options(const char* op, int64_t ignore_index, double label_smoothing) {
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw py::value_error(std::string(op) + ": label_smoothing must be in [0, 1], got " +
                          std::to_string(label_smoothing));
  return {ignore_index, label_smoothing};
}

void cross_entropy_forward(const py::object& x, const py::object& target, const py::object& weight,
                           const py::object& loss, const py::object& stats, int64_t batch, int64_t classes,
                           int64_t inner, int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy_forward";
  int64_t n = 0;
  const cpu::SoftmaxShape shape = checked_shape(op, "batch, classes, inner", batch, classes, inner, &n);
  const cpu::CrossEntropyOptions options = checked_options(op, ignore_index, label_smoothing);
  const int64_t stat_count = checked_product(op, "batch * inner * 3", {batch, inner, 3});
  const int64_t samples = stat_count / 3;
  dispatch_float(x, op, "x", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const T* xp = arrays.input(x, "x", Extent::elements(n));
    const int64_t* tp = arrays.template input<int64_t>(target, "target", Extent::elements(samples));
    const T* wp = arrays.optional_input(weight, "weight", Extent::elements(classes));
    T* lp = arrays.output(loss, "loss", Extent::elements(samples));
    T* sp = arrays.output(stats, "stats", Extent::elements(stat_count));
    check_targets(op, tp, samples, classes, ignore_index);
    py::gil_scoped_release release;
    cpu::cross_entropy_forward(xp, tp, wp, lp, sp, shape, options);
  });
}

void cross_entropy_backward(const py::object& grad, const py::object& x, const py::object& target,
                            const py::object& weight, const py::object& stats, const py::object& out, int64_t batch,
                            int64_t classes, int64_t inner, int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy_backward";
  int64_t n = 0;
  const cpu::SoftmaxShape shape = checked_shape(op, "batch, classes, inner", batch, classes, inner, &n);
  const cpu::CrossEntropyOptions options = checked_options(op, ignore_index, label_smoothing);
  const int64_t stat_count = checked_product(op, "batch * inner * 3", {batch, inner, 3});
  const int64_t samples = stat_count / 3;
  // grad: one factor per sample, or one for all.
  const int64_t grad_count = as_array(grad, op, "grad").size() == 1 ? 1 : samples;
  dispatch_float(x, op, "x", [&](auto zero) {
    using T = decltype(zero);
    KernelArrays<T> arrays(op, "x");
    const T* gp = arrays.input(grad, "grad", Extent::elements(grad_count));
    const T* xp = arrays.input(x, "x", Extent::elements(n));
    const int64_t* tp = arrays.template input<int64_t>(target, "target", Extent::elements(samples));
    const T* wp = arrays.optional_input(weight, "weight", Extent::elements(classes));
    const T* sp = arrays.input(stats, "stats", Extent::elements(stat_count));
    T* outp = arrays.output(out, "out", Extent::elements(n));
    check_targets(op, tp, samples, classes, ignore_index);
    py::gil_scoped_release release;
    cpu::cross_entropy_backward(gp, grad_count, xp, tp, wp, sp, outp, shape, options);
  });
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def("softmax", &softmax, py::arg("x"), py::arg("out"), py::arg("outer"), py::arg("length"), py::arg("inner"),
        py::arg("log"), "out = softmax (log: log_softmax) of x seen as (outer, length, inner), along length.");
  m.def("softmax_backward", &softmax_backward, py::arg("grad"), py::arg("y"), py::arg("out"), py::arg("outer"),
        py::arg("length"), py::arg("inner"), py::arg("log"),
        "out = gradient wrt x of softmax (log: log_softmax) from grad and the saved output y.");
  m.def("cross_entropy_forward", &cross_entropy_forward, py::arg("x"), py::arg("target"), py::arg("weight"),
        py::arg("loss"), py::arg("stats"), py::arg("batch"), py::arg("classes"), py::arg("inner"),
        py::arg("ignore_index"), py::arg("label_smoothing"),
        "loss = per-sample cross entropy of x (batch, classes, inner) and int64 targets (batch, inner); stats = "
        "(max, log-sum-exp of x - max, target weight) per sample, for the backward.");
  m.def("cross_entropy_backward", &cross_entropy_backward, py::arg("grad"), py::arg("x"), py::arg("target"),
        py::arg("weight"), py::arg("stats"), py::arg("out"), py::arg("batch"), py::arg("classes"), py::arg("inner"),
        py::arg("ignore_index"), py::arg("label_smoothing"),
        "out = gradient wrt x of the per-sample losses times grad (one per sample, or one for all).");
}

}  // namespace deepkern::python
