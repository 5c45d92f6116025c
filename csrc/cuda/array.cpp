// Device arrays: dtypes, allocation, views, copies and fills (see array.h).
#include "cuda/array.h"

#include <algorithm>
#include <stdexcept>

#include "cuda/cast_kernels.h"
#include "cuda/check.h"
#include "cuda/host_memory.h"
#include "cuda/copy_kernels.h"
#include "cuda/memory.h"
#include "cuda/stream.h"

namespace deepkern::cuda {
namespace {

constexpr DTypeInfo kDTypes[] = {
    {"float32", 4, 2, "<f4"}, {"float64", 8, 2, "<f8"}, {"float16", 2, 2, "<f2"}, {"bfloat16", 2, 4, ""},
    {"int32", 4, 0, "<i4"},   {"int64", 8, 0, "<i8"},   {"bool", 1, 6, "|b1"},    {"uint8", 1, 1, "|u1"},
};
constexpr int kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);

cudaStream_t stream_of(const DeviceArray& a) { return static_cast<cudaStream_t>(current_stream(a.device)); }

// [first byte, one past the last byte] that `a`'s elements occupy (size() > 0).
std::pair<const char*, const char*> byte_extent(const DeviceArray& a) {
  std::int64_t low = 0, high = 0;
  for (std::size_t k = 0; k < a.ndim(); ++k) {
    const std::int64_t reach = (a.shape[k] - 1) * a.strides[k];
    (reach < 0 ? low : high) += reach;
  }
  return {a.data + low * a.itemsize(), a.data + (high + 1) * a.itemsize()};
}

bool overlap(const DeviceArray& a, const DeviceArray& b) {
  const auto [a_first, a_end] = byte_extent(a);
  const auto [b_first, b_end] = byte_extent(b);
  return a_first < b_end && b_first < a_end;
}

// The copy's walk over `shape` (see merge_walk); throws when more than kMaxKernelDims remain.
StridedWalk make_walk(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& dst,
                      const std::vector<std::int64_t>& src) {
  StridedWalk w;
  if (!merge_walk<2>(shape, {dst, src}, &w))
    throw std::invalid_argument("arrays of shape " + shape_text(shape) +
                                " have more dimensions that cannot be merged than device copies handle (" +
                                std::to_string(kMaxKernelDims) + ")");
  return w;
}

// src's strides for reading it broadcast to `shape` (0 where src is broadcast).
std::vector<std::int64_t> broadcast_strides(const DeviceArray& src, const std::vector<std::int64_t>& shape) {
  if (src.ndim() > shape.size())
    throw std::invalid_argument("cannot copy an array of shape " + shape_text(src.shape) + " into one of shape " +
                                shape_text(shape));
  std::vector<std::int64_t> strides(shape.size(), 0);
  const std::size_t lead = shape.size() - src.ndim();
  for (std::size_t j = 0; j < src.ndim(); ++j) {
    if (src.shape[j] == shape[lead + j]) {
      strides[lead + j] = src.strides[j];
    } else if (src.shape[j] != 1) {
      throw std::invalid_argument("cannot broadcast an array of shape " + shape_text(src.shape) + " to shape " +
                                  shape_text(shape));
    }
  }
  return strides;
}

}  // namespace

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

const DTypeInfo& info(DType dtype) { return kDTypes[static_cast<int>(dtype)]; }

std::string supported_dtype_names() {
  std::string names;
  for (int i = 0; i < kNumDTypes; ++i) names += (i ? ", " : "") + std::string(kDTypes[i].name);
  return names;
}

DType dtype_from_name(const std::string& name) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (name == kDTypes[i].name) return static_cast<DType>(i);
  throw std::invalid_argument("dtype " + name +
                              " is not supported on CUDA devices (supported: " + supported_dtype_names() + ")");
}

bool dtype_from_dlpack(int code, int bits, int lanes, DType* out) {
  for (int i = 0; i < kNumDTypes; ++i) {
    if (lanes == 1 && code == kDTypes[i].dl_code && bits == 8 * kDTypes[i].itemsize) {
      *out = static_cast<DType>(i);
      return true;
    }
  }
  return false;
}

std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t step = 1;
  for (std::size_t k = shape.size(); k-- > 0;) {
    strides[k] = step;
    step *= std::max<std::int64_t>(shape[k], 1);
  }
  return strides;
}

DeviceArray empty(const std::vector<std::int64_t>& shape, DType dtype, int device) {
  std::int64_t n = info(dtype).itemsize;
  for (std::int64_t extent : shape) {
    if (extent < 0) throw std::invalid_argument("negative dimensions are not allowed, got shape " + shape_text(shape));
    if (extent != 0 && n > INT64_MAX / extent)
      throw std::invalid_argument("shape " + shape_text(shape) + " is too large: its size overflows 64 bits");
    n *= extent;
  }
  if (device < 0) throw std::invalid_argument("device index " + std::to_string(device) + " is negative");
  DeviceArray a;
  a.owner = allocate(device, static_cast<std::size_t>(n), current_stream(device));
  a.data = static_cast<char*>(a.owner.get());
  a.shape = shape;
  a.strides = contiguous_strides(shape);
  a.dtype = dtype;
  a.device = device;
  return a;
}

