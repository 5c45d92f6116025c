// General matrix multiply on the CPU: C = epilogue(alpha * A @ B + beta * C).
//
// Every matrix is a pointer plus element strides, so transposed, sliced and negative-stride
// NumPy views are read in place (the packing routines absorb the strides). float is the fast
// path (hand-written AVX-512 / AVX2 micro-kernels); double runs the same blocked algorithm with
// the portable micro-kernel.
#pragma once
#include <cstdint>

namespace deepkern::cpu {

enum class BiasAxis : int { none = 0, rows = 1, cols = 2 };

template <class T>
struct GemmEpilogue {
  const T* bias = nullptr;  // contiguous; length m (rows) or n (cols)
  BiasAxis bias_axis = BiasAxis::none;
  bool relu = false;  // max(x, 0) after the bias; NaN stays NaN
};

template <class T>
struct StridedMatrix {
  T* data;
  int64_t row_stride;  // in elements; may be negative (or zero for an input)
  int64_t col_stride;
};

// C (m x n) = epilogue(alpha * A (m x k) @ B (k x n) + beta * C). C is not read when beta == 0.
// C must not overlap A, B or the bias. Runs on `threads` threads (0: num_threads(); other op
// families pass 1 when they already run one problem per thread).
template <class T>
void gemm(int64_t m, int64_t n, int64_t k, T alpha, StridedMatrix<const T> a, StridedMatrix<const T> b, T beta,
          StridedMatrix<T> c, const GemmEpilogue<T>& epilogue, int threads = 0);

// `batch` independent problems of one shape: problem i reads a.data + a_offsets[i] and
// b.data + b_offsets[i] and writes c.data + c_offsets[i] (offsets in elements; broadcasting
// repeats an offset). The bias is shared by every problem.
template <class T>
void gemm_batched(int64_t batch, const int64_t* a_offsets, const int64_t* b_offsets, const int64_t* c_offsets,
                  int64_t m, int64_t n, int64_t k, T alpha, StridedMatrix<const T> a, StridedMatrix<const T> b, T beta,
                  StridedMatrix<T> c, const GemmEpilogue<T>& epilogue);

// B (k x n) packed once into the micro-kernel's panels, for many products with the same B (an
// RNN's recurrent weights multiply every step): panel q holds columns q*nr .. q*nr+nr-1 over all
// k rows, zero-padded past n. Valid for the kernel (ISA) that was active when it was packed. The
// panels live in the caller's buffer of packed_b_size(k, n) elements (a buffer kept between calls
// costs no page faults: a fresh 10 MB one per call cost ~5 ms at T=35 B=20 H=650).
template <class T>
struct PackedB {
  int64_t k = 0, n = 0;
  int nr = 0;
  const char* kernel = nullptr;
  const T* panels = nullptr;
};

template <class T>
int64_t packed_b_size(int64_t k, int64_t n);

template <class T>
PackedB<T> pack_b_matrix(int64_t k, int64_t n, StridedMatrix<const T> b, T* panels);

// The PackedB of a k x n B whose panels the caller writes itself into `panels` (packed_b_size(k, n)
// elements, laid out as pack_b_matrix lays them: element (p, j) at panels[(j / nr) * k * nr + p * nr +
// j % nr], zero past n), for the active ISA's kernel: a producer of B (convolution's im2col) writes the
// panels directly instead of a matrix that gemm would copy into them; or panels packed earlier with
// pack_b_matrix, kept by the caller (a convolution's weights packed once for inference).
template <class T>
PackedB<T> packed_b_layout(int64_t k, int64_t n, const T* panels);

// The panel width (nr) of the active ISA's packed B: packed_b_layout(k, n, panels).nr.
template <class T>
int packed_b_width();

// pack_b_matrix of a B whose columns come in `groups` groups of n, group g's first column at
// b.data + g * group_offset (one LSTM thread's columns of the four gate blocks): packed as one B
// of groups * n columns, into packed_b_size(k, groups * n) elements.
template <class T>
PackedB<T> pack_b_groups(int64_t k, int64_t n, int groups, int64_t group_offset, StridedMatrix<const T> b, T* panels);

// A (m x k) packed once into the micro-kernel's row panels, for many products with the same A (a
// convolution's weights at inference): panel q holds rows q*mr .. q*mr+mr-1 over all k rows, element
// (i, p) at panels[(i / mr) * k * mr + p * mr + i % mr], zero past m (the layout of A^T packed as B
// panels of width mr). Valid for the kernel (ISA) that was active when it was packed.
template <class T>
struct PackedA {
  int64_t m = 0, k = 0;
  int mr = 0;
  const char* kernel = nullptr;
  const T* panels = nullptr;
};

// The panel height (mr) of the active ISA's packed A, and its size for an m x k A.
template <class T>
int packed_a_height();
template <class T>
int64_t packed_a_size(int64_t m, int64_t k);

template <class T>
PackedA<T> pack_a_matrix(int64_t m, int64_t k, StridedMatrix<const T> a, T* panels);

// The PackedA of panels packed earlier with pack_a_matrix (or in that layout), kept by the caller.
template <class T>
PackedA<T> packed_a_layout(int64_t m, int64_t k, const T* panels);

// The order in which gemm_prepacked walks B's panels (m > 1). A B slightly larger than a cache
// that is multiplied again and again misses on every panel when walked the same way each time (the
// least recently used panel is always the next one); alternating the order re-uses, first, the
// panels still in cache.
enum class PanelOrder { ascending, descending };

// gemm() with B from pack_b_matrix: C (m x n) = epilogue(alpha * A (m x k) @ B + beta * C).
// m == 1 runs a GEMV that streams each panel in order. Throws std::runtime_error if the active
// ISA changed since B was packed.
template <class T>
void gemm_prepacked(int64_t m, T alpha, StridedMatrix<const T> a, const PackedB<T>& b, T beta, StridedMatrix<T> c,
                    const GemmEpilogue<T>& epilogue, int threads = 0, PanelOrder order = PanelOrder::ascending);

// gemm_prepacked with A packed beforehand too: C (a.m x b.n) = epilogue(alpha * A @ B + beta * C). Throws
// std::runtime_error if the active ISA changed since A or B was packed, std::invalid_argument if their
// depths differ.
template <class T>
void gemm_prepacked(const PackedA<T>& a, T alpha, const PackedB<T>& b, T beta, StridedMatrix<T> c,
                    const GemmEpilogue<T>& epilogue, int threads = 0);

// True when gemm() of an m x n x k product whose A rows and B columns are both contiguous along K
// runs the dot-product kernel on them in place (few rows, deep K: neither operand is packed). A
// caller that can lay A out either way (a convolution's im2col block) makes A's rows contiguous then.
template <class T>
bool gemm_takes_dot_path(int64_t m, int64_t n, int64_t k);

// The path the last gemm() or gemm_batched() problem of the process took: "gemv" (one row or column of
// C), "dot" (the dot-product kernel on A and B in place), "blocked" (packed panels), "transposed
// blocked" (packed panels of C^T = B^T A^T: a narrow C with a transposed A), or "" before the first.
// For tests and benchmarks.
const char* last_gemm_path();

// Name of the micro-kernel gemm<T> uses now ("avx512 12x32", ...), for show_config().
const char* gemm_kernel_name(bool double_precision);

}  // namespace deepkern::cpu
