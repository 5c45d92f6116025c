// Convolution as GEMM per image and group (the blocked GEMM of csrc/cpu/gemm does the work):
//
//   forward      Y_g (Kg x PQ)    = W_g (Kg x CgRS) @ col(X_g) (CgRS x PQ)   + bias (per row)
//   grad data    dX_g             = col2im(W_g^T (CgRS x Kg) @ dY_g (Kg x PQ))
//   grad weight  dW_g (Kg x CgRS) = sum over images of dY_g @ col(X_g)^T
//
// col(X) is the im2col matrix: row (c, r, s), column (p, q) holds x[c][p*sh - ph + r*dh]
// [q*sw - pw + s*dw], zero outside the image. It is built per thread for a chunk of output rows
// at a time (at most kMaxColumnBytes), so no full-size im2col buffer is ever allocated. A 1x1
// convolution with stride 1 and no padding needs none: the input planes are col(X).
// Images are spread over threads (one single-threaded GEMM each) when there are at least as many
// images as threads; otherwise images run one at a time with the threads inside each GEMM.
#include "cpu/conv/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {
namespace {

// Bound on each thread's im2col chunk.
constexpr int64_t kMaxColumnBytes = int64_t(8) << 20;

struct Geometry {
  int64_t group_in, group_out;  // Cg, Kg
  int64_t col_rows;             // Cg * R * S
  int64_t pixels;               // P * Q
  int64_t in_plane;             // H * W
  bool direct;                  // 1x1, stride 1, no padding: col(X) is X itself
  int64_t chunk_rows;           // output rows per im2col chunk
};

template <class T>
Geometry geometry(const Conv2dShape& s) {
  Geometry g;
  g.group_in = s.in_channels / s.groups;
  g.group_out = s.out_channels / s.groups;
  g.col_rows = g.group_in * s.kernel_h * s.kernel_w;
  g.pixels = s.out_h * s.out_w;
  g.in_plane = s.in_h * s.in_w;
  g.direct = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 &&
             s.pad_h == 0 && s.pad_w == 0 && s.out_h == s.in_h && s.out_w == s.in_w;
  const int64_t row_bytes = std::max<int64_t>(1, g.col_rows * s.out_w * int64_t(sizeof(T)));
  g.chunk_rows = g.direct ? s.out_h : std::clamp<int64_t>(kMaxColumnBytes / row_bytes, 1, std::max<int64_t>(s.out_h, 1));
  return g;
}

template <class T>
T* column_buffer(int64_t count) {
  thread_local Scratch buffer;
  return static_cast<T*>(buffer.get(sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1))));
}

// For kernel column offset `w_offset` (= s*dw - pw), the output columns [q_lo, q_hi) whose input
// column q*sw + w_offset lies inside [0, W).
void valid_columns(const Conv2dShape& s, int64_t w_offset, int64_t& q_lo, int64_t& q_hi) {
  q_lo = w_offset >= 0 ? 0 : (-w_offset + s.stride_w - 1) / s.stride_w;
  q_hi = s.in_w - 1 - w_offset < 0 ? 0 : std::min(s.out_w, (s.in_w - 1 - w_offset) / s.stride_w + 1);
  q_lo = std::min(q_lo, q_hi);
}

// Visits every (row of col, output row p in [p0, p1)) pair whose input row is inside the image:
// visit(col_row_offset, input row pointer offset, w_offset) — shared by im2col and col2im.
// col row (c, r, s) starts at ((c * R + r) * S + s) * cols.
template <class Visit>
void for_each_tap_row(const Conv2dShape& s, int64_t group_in, int64_t p0, int64_t p1, Visit visit) {
  const int64_t cols = (p1 - p0) * s.out_w;
  for (int64_t c = 0; c < group_in; ++c)
    for (int64_t r = 0; r < s.kernel_h; ++r)
      for (int64_t t = 0; t < s.kernel_w; ++t) {
        const int64_t row = (c * s.kernel_h + r) * s.kernel_w + t;
        const int64_t w_offset = t * s.dilation_w - s.pad_w;
        int64_t q_lo, q_hi;
        valid_columns(s, w_offset, q_lo, q_hi);
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t ih = p * s.stride_h - s.pad_h + r * s.dilation_h;
          const bool inside = ih >= 0 && ih < s.in_h;
          visit(row * cols + (p - p0) * s.out_w, c * s.in_h * s.in_w + ih * s.in_w + w_offset,
                inside ? q_lo : 0, inside ? q_hi : 0);
        }
      }
}

