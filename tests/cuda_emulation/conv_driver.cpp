// csrc/cuda/conv/ under the emulation: the three convolution passes on the caller's pointers, the
// shape given as the 16 int64 fields of Conv2dShape in declaration order, and the path they took
// (implicit GEMM, depthwise kernels, or the GEMM itself for 1x1: hence the GEMM sources).
// emulation-sources: csrc/cuda/conv/conv.cu csrc/cuda/conv/depthwise.cu csrc/cuda/gemm/gemm.cu
// emulation-sources: csrc/cuda/gemm/gemm_simt.cu csrc/cuda/gemm/gemm_mma.cu
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

// precision: 0 fp32 (simt), 1 tf32, 2 bf16 (mma). bias may be null. workspace: at least
// dk_conv2d_workspace_bytes of the shape (may be null when that is 0).
DK_EMULATION_EXPORT int dk_conv2d_forward(const std::int64_t* shape, std::int64_t precision, const void* x,
                                          const void* w, const void* bias, void* y, void* workspace) {
  return dk_emu::guarded([&] {
    dkc::conv2d_forward(shape_of(shape), static_cast<dkc::GemmPrecision>(precision), x, w, bias, y, workspace, nullptr);
  });
}

DK_EMULATION_EXPORT int dk_conv2d_backward_data(const std::int64_t* shape, std::int64_t precision, const void* grad_y,
                                                const void* w, void* grad_x, void* workspace) {
  return dk_emu::guarded([&] {
    dkc::conv2d_backward_data(shape_of(shape), static_cast<dkc::GemmPrecision>(precision), grad_y, w, grad_x, workspace,
                              nullptr);
  });
}

// out[0] = conv2d_workspace_bytes(shape).
DK_EMULATION_EXPORT int dk_conv2d_workspace_bytes(const std::int64_t* shape, std::int64_t* out) {
  return dk_emu::guarded([&] { out[0] = dkc::conv2d_workspace_bytes(shape_of(shape)); });
}

// out[0] = the last pass's path: 0 none, 1 implicit GEMM, 2 depthwise, 3 the 1x1 GEMM (conv.h).
DK_EMULATION_EXPORT int dk_conv2d_last_path(std::int64_t* out) {
  return dk_emu::guarded([&] { out[0] = static_cast<std::int64_t>(dkc::last_conv2d_path()); });
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
