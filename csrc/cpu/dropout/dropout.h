// Dropout on the CPU from the counter-based Philox4x32-10 stream (philox.h), forward and backward.
//
// dropout: for i in [0, n), mask[i] = 1 when element i is kept (its Philox word is >= ceil(p 2^32),
// see philox.h: it depends only on (seed, offset, i), so every thread count, ISA and the CUDA
// kernel give the same mask), else 0; y[i] = x[i] * (mask[i] ? scale : 0) with scale = 1 / (1 - p)
// rounded once to T (0 when p = 1), as PyTorch's x * mask / (1 - p): a dropped NaN or inf gives
// NaN. The call consumes ceil(n / 4) counters: the next call's offset is offset + ceil(n / 4).
// dropout_backward: out[i] = grad[i] * (mask[i] ? scale : 0), the same formula on the saved mask.
//
// n contiguous elements per array; the mask is one byte per element (0 or 1, NumPy's bool);
// outputs overlap no input. T is float or double; p is in [0, 1] (the bindings check).
#pragma once
#include <cstdint>

namespace deepkern::cpu {

template <class T>
void dropout(const T* x, T* y, std::uint8_t* mask, int64_t n, double p, std::uint64_t seed, std::uint64_t offset);

template <class T>
void dropout_backward(const T* grad, const std::uint8_t* mask, T* out, int64_t n, double p);

}  // namespace deepkern::cpu
