// Gather and scatter along an axis with int64 indices, NumPy's take_along_axis, put_along_axis and
// (with a 1-D index) ufunc add.at, on device arrays of any strides. Indices may be negative
// (counted from the end); one outside [-extent, extent) is never used to address memory: the
// kernel records it in `bad` instead, and the binding (csrc/python/bind_cuda_elementwise.cpp)
// turns that into an IndexError naming it.
//
// Shapes, as NumPy's: `a` and `index` have one number of dimensions; along every dimension d but
// `axis` their extents broadcast, and the walked shape R has the broadcast extent, R[axis] being
// index.shape[axis]. `other` (take: the output, of shape R; put/add: the values) broadcasts to R.
// The caller has checked the shapes, that every array is on one device, that `index` is int64,
// that `other` has a's dtype, and that the written array overlaps none of the others.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/array.h"

namespace deepkern::cuda {

enum class AlongAxisOp {
  take,  // other[r] = a[r with index[r] along axis]
  put,   // a[r with index[r] along axis] = other[r] (a repeated target gets one of its values)
  add,   // a[r with index[r] along axis] += other[r], atomically (repeated targets accumulate)
};

// Whether `op` has a kernel for arrays of `dtype` (take and put: float32, float64, int64, bool;
// add: float32 and float64).
bool supports(AlongAxisOp op, DType dtype);

// Runs `op` over the shape R. `bad` is two int64 of device memory that the caller zeroed; where an
// index is out of range, bad[0] becomes 1 and bad[1] one such index (unadjusted), and that element
// is skipped. Queued on `stream`; nothing waits.
void along_axis(AlongAxisOp op, const DeviceArray& a, const DeviceArray& index, const DeviceArray& other, int axis,
                std::int64_t* bad, cudaStream_t stream);

// Records in `bad` (as along_axis does) an element of `index` outside [-extent, extent); reads
// nothing else. Scatters run it first, so that a refused index leaves `a` untouched.
void check_indices(const DeviceArray& index, std::int64_t extent, std::int64_t* bad, cudaStream_t stream);

}  // namespace deepkern::cuda
