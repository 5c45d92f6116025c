// csrc/cuda/conv/ under the emulation: the three convolution passes on the caller's pointers, the
// shape given as the 16 int64 fields of Conv2dShape in declaration order.
// emulation-sources: csrc/cuda/conv/conv.cu
#include <cstdint>
#include <cstring>

#include "cuda/conv/conv.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

dkc::Conv2dShape shape_of(const std::int64_t* fields) {
  static_assert(sizeof(dkc::Conv2dShape) == 16 * sizeof(std::int64_t));
  dkc::Conv2dShape s;
  std::memcpy(&s, fields, sizeof s);
  return s;
}

}  // namespace

// precision: 0 fp32 (simt), 1 tf32, 2 bf16 (mma). bias may be null.
DK_EMULATION_EXPORT int dk_conv2d_forward(const std::int64_t* shape, std::int64_t precision, const void* x,
                                          const void* w, const void* bias, void* y) {
  return dk_emu::guarded([&] {
    dkc::conv2d_forward(shape_of(shape), static_cast<dkc::GemmPrecision>(precision), x, w, bias, y, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_conv2d_backward_data(const std::int64_t* shape, std::int64_t precision, const void* grad_y,
                                                const void* w, void* grad_x) {
  return dk_emu::guarded([&] {
    dkc::conv2d_backward_data(shape_of(shape), static_cast<dkc::GemmPrecision>(precision), grad_y, w, grad_x, nullptr);
  });
}

// splits: as given (>= 1); workspace: conv2d_weight_workspace_bytes of them (dk_conv2d_weight_plan).
DK_EMULATION_EXPORT int dk_conv2d_backward_weight(const std::int64_t* shape, std::int64_t precision, const void* grad_y,
                                                  const void* x, void* grad_w, void* grad_bias, std::int64_t splits,
                                                  void* workspace) {
  return dk_emu::guarded([&] {
    dkc::conv2d_backward_weight(shape_of(shape), static_cast<dkc::GemmPrecision>(precision), grad_y, x, grad_w,
                                grad_bias, static_cast<int>(splits), workspace, nullptr);
  });
}

// plan[0] = conv2d_weight_splits(shape, sm_count), plan[1] = the workspace bytes of `splits`.
DK_EMULATION_EXPORT int dk_conv2d_weight_plan(const std::int64_t* shape, std::int64_t sm_count, std::int64_t splits,
                                              std::int64_t* plan) {
  return dk_emu::guarded([&] {
    plan[0] = dkc::conv2d_weight_splits(shape_of(shape), static_cast<int>(sm_count));
    plan[1] = dkc::conv2d_weight_workspace_bytes(shape_of(shape), static_cast<int>(splits));
  });
}
