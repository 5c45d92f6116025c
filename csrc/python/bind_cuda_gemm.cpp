// deepkern._cuda, gemm: batched C = epilogue(alpha * A @ B + beta * C) on the GPU, the device
// version of deepkern._C.gemm (csrc/python/bind_gemm.cpp), plus the kernel choice for tests.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/check.h"
#include "cuda/gemm/gemm.h"
#include "cuda/memory.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;
namespace dkc = deepkern::cuda;

namespace {

constexpr const char* kGemm = "gemm";

std::string str(std::int64_t v) { return std::to_string(v); }

using dkc::shape_text;

std::string where(const char* name) { return std::string(kGemm) + ": " + name; }

// Elements [lo, hi] (relative to the first) that an array's elements span; lo > hi when it is empty.
struct Span {
  std::int64_t lo = 0, hi = -1;
};

Span span_of(const dkc::DeviceArray& x) {
  if (x.size() == 0) return {};
  Span s{0, 0};
  for (std::size_t d = 0; d < x.ndim(); ++d) {
    const std::int64_t reach = (x.shape[d] - 1) * x.strides[d];
    (reach < 0 ? s.lo : s.hi) += reach;
  }
  return s;
}

// The byte range [first, end) of an array's elements, for the overlap checks.
bool bytes_overlap(const dkc::DeviceArray& x, const dkc::DeviceArray& y) {
  const Span sx = span_of(x), sy = span_of(y);
  if (sx.lo > sx.hi || sy.lo > sy.hi) return false;
  const char* x0 = x.data + sx.lo * x.itemsize();
  const char* x1 = x.data + (sx.hi + 1) * x.itemsize();
  const char* y0 = y.data + sy.lo * y.itemsize();
  const char* y1 = y.data + (sy.hi + 1) * y.itemsize();
  return x0 < y1 && y0 < x1;
}

// `offsets` (a host NumPy int64 1-D array of `batch` entries when batch >= 0, else of any length)
// as a vector.
std::vector<std::int64_t> host_offsets(const py::handle& offsets, const char* name, std::int64_t batch) {
  if (!py::isinstance<py::array>(offsets))
    throw py::type_error(where(name) + " must be a NumPy int64 array (host memory), got " +
                         std::string(py::str(py::type::of(offsets).attr("__name__"))));
  const auto arr = py::reinterpret_borrow<py::array>(offsets);
  if (!arr.dtype().is(py::dtype::of<std::int64_t>()))
    throw py::type_error(where(name) + " must have dtype int64, got " + std::string(py::str(arr.dtype())));
  if (arr.ndim() != 1 || (batch >= 0 && arr.shape(0) != batch))
    throw py::value_error(where(name) + " must have shape (" + (batch >= 0 ? str(batch) : "batch") +
                          ",) like a_offsets, got " + std::string(py::str(offsets.attr("shape"))));
  const auto typed = py::array_t<std::int64_t, py::array::forcecast>::ensure(arr);
  auto view = typed.unchecked<1>();
  std::vector<std::int64_t> out(static_cast<std::size_t>(arr.shape(0)));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = view(static_cast<py::ssize_t>(i));
  return out;
}

// Checks that the last two axes of `x` hold `rows` x `cols` matrices at each of `offsets` inside
// its memory (any strides) and returns the operand; `written` also checks that no two elements of
// `x` share memory.
dkc::GemmOperand matrices(const dkc::DeviceArray& x, const char* name, std::int64_t rows, std::int64_t cols,
                          const std::vector<std::int64_t>& offsets, const char* offsets_name, bool written) {
  const std::size_t nd = x.ndim();
  if (nd < 2 || x.shape[nd - 2] != rows || x.shape[nd - 1] != cols)
    throw py::value_error(where(name) + " must have shape (..., " + str(rows) + ", " + str(cols) + "), got shape " +
                          shape_text(x.shape));
  const Span span = span_of(x);
  if (written && x.size() > 0 && span.hi - span.lo + 1 < x.size())
    throw py::value_error(where(name) + " (shape " + shape_text(x.shape) + ", element strides " +
                          shape_text(x.strides) + ") has elements that share memory");
  const std::int64_t row_stride = x.strides[nd - 2], col_stride = x.strides[nd - 1];
  if (rows > 0 && cols > 0) {
    // Matrix i touches elements offsets[i] + [low, high]; they must lie in [span.lo, span.hi].
    const std::int64_t low =
        std::min<std::int64_t>(0, (rows - 1) * row_stride) + std::min<std::int64_t>(0, (cols - 1) * col_stride);
    const std::int64_t high =
        std::max<std::int64_t>(0, (rows - 1) * row_stride) + std::max<std::int64_t>(0, (cols - 1) * col_stride);
    for (std::size_t i = 0; i < offsets.size(); ++i)
      if (offsets[i] < span.lo - low || offsets[i] > span.hi - high)
        throw py::value_error(
            std::string(kGemm) + ": " + offsets_name + "[" + str(static_cast<std::int64_t>(i)) +
            "] = " + str(offsets[i]) + " puts a " + str(rows) + " x " + str(cols) + " matrix of " + name +
            " outside its shape " + shape_text(x.shape) + ", element strides " + shape_text(x.strides) +
            (span.lo - low <= span.hi - high
                 ? ": offsets " + str(span.lo - low) + " to " + str(span.hi - high) + " keep it inside"
                 : ": no offset keeps it inside"));
  }
  dkc::GemmOperand op;
  op.data = x.data;
  op.row_stride = row_stride;
  op.col_stride = col_stride;
  return op;
}

dkc::GemmPrecision precision_of(const std::string& precision) {
  if (precision == "fp32") return dkc::GemmPrecision::fp32;
  if (precision == "tf32") return dkc::GemmPrecision::tf32;
  if (precision == "bf16") return dkc::GemmPrecision::bf16;
  throw py::value_error(where("precision") + " must be 'fp32', 'tf32' or 'bf16', got '" + precision + "'");
}

// What the kernels may know of a batch's offsets without reading them back: a common divisor (0
// when all are 0) and, when they step evenly, the stride.
struct BatchLayout {
  std::int64_t divisor = 0;
  bool strided = true;
  std::int64_t stride = 0;
};

// Moves offsets[0] into the operand's pointer `data` (every offset then counts from it) and
// describes the offsets that remain.
template <class Void>  // void or const void
BatchLayout fold_first_offset(std::vector<std::int64_t>& offsets, std::int64_t itemsize, Void** data) {
  using Byte = std::conditional_t<std::is_const_v<Void>, const char, char>;
  const std::int64_t first = offsets[0];
  *data = static_cast<Byte*>(*data) + first * itemsize;
  for (std::int64_t& o : offsets) o -= first;
  BatchLayout layout;
  layout.stride = offsets.size() > 1 ? offsets[1] : 0;
  for (std::size_t i = 0; i < offsets.size(); ++i) {
    layout.divisor = std::gcd(layout.divisor, std::abs(offsets[i]));
    layout.strided = layout.strided && offsets[i] == layout.stride * std::int64_t(i);
  }
  return layout;
}

// Contract: as deepkern._C.gemm (bind_gemm.cpp), on DeviceArrays of one device: a, b, c and bias
// share one dtype, float32 for precision 'fp32' (FP32 on the CUDA cores) or 'tf32' (the tensor
// cores on TF32-rounded inputs), bfloat16 for 'bf16'; the offsets are host NumPy int64 arrays.
// The work is queued on the current stream of the arrays' device; the call returns at once.
void gemm(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj, const py::object& a_offsets,
          const py::object& b_offsets, const py::object& c_offsets, std::int64_t k, double alpha, double beta,
          const py::object& bias_obj, int bias_axis, bool relu, const std::string& precision) {
  dkc::GemmProblem p;
  p.precision = precision_of(precision);
  p.dtype = p.precision == dkc::GemmPrecision::bf16 ? dkc::DType::bfloat16 : dkc::DType::float32;
  const char* dtype_name = dkc::info(p.dtype).name;
  const dkc::DeviceArray& a = device_array(a_obj, kGemm, "a");
  const dkc::DeviceArray& b = device_array(b_obj, kGemm, "b");
  const dkc::DeviceArray& c = device_array(c_obj, kGemm, "c");
  const dkc::DeviceArray* bias = bias_obj.is_none() ? nullptr : &device_array(bias_obj, kGemm, "bias");
  const std::pair<const dkc::DeviceArray*, const char*> arrays[] = {{&a, "a"}, {&b, "b"}, {&c, "c"}, {bias, "bias"}};
  for (const auto& [x, name] : arrays) {
    if (x == nullptr) continue;
    if (x->dtype != p.dtype)
      throw py::type_error(where(name) + " must have dtype " + dtype_name + " for precision '" + precision + "', got " +
                           dkc::info(x->dtype).name);
    if (x->device != a.device)
      throw py::value_error(where(name) + " is on cuda:" + str(x->device) + " but a is on cuda:" + str(a.device));
  }
  if (c.ndim() < 2) throw py::value_error(where("c") + " must have shape (..., m, n), got " + shape_text(c.shape));
  p.m = c.shape[c.ndim() - 2];
  p.n = c.shape.back();
  p.k = k;
  std::vector<std::int64_t> a_off = host_offsets(a_offsets, "a_offsets", -1);
  p.batch = static_cast<std::int64_t>(a_off.size());
  std::vector<std::int64_t> b_off = host_offsets(b_offsets, "b_offsets", p.batch);
  std::vector<std::int64_t> c_off = host_offsets(c_offsets, "c_offsets", p.batch);
  p.a = matrices(a, "a", p.m, k, a_off, "a_offsets", false);
  p.b = matrices(b, "b", k, p.n, b_off, "b_offsets", false);
  const dkc::GemmOperand c_op = matrices(c, "c", p.m, p.n, c_off, "c_offsets", true);
  p.c = const_cast<void*>(c_op.data);
  p.c_row_stride = c_op.row_stride;
  p.c_col_stride = c_op.col_stride;
  for (const auto& [x, name] : arrays)
    if (x != nullptr && x != &c && bytes_overlap(c, *x))
      throw py::value_error(where("c") + " (shape " + shape_text(c.shape) + ") overlaps " + name + " (shape " +
                            shape_text(x->shape) + ")");
  if (bias_axis < 0 || bias_axis > 2 || (bias_axis == 0) == (bias != nullptr))
    throw py::value_error(where("bias_axis") + " must be 1 (rows) or 2 (cols) with a bias and 0 without, got " +
                          str(bias_axis) + (bias ? " with a bias" : " without one"));
  if (bias != nullptr) {
    const std::int64_t length = bias_axis == 1 ? p.m : p.n;
    if (bias->shape != std::vector<std::int64_t>{length} || !bias->is_contiguous())
      throw py::value_error(where("bias") + " must be a contiguous array of shape (" + str(length) + ",), got shape " +
                            shape_text(bias->shape) + ", element strides " + shape_text(bias->strides));
    p.bias = bias->data;
    p.bias_axis = static_cast<dkc::BiasAxis>(bias_axis);
  }
  p.alpha = static_cast<float>(alpha);
  p.beta = static_cast<float>(beta);
  p.relu = relu;

  py::gil_scoped_release release;
  dkc::DeviceGuard guard(a.device);
  const auto stream = static_cast<cudaStream_t>(dkc::current_stream(a.device));
  std::shared_ptr<void> device_offsets;  // held until the kernel is queued (the allocator orders reuse)
  if (p.batch >= 1) {
    const BatchLayout a_batch = fold_first_offset(a_off, a.itemsize(), &p.a.data);
    const BatchLayout b_batch = fold_first_offset(b_off, b.itemsize(), &p.b.data);
    p.c_offset_divisor = fold_first_offset(c_off, c.itemsize(), &p.c).divisor;
    p.a.offset_divisor = a_batch.divisor;
    p.a.strided_batch = a_batch.strided;
    p.a.batch_stride = a_batch.stride;
    p.b.offset_divisor = b_batch.divisor;
    p.b.strided_batch = b_batch.strided;
    p.b.batch_stride = b_batch.stride;
  }
  if (p.batch > 1) {  // one matrix each needs no offsets: they are in the pointers now
    std::vector<std::int64_t> all(a_off);
    all.insert(all.end(), b_off.begin(), b_off.end());
    all.insert(all.end(), c_off.begin(), c_off.end());
    const std::size_t bytes = all.size() * sizeof(std::int64_t);
    device_offsets = dkc::allocate(a.device, bytes, stream);
    DK_CUDA_CHECK(cudaMemcpyAsync(device_offsets.get(), all.data(), bytes, cudaMemcpyHostToDevice, stream));
    const auto* d = static_cast<const std::int64_t*>(device_offsets.get());
    p.a.offsets = d;
    p.b.offsets = d + p.batch;
    p.c_offsets = d + 2 * p.batch;
  }
  dkc::gemm(p, stream);
}

dkc::GemmKernel kernel_from_name(const std::string& name) {
  for (const dkc::GemmKernel k :
       {dkc::GemmKernel::automatic, dkc::GemmKernel::simt, dkc::GemmKernel::mma, dkc::GemmKernel::sm90})
    if (name == dkc::gemm_kernel_name(k)) return k;
  throw py::value_error("set_gemm_kernel: kernel must be 'automatic', 'simt', 'mma' or 'sm90', got '" + name + "'");
}

}  // namespace

void bind_cuda_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("a_offsets"), py::arg("b_offsets"),
        py::arg("c_offsets"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("bias"), py::arg("bias_axis"),
        py::arg("relu"), py::arg("precision"));
  m.def(
      "set_gemm_kernel", [](const std::string& name) { dkc::set_gemm_kernel(kernel_from_name(name)); },
      py::arg("kernel"),
      "Makes every GEMM run `kernel` ('simt', 'mma', 'sm90'), or the fastest that takes it ('automatic'); a forced "
      "kernel that cannot take a problem makes that call a ValueError saying why.");
  m.def("gemm_kernel", [] { return dkc::gemm_kernel_name(dkc::gemm_kernel()); }, "The kernel set_gemm_kernel chose.");
  m.def(
      "last_gemm_kernel", [] { return dkc::gemm_kernel_name(dkc::last_gemm_kernel()); },
      "The kernel the last GEMM ran ('automatic' before any, or when C was empty).");
}
