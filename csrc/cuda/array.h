// Device arrays: a pointer, a shape, strides and a dtype, plus what keeps the memory alive.
// Plain C++ (no CUDA headers). A kernel takes (data, shape, strides in elements, dtype) from a
// DeviceArray directly.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace deepkern::cuda {

enum class DType : std::uint8_t { float32, float64, float16, bfloat16, int32, int64, bool_, uint8 };

struct DTypeInfo {
  const char* name;      // NumPy's name: "float32", ..., "bfloat16" (ml_dtypes), "bool"
  int itemsize;          // bytes
  std::uint8_t dl_code;  // DLPack's DLDataTypeCode: 0 int, 1 uint, 2 float, 4 bfloat, 6 bool
  const char* typestr;   // __cuda_array_interface__'s typestr ("" where it has none: bfloat16)
};
const DTypeInfo& info(DType dtype);
// The DType of NumPy's dtype name; std::invalid_argument listing the supported ones otherwise.
DType dtype_from_name(const std::string& name);
// The DType of a DLPack (code, bits, lanes); false when there is none.
bool dtype_from_dlpack(int code, int bits, int lanes, DType* out);
std::string supported_dtype_names();

struct DeviceArray {
  std::shared_ptr<void> owner;  // keeps the memory alive: an allocator block or an imported buffer
  char* data = nullptr;         // the first element (owner's pointer plus the view's offset)
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  // in elements, as kernels index; NumPy's byte strides are these * itemsize
  DType dtype = DType::float32;
  int device = 0;

  std::int64_t itemsize() const { return info(dtype).itemsize; }
  std::int64_t nbytes() const { return size() * itemsize(); }
  std::size_t ndim() const { return shape.size(); }

  // The number of elements. (Inline, as is_contiguous: kernel launchers use them without linking
  // the allocator, as the emulation tests build them.)
  std::int64_t size() const {
    std::int64_t n = 1;
    for (std::int64_t extent : shape) n *= extent;
    return n;
  }
  // C order (dimensions of extent 1 have any stride).
  bool is_contiguous() const {
    std::int64_t expected = 1;
    for (std::size_t k = ndim(); k-- > 0;) {
      if (shape[k] == 0) return true;
      if (shape[k] != 1 && strides[k] != expected) return false;
      expected *= shape[k];
    }
    return true;
  }
};

// C-order strides (in elements) of `shape`.
std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape);
// A new C-contiguous array on `device`, from the caching allocator for the current stream.
// Throws std::invalid_argument for a negative extent, OutOfMemory when the memory is not there.
DeviceArray empty(const std::vector<std::int64_t>& shape, DType dtype, int device);
// `a` with `shape` (one extent may be -1: inferred); `a` must be C-contiguous (a view results).
// A shape as Python prints a tuple: "(2, 3)", "(5,)", "()".
std::string shape_text(const std::vector<std::int64_t>& shape);
DeviceArray reshape(const DeviceArray& a, std::vector<std::int64_t> shape);

// Copies, queued on the current stream of the arrays' device. The host ones wait for the copy
// (the host buffer is C-contiguous, nbytes() long); `copy` and `fill` return at once.
void copy_to_host(const DeviceArray& src, void* host);
// dst must be C-contiguous. Waits for the copy unless `non_blocking` and `host` is memory of the
// pinned cache (host_memory.h), which outlives the copy.
void copy_from_host(const DeviceArray& dst, const void* host, bool non_blocking = false);
// dst = src elementwise: same dtype and device; src's shape broadcasts to dst's (stride 0 where
// src has extent 1 or lacks the dimension). Any strides; overlapping src and dst are handled.
void copy(const DeviceArray& dst, const DeviceArray& src);
// Every element of dst set to the `itemsize` bytes of `pattern` (little-endian), any strides.
void fill(const DeviceArray& dst, std::uint64_t pattern);
// A new C-contiguous array of `a`'s values converted to `dtype` as NumPy's astype converts them
// (cuda/cast.h); a copy when the dtype is a's.
DeviceArray astype(const DeviceArray& a, DType dtype);
// A C-contiguous copy of `a` (a itself when it already is contiguous and `force` is false).
DeviceArray contiguous(const DeviceArray& a, bool force = false);

}  // namespace deepkern::cuda
