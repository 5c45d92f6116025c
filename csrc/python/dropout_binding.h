// The scalar arguments of the dropout bindings, checked alike for every device (bind_dropout.cpp,
// bind_cuda_dropout.cpp): p a probability, seed and offset unsigned 64-bit integers.
#pragma once
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace deepkern::python {

// p in [0, 1]; ValueError naming `op`'s p otherwise (NaN included).
inline double dropout_probability(const char* op, double p) {
  if (!(p >= 0 && p <= 1))
    throw pybind11::value_error(std::string(op) + ": p must be a probability in [0, 1], got " + std::to_string(p));
  return p;
}

// A Python int in [0, 2**64) (not a bool); TypeError / ValueError naming `op`'s argument `name`.
inline std::uint64_t dropout_uint64(const char* op, const char* name, const pybind11::handle& value) {
  const std::string where = std::string(op) + ": " + name;
  if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr()))
    throw pybind11::type_error(where + " must be an int, got " +
                               std::string(pybind11::str(pybind11::type::handle_of(value).attr("__name__"))));
  const unsigned long long v = PyLong_AsUnsignedLongLong(value.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw pybind11::value_error(where + " must be in [0, 2**64), got " + std::string(pybind11::str(value)));
  }
  return static_cast<std::uint64_t>(v);
}

}  // namespace deepkern::python
