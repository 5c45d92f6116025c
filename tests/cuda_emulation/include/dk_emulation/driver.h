// For the test drivers (tests/cuda_emulation/*_driver.cpp): entry points are
//   DK_EMULATION_EXPORT int name(pointers, std::int64_t integers, double reals)
// returning dk_emu::guarded([&] { ... }): 0 on success, 1 when the body threw, the message then
// being what dk_emulation_last_error() returns (the Python side raises it as RuntimeError).
#pragma once
#include <cstdint>
#include <exception>
#include <string>

#define DK_EMULATION_EXPORT extern "C" __attribute__((visibility("default")))

namespace dk_emu {

inline std::string& driver_error() {
  static thread_local std::string message;
  return message;
}

template <typename Body>
int guarded(Body&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    driver_error() = e.what();
  } catch (...) {
    driver_error() = "an exception not derived from std::exception";
  }
  return 1;
}

// guarded(run(T{})) with T double when is_double, else float: the float type of a driver's arrays.
template <typename Run>
int guarded_typed(std::int64_t is_double, Run&& run) {
  return guarded([&] {
    if (is_double)
      run(double{});
    else
      run(float{});
  });
}

}  // namespace dk_emu

// Weak: a driver of several translation units may include this header in more than one.
extern "C" __attribute__((visibility("default"), weak)) const char* dk_emulation_last_error() {
  return dk_emu::driver_error().c_str();
}
