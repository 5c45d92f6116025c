// The one run-time ISA dispatch of every per-ISA code path.
//
// A family's per-ISA code is compiled once per ISA (CMake: DEEPKERN_PER_ISA_SOURCES, compiled with
// each ISA's flags and DEEPKERN_ISA_NS defined as avx512, avx2 or generic; or one source per ISA in
// DEEPKERN_ISA_ONLY_SOURCES_<isa>). Each ISA's translation unit defines the family's kernel table in
// namespace DEEPKERN_ISA_NS, filled by field name; the family's header declares the three with
// DEEPKERN_DECLARE_ISA_TABLES. The family's code picks a table with dispatch(), which follows
// active_isa() (CPUID, DEEPKERN_ISA, set_active_isa) and records which ISA ran, so tests and
// `deepkern info` can see that forcing an ISA steers every family.
//
// A per-ISA translation unit keeps every function it defines in its ISA's namespace or in an
// unnamed namespace: an inline function of a shared namespace compiled there with AVX-512 flags
// could be the copy the linker keeps for callers on any CPU.
#pragma once
#include <atomic>
#include <type_traits>

#include "core/cpu_features.h"

namespace deepkern {

// Families with per-ISA code. Add one here (and its name in isa_dispatch.cpp) with a new family.
enum class IsaFamily : int {
  gemm,
  conv_winograd,
  conv_depthwise,
  lstm,
  optim,
  pool,
  roofline,
  activation,
  softmax,
  dropout,
  norm,
  attention,
  gemm_bf16,
  cast,
  conv_columns,
  conv_direct,
  count
};

// "gemm", "conv_winograd", ...: the names last_isa_used() and deepkern._C.last_isa() take.
const char* family_name(IsaFamily family);
// Parses a name from family_name(); throws std::invalid_argument for an unknown one.
IsaFamily family_from_name(const char* name);

// The ISA the family's last dispatch() chose, or nullptr if it has not run since start-up or
// since reset_isa_records().
const char* last_isa_used(IsaFamily family);
void reset_isa_records();

namespace detail {
// A family's record: 0 before its first dispatch, else 1 + the ISA.
std::atomic<int>& isa_record(IsaFamily family);
inline int record_code(Isa isa) { return 1 + static_cast<int>(isa); }
}  // namespace detail

// One family's kernel tables, one per ISA: IsaTables{generic::t, avx2::t, avx512::t}, and a fourth,
// amx, for the families that have AMX kernels (the others run their avx512 table under amx).
template <class Table>
struct IsaTables {
  const Table& generic;
  const Table& avx2;
  const Table& avx512;
  const Table* amx = nullptr;
};
template <class Table>
IsaTables(const Table&, const Table&, const Table&) -> IsaTables<Table>;
template <class Table>
IsaTables(const Table&, const Table&, const Table&, const Table*) -> IsaTables<Table>;

// Declares a family's per-ISA table `name` of type Table (`extern const Table name;` in the
// namespaces generic, avx2 and avx512, within the namespace where it is used); each ISA's
// translation unit defines its own. Without DEEPKERN_X86 only the generic table is compiled, and
// the x86 names refer to it (never chosen there: detected_isa() is generic).
#if DEEPKERN_X86
#define DEEPKERN_DECLARE_ISA_TABLES(Table, name) \
  namespace generic {                            \
  extern const Table name;                       \
  }                                              \
  namespace avx2 {                               \
  extern const Table name;                       \
  }                                              \
  namespace avx512 {                             \
  extern const Table name;                       \
  }
#else
#define DEEPKERN_DECLARE_ISA_TABLES(Table, name) \
  namespace generic {                            \
  extern const Table name;                       \
  }                                              \
  namespace avx2 {                               \
  inline const Table& name = generic::name;      \
  }                                              \
  namespace avx512 {                             \
  inline const Table& name = generic::name;      \
  }
#endif

// One ISA's table of a family whose kernels exist for float and double.
template <template <class> class Kernels>
struct KernelsByType {
  Kernels<float> f32;
  Kernels<double> f64;

  template <class T>
  const Kernels<T>& of() const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    if constexpr (std::is_same_v<T, float>)
      return f32;
    else
      return f64;
  }
};

// The table for `isa`, without recording it (for queries such as a kernel's name).
template <class Table>
const Table& table_for(Isa isa, const IsaTables<Table>& tables) {
  switch (isa) {
    case Isa::amx: return tables.amx ? *tables.amx : tables.avx512;
    case Isa::avx512: return tables.avx512;
    case Isa::avx2: return tables.avx2;
    default: return tables.generic;
  }
}

// The table for the active ISA, for running the family's kernels. Records the choice (a relaxed
// load, and a store only when it changes, so calls from many threads do not contend for the line).
template <class Table>
const Table& dispatch(IsaFamily family, const IsaTables<Table>& tables) {
  const Isa isa = active_isa();
  std::atomic<int>& record = detail::isa_record(family);
  const int code = detail::record_code(isa);
  if (record.load(std::memory_order_relaxed) != code) record.store(code, std::memory_order_relaxed);
  return table_for(isa, tables);
}

}  // namespace deepkern
