#include "core/isa_dispatch.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace deepkern {
namespace {

constexpr int kFamilies = static_cast<int>(IsaFamily::count);
constexpr const char* kNames[kFamilies] = {
    "gemm",    "conv_winograd", "conv_depthwise", "lstm",      "optim",     "pool", "roofline",     "activation",
    "softmax", "dropout",       "norm",           "attention", "gemm_bf16", "cast", "conv_columns", "conv_direct"};
constexpr int kNotRun = 0;

std::atomic<int> records[kFamilies] = {};  // zero: not run

}  // namespace

const char* family_name(IsaFamily family) { return kNames[static_cast<int>(family)]; }

IsaFamily family_from_name(const char* name) {
  for (int f = 0; f < kFamilies; ++f)
    if (std::strcmp(kNames[f], name) == 0) return static_cast<IsaFamily>(f);
  std::string known;
  for (int f = 0; f < kFamilies; ++f) known += std::string(f ? ", '" : "'") + kNames[f] + "'";
  throw std::invalid_argument("family must be one of " + known + ", got '" + name + "'");
}

const char* last_isa_used(IsaFamily family) {
  const int code = detail::isa_record(family).load(std::memory_order_relaxed);
  return code == kNotRun ? nullptr : isa_name(static_cast<Isa>(code - 1));
}

void reset_isa_records() {
  for (auto& record : records) record.store(kNotRun, std::memory_order_relaxed);
}

namespace detail {
std::atomic<int>& isa_record(IsaFamily family) { return records[static_cast<int>(family)]; }
}  // namespace detail

}  // namespace deepkern