DeviceArray reshape(const DeviceArray& a, std::vector<std::int64_t> shape) {
  int inferred = -1;
  std::int64_t known = 1;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == -1 && inferred < 0) {
      inferred = static_cast<int>(k);
    } else if (shape[k] < 0) {
      throw std::invalid_argument("reshape: invalid shape " + shape_text(shape) +
                                  " (one -1 at most, no other negatives)");
    } else {
      known *= shape[k];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || a.size() % known != 0)
      throw std::invalid_argument("cannot reshape an array of size " + std::to_string(a.size()) + " into shape " +
                                  shape_text(shape));
    shape[inferred] = a.size() / known;
    known *= shape[inferred];
  }
  if (known != a.size())
    throw std::invalid_argument("cannot reshape an array of size " + std::to_string(a.size()) + " into shape " +
                                shape_text(shape));
  if (!a.is_contiguous()) return reshape(contiguous(a, false), std::move(shape));  // NumPy's copy
  DeviceArray view = a;
  view.strides = contiguous_strides(shape);
  view.shape = std::move(shape);
  return view;
}

DeviceArray contiguous(const DeviceArray& a, bool force) {
  if (a.is_contiguous() && !force) return a;
  DeviceArray out = empty(a.shape, a.dtype, a.device);
  copy(out, a);
  return out;
}

DeviceArray astype(const DeviceArray& a, DType dtype) {
  if (dtype == a.dtype) return contiguous(a, true);
  DeviceArray out = empty(a.shape, dtype, a.device);
  if (out.size() == 0) return out;
  DeviceGuard guard(a.device);
  launch_cast(out.data, dtype, a.data, a.dtype, make_walk(a.shape, out.strides, a.strides), out.size(), stream_of(a));
  return out;
}

void copy_to_host(const DeviceArray& src, void* host) {
  if (src.size() == 0) return;
  const DeviceArray packed = contiguous(src);
  DeviceGuard guard(src.device);
  DK_CUDA_CHECK(cudaMemcpyAsync(host, packed.data, packed.nbytes(), cudaMemcpyDeviceToHost, stream_of(src)));
  DK_CUDA_CHECK(cudaStreamSynchronize(stream_of(src)));
}

void copy_from_host(const DeviceArray& dst, const void* host, bool non_blocking) {
  if (!dst.is_contiguous()) throw std::invalid_argument("copy_from_host: the destination must be C-contiguous");
  if (dst.size() == 0) return;
  DeviceGuard guard(dst.device);
  DK_CUDA_CHECK(cudaMemcpyAsync(dst.data, host, dst.nbytes(), cudaMemcpyHostToDevice, stream_of(dst)));
  // Memory of the pinned cache is not reused before the copy ends (host_memory.h): no wait. Other
  // host memory may be freed or changed once this returns: wait for the copy.
  if (non_blocking && record_pinned_use(host, dst.nbytes(), stream_of(dst))) return;
  DK_CUDA_CHECK(cudaStreamSynchronize(stream_of(dst)));
}

void copy(const DeviceArray& dst, const DeviceArray& src) {
  if (dst.dtype != src.dtype)
    throw std::invalid_argument(std::string("copy: dtypes differ (destination ") + info(dst.dtype).name + ", source " +
                                info(src.dtype).name + "); device casts are not implemented");
  if (dst.device != src.device)
    throw std::invalid_argument("copy: arrays on devices cuda:" + std::to_string(dst.device) +
                                " and cuda:" + std::to_string(src.device) + "; copy through the host between devices");
  const std::vector<std::int64_t> src_strides = broadcast_strides(src, dst.shape);
  if (dst.size() == 0) return;
  if (overlap(dst, src)) return copy(dst, contiguous(src, true));
  DeviceGuard guard(dst.device);
  if (dst.is_contiguous() && src.is_contiguous() && src.size() == dst.size()) {
    DK_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice, stream_of(dst)));
    return;
  }
  launch_strided_copy(dst.data, src.data, make_walk(dst.shape, dst.strides, src_strides), dst.size(),
                      static_cast<int>(dst.itemsize()), stream_of(dst));
}

void fill(const DeviceArray& dst, std::uint64_t pattern) {
  if (dst.size() == 0) return;
  DeviceGuard guard(dst.device);
  const int itemsize = static_cast<int>(dst.itemsize());
  bool bytes_alike = true;  // every byte of the element the same: cudaMemset can write it
  for (int b = 1; b < itemsize; ++b) bytes_alike = bytes_alike && ((pattern >> (8 * b)) & 0xff) == (pattern & 0xff);
  if (dst.is_contiguous() && bytes_alike) {
    DK_CUDA_CHECK(cudaMemsetAsync(dst.data, static_cast<int>(pattern & 0xff), dst.nbytes(), stream_of(dst)));
    return;
  }
  launch_fill(dst.data, pattern, make_walk(dst.shape, dst.strides, dst.strides), dst.size(), itemsize, stream_of(dst));
}

}  // namespace deepkern::cuda
