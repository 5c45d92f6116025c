// csrc/cuda/elementwise/ under the emulation: its launchers called with DeviceArrays built around
// the caller's pointers, shapes and strides (in elements), as the binding passes them after its
// checks. An operand whose data pointer is null is the number `value`.
// emulation-sources: csrc/cuda/elementwise/elementwise.cu csrc/cuda/elementwise/reduce.cu
// emulation-sources: csrc/cuda/elementwise/gather.cu
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/array.h"
#include "cuda/elementwise/elementwise.h"
#include "cuda/elementwise/gather.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

// The array at `data` (a DType code, `ndim` extents and element strides).
dkc::DeviceArray array(void* data, std::int64_t dtype, std::int64_t ndim, const std::int64_t* shape,
                       const std::int64_t* strides) {
  if (ndim < 0 || ndim > 64) throw std::invalid_argument("ndim " + std::to_string(ndim) + " is not in [0, 64]");
  dkc::DeviceArray a;
  a.data = static_cast<char*>(data);
  a.dtype = static_cast<dkc::DType>(dtype);
  a.shape.assign(shape, shape + ndim);
  a.strides.assign(strides, strides + ndim);
  return a;
}

}  // namespace

#define DK_ARRAY_PARAMS(x) \
  void *x, std::int64_t x##_dtype, std::int64_t x##_ndim, const std::int64_t *x##_shape, const std::int64_t *x##_strides
#define DK_ARRAY(x) array(x, x##_dtype, x##_ndim, x##_shape, x##_strides)

// kind: 0 unary (a), 1 binary (a, b), 2 where (a the condition, b, c); op: the index in the op
// names (elementwise_ops()).
DK_EMULATION_EXPORT int dk_elementwise_map(std::int64_t kind, std::int64_t op, DK_ARRAY_PARAMS(out), DK_ARRAY_PARAMS(a),
                                           double a_value, DK_ARRAY_PARAMS(b), double b_value, DK_ARRAY_PARAMS(c),
                                           double c_value) {
  return dk_emu::guarded([&] {
    const dkc::DeviceArray o = DK_ARRAY(out), arrays[3] = {DK_ARRAY(a), DK_ARRAY(b), DK_ARRAY(c)};
    const double values[3] = {a_value, b_value, c_value};
    dkc::Operand operands[3];
    for (int j = 0; j < 3; ++j) {
      operands[j].array = arrays[j].data ? &arrays[j] : nullptr;
      operands[j].value = values[j];
      operands[j].integer = static_cast<std::int64_t>(values[j]);
    }
    if (kind == 0) {
      dkc::unary(static_cast<dkc::UnaryOp>(op), o, operands[0], nullptr);
    } else if (kind == 1) {
      dkc::binary(static_cast<dkc::BinaryOp>(op), o, operands[0], operands[1], nullptr);
    } else {
      dkc::where(o, operands[0], operands[1], operands[2], nullptr);
    }
  });
}

DK_EMULATION_EXPORT int dk_elementwise_reduce(std::int64_t op, DK_ARRAY_PARAMS(out), DK_ARRAY_PARAMS(a),
                                              const std::int64_t* axes, std::int64_t n_axes) {
  return dk_emu::guarded([&] {
    dkc::reduce(static_cast<dkc::ReduceOp>(op), DK_ARRAY(out), DK_ARRAY(a), std::vector<int>(axes, axes + n_axes),
                nullptr);
  });
}

// op: 0 take (other the output), 1 put, 2 add (other the values); bad: two int64 the caller zeroed.
DK_EMULATION_EXPORT int dk_along_axis(std::int64_t op, DK_ARRAY_PARAMS(a), DK_ARRAY_PARAMS(index),
                                      DK_ARRAY_PARAMS(other), std::int64_t axis, std::int64_t* bad) {
  return dk_emu::guarded([&] {
    dkc::along_axis(static_cast<dkc::AlongAxisOp>(op), DK_ARRAY(a), DK_ARRAY(index), DK_ARRAY(other),
                    static_cast<int>(axis), bad, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_check_indices(DK_ARRAY_PARAMS(index), std::int64_t extent, std::int64_t* bad) {
  return dk_emu::guarded([&] { dkc::check_indices(DK_ARRAY(index), extent, bad, nullptr); });
}
