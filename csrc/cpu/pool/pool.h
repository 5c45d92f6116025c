// 2-D pooling on the CPU: max, average and adaptive average, forward and backward.
//
// Every array is C-contiguous NCHW seen as `planes` = N*C independent (H, W) planes; the Python
// layer (deepkern.ops.pool) checks the arguments and computes the output size (PyTorch's formula,
// ceil_mode included). Threads split the planes (forward: the planes' output rows). T is float or
// double; the loops are the active ISA's kernels (pool_kernels.h: bands of rows or of whole planes,
// each tap one vectorized pass over a band).
#pragma once
#include <cstdint>

namespace deepkern::cpu {

struct Pool2dShape {
  int64_t planes, in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// out[p, oh, ow] = max over the window's in-bounds taps (padding never wins). A NaN in the window
// gives NaN (the window's last NaN, in row-major tap order); ties keep the first maximum, as
// PyTorch. indices (may be null) receives the flat position ih * in_w + iw of that tap in its
// plane; a window that covers only padding (possible with dilation) gives -inf and index -1. Taps
// that reach no input element of any window are skipped, so the work follows the input.
template <class T>
void max_pool2d(const Pool2dShape& s, const T* x, T* out, int64_t* indices);

// grad_x = 0, then grad_x[p, indices[p, i]] += grad_out[p, i] for every output position i.
// Index -1 (a window over padding only) is skipped; any other index outside [0, in_h * in_w)
// throws std::invalid_argument before anything is written.
template <class T>
void max_pool2d_backward(const Pool2dShape& s, const T* grad_out, const int64_t* indices, T* grad_x);

// out = sum over the window's in-bounds taps / divisor, where the divisor is divisor_override
// when it is nonzero, else the window's size clipped to the padded input (count_include_pad)
// or to the input (not count_include_pad). dilation must be 1.
template <class T>
void avg_pool2d(const Pool2dShape& s, const T* x, T* out, bool count_include_pad, int64_t divisor_override);

// grad_x[tap] = sum over the windows containing the tap of grad_out / divisor (as avg_pool2d).
template <class T>
void avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x, bool count_include_pad,
                         int64_t divisor_override);

// out[p, oh, ow] = mean of rows [floor(oh*H/OH), ceil((oh+1)*H/OH)) and the columns likewise
// (PyTorch's adaptive windows). Only planes, in_h, in_w, out_h, out_w of `s` are read.
template <class T>
void adaptive_avg_pool2d(const Pool2dShape& s, const T* x, T* out);

// grad_x[tap] = sum over the windows containing the tap of grad_out / window size.
template <class T>
void adaptive_avg_pool2d_backward(const Pool2dShape& s, const T* grad_out, T* grad_x);

}  // namespace deepkern::cpu
