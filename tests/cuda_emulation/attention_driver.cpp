// csrc/cuda/attention/ under the emulation: the launchers on the caller's contiguous arrays, as the
// binding calls them after its checks. is_double: float64 arrays, else float32; offsets: 3 n int64
// element offsets (k's, v's, the mask's); mask and dmask may be null; scratch: 4 n l elements.
// emulation-sources: csrc/cuda/attention/attention.cu
#include <cstdint>

#include "cuda/attention/attention.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

template <class T>
dkc::AttentionArgs<T> args_of(const void* q, const void* k, const void* v, const void* mask,
                              const std::int64_t* offsets, const std::int64_t* sizes, double scale, std::int64_t causal,
                              double dropout_p, std::int64_t seed, std::int64_t offset) {
  // sizes: n, l, s, e, ev, mask_row_stride, mask_col_stride
  return {{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4]},
          static_cast<const T*>(q),
          static_cast<const T*>(k),
          static_cast<const T*>(v),
          static_cast<const T*>(mask),
          offsets,
          sizes[5],
          sizes[6],
          scale,
          causal != 0,
          dropout_p,
          static_cast<std::uint64_t>(seed),
          static_cast<std::uint64_t>(offset)};
}

}  // namespace

DK_EMULATION_EXPORT int dk_attention_forward(std::int64_t is_double, const void* q, const void* k, const void* v,
                                             const void* mask, const std::int64_t* offsets, const std::int64_t* sizes,
                                             double scale, std::int64_t causal, double dropout_p, std::int64_t seed,
                                             std::int64_t offset, void* o, void* lse) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    dkc::launch_attention_forward(args_of<T>(q, k, v, mask, offsets, sizes, scale, causal, dropout_p, seed, offset),
                                  static_cast<T*>(o), static_cast<T*>(lse), nullptr);
  });
}

DK_EMULATION_EXPORT int dk_attention_backward(std::int64_t is_double, const void* q, const void* k, const void* v,
                                              const void* mask, const std::int64_t* offsets, const std::int64_t* sizes,
                                              double scale, std::int64_t causal, double dropout_p, std::int64_t seed,
                                              std::int64_t offset, const void* o, const void* lse, const void* grad,
                                              void* dq, void* dk, void* dv, void* dmask, std::int64_t mask_rows,
                                              std::int64_t mask_cols, void* scratch) {
  return dk_emu::guarded_typed(is_double, [&](auto zero) {
    using T = decltype(zero);
    dkc::launch_attention_backward(args_of<T>(q, k, v, mask, offsets, sizes, scale, causal, dropout_p, seed, offset),
                                   static_cast<const T*>(o), static_cast<const T*>(lse), static_cast<const T*>(grad),
                                   static_cast<T*>(dq), static_cast<T*>(dk), static_cast<T*>(dv),
                                   static_cast<T*>(dmask), mask_rows, mask_cols, static_cast<T*>(scratch), nullptr);
  });
}