// col[(c, r, s)][(p - p0) * Q + q] for output rows [p0, p1) of one image's group (x points at
// the group's first channel).
template <class T>
void im2col(const Conv2dShape& s, const T* x, int64_t group_in, int64_t p0, int64_t p1, T* col) {
  const int64_t q_count = s.out_w, sw = s.stride_w;
  for_each_tap_row(s, group_in, p0, p1, [&](int64_t dst, int64_t src, int64_t q_lo, int64_t q_hi) {
    T* out = col + dst;
    std::fill(out, out + q_lo, T(0));
    if (sw == 1) {
      std::memcpy(out + q_lo, x + src + q_lo, sizeof(T) * (q_hi - q_lo));
    } else {
      for (int64_t q = q_lo; q < q_hi; ++q) out[q] = x[src + q * sw];
    }
    std::fill(out + q_hi, out + q_count, T(0));
  });
}

// The adjoint of im2col: x[...] += col[...] over the same positions.
template <class T>
void col2im_add(const Conv2dShape& s, const T* col, int64_t group_in, int64_t p0, int64_t p1, T* x) {
  const int64_t sw = s.stride_w;
  for_each_tap_row(s, group_in, p0, p1, [&](int64_t src, int64_t dst, int64_t q_lo, int64_t q_hi) {
    const T* in = col + src;
    T* out = x + dst;
    if (sw == 1) {
#pragma omp simd
      for (int64_t q = q_lo; q < q_hi; ++q) out[q] += in[q];
    } else {
      for (int64_t q = q_lo; q < q_hi; ++q) out[q * sw] += in[q];
    }
  });
}

// Runs body(image, slot, gemm_threads) for every image. With at least as many images as threads,
// slot t in [0, threads) takes images t, t + threads, ... with single-threaded GEMMs; otherwise
// images run in order in slot 0 with every thread inside each GEMM.
template <class Body>
void for_each_image(int64_t batch, int slots, Body body) {
  if (slots > 1 && batch >= slots) {
    run_on_threads(slots, [&](int slot) {
      for (int64_t n = slot; n < batch; n += slots) body(n, slot, 1);
    });
  } else {
    for (int64_t n = 0; n < batch; ++n) body(n, 0, slots);
  }
}

}  // namespace

template <class T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const Geometry g = geometry<T>(s);
  for_each_image(s.batch, num_threads(), [&](int64_t n, int, int gemm_threads) {
    T* col = g.direct ? nullptr : column_buffer<T>(g.col_rows * g.chunk_rows * s.out_w);
    for (int64_t group = 0; group < s.groups; ++group) {
      const T* x_g = x + (n * s.in_channels + group * g.group_in) * g.in_plane;
      const T* w_g = w + group * g.group_out * g.col_rows;
      T* y_g = y + (n * s.out_channels + group * g.group_out) * g.pixels;
      GemmEpilogue<T> epilogue;
      if (bias) {
        epilogue.bias = bias + group * g.group_out;
        epilogue.bias_axis = BiasAxis::rows;
      }
      for (int64_t p0 = 0; p0 < s.out_h; p0 += g.chunk_rows) {
        const int64_t p1 = std::min(s.out_h, p0 + g.chunk_rows), cols = (p1 - p0) * s.out_w;
        StridedMatrix<const T> b{x_g + p0 * s.out_w, g.in_plane, 1};
        if (!g.direct) {
          im2col(s, x_g, g.group_in, p0, p1, col);
          b = {col, cols, 1};
        }
        gemm<T>(g.group_out, cols, g.col_rows, T(1), {w_g, g.col_rows, 1}, b, T(0),
                {y_g + p0 * s.out_w, g.pixels, 1}, epilogue, gemm_threads);
      }
    }
  });
}

