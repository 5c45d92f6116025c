// csrc/cuda/pool/ under the emulation: the launchers on the caller's C-contiguous arrays, as the
// binding calls them after its checks.
// emulation-sources: csrc/cuda/pool/pool.cu
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/pool/pool.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

// The 13 fields of a deepkern._C pooling shape tuple (planes, in_h, in_w, out_h, out_w, kernel_h,
// kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w).
deepkern::cpu::Pool2dShape shape_of(const std::int64_t* f) {
  return {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12]};
}

}  // namespace

// op 0 max_pool2d (src x, dst out, indices or null), 1 avg_pool2d, 2 avg_pool2d_backward (src
// grad_out, dst grad_x), 3 adaptive_avg_pool2d, 4 adaptive_avg_pool2d_backward.
DK_EMULATION_EXPORT int dk_pool(std::int64_t op, std::int64_t is_double, const std::int64_t* shape, const void* src,
                                void* dst, std::int64_t* indices, std::int64_t count_include_pad,
                                std::int64_t divisor_override) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    const auto s = shape_of(shape);
    const auto* in = static_cast<const T*>(src);
    auto* out = static_cast<T*>(dst);
    switch (op) {
      case 0: return dkc::launch_max_pool2d(s, in, out, indices, nullptr);
      case 1: return dkc::launch_avg_pool2d(s, in, out, count_include_pad != 0, divisor_override, nullptr);
      case 2: return dkc::launch_avg_pool2d_backward(s, in, out, count_include_pad != 0, divisor_override, nullptr);
      case 3: return dkc::launch_adaptive_avg_pool2d(s, in, out, nullptr);
      case 4: return dkc::launch_adaptive_avg_pool2d_backward(s, in, out, nullptr);
    }
    throw std::invalid_argument("dk_pool: unknown op " + std::to_string(op));
  });
}

// max_pool2d_backward as the binding runs it: the index check into `bad` (three int64, zeroed by
// the caller: position, index, found), then the scatter, which does nothing when one was found.
DK_EMULATION_EXPORT int dk_max_pool_backward(std::int64_t is_double, const std::int64_t* shape, const void* grad_out,
                                             const std::int64_t* indices, void* grad_x, std::int64_t* bad) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    const auto s = shape_of(shape);
    auto* record = reinterpret_cast<dkc::PoolBadIndex*>(bad);
    dkc::launch_check_pool_indices(s, indices, record, nullptr);
    dkc::launch_max_pool2d_backward(s, static_cast<const T*>(grad_out), indices, static_cast<T*>(grad_x), record,
                                    nullptr);
  });
}