template <class T>
void conv2d_backward_data(const Conv2dShape& s, const T* grad_y, const T* w, T* grad_x) {
  const Geometry g = geometry<T>(s);
  for_each_image(s.batch, num_threads(), [&](int64_t n, int, int gemm_threads) {
    T* dcol = g.direct ? nullptr : column_buffer<T>(g.col_rows * g.chunk_rows * s.out_w);
    T* dx_n = grad_x + n * s.in_channels * g.in_plane;
    if (!g.direct) std::fill(dx_n, dx_n + s.in_channels * g.in_plane, T(0));
    for (int64_t group = 0; group < s.groups; ++group) {
      const T* dy_g = grad_y + (n * s.out_channels + group * g.group_out) * g.pixels;
      const StridedMatrix<const T> w_g_t{w + group * g.group_out * g.col_rows, 1, g.col_rows};
      T* dx_g = dx_n + group * g.group_in * g.in_plane;
      for (int64_t p0 = 0; p0 < s.out_h; p0 += g.chunk_rows) {
        const int64_t p1 = std::min(s.out_h, p0 + g.chunk_rows), cols = (p1 - p0) * s.out_w;
        if (g.direct) {
          gemm<T>(g.group_in, cols, g.group_out, T(1), w_g_t, {dy_g + p0 * s.out_w, g.pixels, 1},
                  T(0), {dx_g + p0 * s.out_w, g.in_plane, 1}, {}, gemm_threads);
        } else {
          gemm<T>(g.col_rows, cols, g.group_out, T(1), w_g_t, {dy_g + p0 * s.out_w, g.pixels, 1},
                  T(0), {dcol, cols, 1}, {}, gemm_threads);
          col2im_add(s, dcol, g.group_in, p0, p1, dx_g);
        }
      }
    }
  });
}

template <class T>
void conv2d_backward_weight(const Conv2dShape& s, const T* grad_y, const T* x, T* grad_w,
                            T* grad_bias) {
  const Geometry g = geometry<T>(s);
  const int64_t weight_size = s.out_channels * g.col_rows;
  const int slots = static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(s.batch, 1)));
  // Slot 0 accumulates into grad_w; the others into their own zeroed partial sums, added at the end.
  const int partial_count = slots > 1 && s.batch >= slots ? slots - 1 : 0;
  std::vector<T> partials(static_cast<size_t>(partial_count * weight_size), T(0));
  std::fill(grad_w, grad_w + weight_size, T(0));
  for_each_image(s.batch, slots, [&](int64_t n, int slot, int gemm_threads) {
    T* dw = slot == 0 ? grad_w : partials.data() + (slot - 1) * weight_size;
    T* col = g.direct ? nullptr : column_buffer<T>(g.col_rows * g.chunk_rows * s.out_w);
    for (int64_t group = 0; group < s.groups; ++group) {
      const T* x_g = x + (n * s.in_channels + group * g.group_in) * g.in_plane;
      const T* dy_g = grad_y + (n * s.out_channels + group * g.group_out) * g.pixels;
      T* dw_g = dw + group * g.group_out * g.col_rows;
      for (int64_t p0 = 0; p0 < s.out_h; p0 += g.chunk_rows) {
        const int64_t p1 = std::min(s.out_h, p0 + g.chunk_rows), cols = (p1 - p0) * s.out_w;
        StridedMatrix<const T> col_t{x_g + p0 * s.out_w, 1, g.in_plane};
        if (!g.direct) {
          im2col(s, x_g, g.group_in, p0, p1, col);
          col_t = {col, 1, cols};
        }
        gemm<T>(g.group_out, g.col_rows, cols, T(1), {dy_g + p0 * s.out_w, g.pixels, 1}, col_t,
                T(1), {dw_g, g.col_rows, 1}, {}, gemm_threads);
      }
    }
  });
  for (int part = 0; part < partial_count; ++part) {
    const T* partial = partials.data() + part * weight_size;
#pragma omp simd
    for (int64_t i = 0; i < weight_size; ++i) grad_w[i] += partial[i];
  }
  if (grad_bias) {
    const bool small = s.batch * s.out_channels * g.pixels < (int64_t(1) << 16);
    const int team = small ? 1 : static_cast<int>(std::min<int64_t>(num_threads(), std::max<int64_t>(s.out_channels, 1)));
    run_on_threads(team, [&](int t) {
      for (int64_t k = t; k < s.out_channels; k += team) {
        T sum = 0;
        for (int64_t n = 0; n < s.batch; ++n) {
          const T* dy = grad_y + (n * s.out_channels + k) * g.pixels;
#pragma omp simd reduction(+ : sum)
          for (int64_t i = 0; i < g.pixels; ++i) sum += dy[i];
        }
        grad_bias[k] = sum;
      }
    });
  }
}

template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*);
template void conv2d_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*);
template void conv2d_backward_data<float>(const Conv2dShape&, const float*, const float*, float*);
template void conv2d_backward_data<double>(const Conv2dShape&, const double*, const double*, double*);
template void conv2d_backward_weight<float>(const Conv2dShape&, const float*, const float*, float*, float*);
template void conv2d_backward_weight<double>(const Conv2dShape&, const double*, const double*, double*, double*);

}  // namespace deepkern::cpu
