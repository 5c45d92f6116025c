// csrc/cuda/gemm/ under the emulation: a GemmProblem built from the caller's pointers, strides (in
// elements) and offsets, run through the dispatcher with the kernel forced by name.
// emulation-sources: csrc/cuda/gemm/gemm.cu csrc/cuda/gemm/gemm_simt.cu csrc/cuda/gemm/gemm_mma.cu
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <string>

#include "cuda/gemm/gemm.h"
#include "dk_emulation/driver.h"

namespace {

namespace dkc = deepkern::cuda;

// A common divisor of the `batch` offsets at `offsets` (0 when all are 0), as the binding computes it.
std::int64_t divisor_of(const std::int64_t* offsets, std::int64_t batch) {
  std::int64_t g = 0;
  for (std::int64_t i = 0; i < batch; ++i) g = std::gcd(g, std::abs(offsets[i]));
  return g;
}

}  // namespace

// kernel: 1 simt, 2 mma (GemmKernel); precision: 0 fp32, 1 tf32, 2 bf16; strides: (row, col) of A,
// B and C; offsets: 3 * batch entries (A's, B's, C's) or null (one matrix each at the pointers).
DK_EMULATION_EXPORT int dk_gemm(std::int64_t kernel, std::int64_t precision, const void* a,
                                const std::int64_t* a_strides, const void* b, const std::int64_t* b_strides, void* c,
                                const std::int64_t* c_strides, const std::int64_t* offsets, std::int64_t m,
                                std::int64_t n, std::int64_t k, std::int64_t batch, double alpha, double beta,
                                const void* bias, std::int64_t bias_axis, std::int64_t relu) {
  return dk_emu::guarded([&] {
    dkc::GemmProblem p;
    p.m = m, p.n = n, p.k = k, p.batch = batch;
    p.precision = static_cast<dkc::GemmPrecision>(precision);
    p.dtype = p.precision == dkc::GemmPrecision::bf16 ? dkc::DType::bfloat16 : dkc::DType::float32;
    p.a = {a, a_strides[0], a_strides[1]};
    p.b = {b, b_strides[0], b_strides[1]};
    p.c = c;
    p.c_row_stride = c_strides[0], p.c_col_stride = c_strides[1];
    if (offsets != nullptr) {
      p.a.offsets = offsets, p.b.offsets = offsets + batch, p.c_offsets = offsets + 2 * batch;
      p.a.offset_divisor = divisor_of(p.a.offsets, batch);
      p.b.offset_divisor = divisor_of(p.b.offsets, batch);
      p.c_offset_divisor = divisor_of(p.c_offsets, batch);
    } else {
      p.a.offset_divisor = p.b.offset_divisor = p.c_offset_divisor = 0;
    }
    p.alpha = static_cast<float>(alpha), p.beta = static_cast<float>(beta);
    p.bias = bias;
    p.bias_axis = static_cast<dkc::BiasAxis>(bias_axis);
    p.relu = relu != 0;
    dkc::set_gemm_kernel(static_cast<dkc::GemmKernel>(kernel));
    dkc::gemm(p, nullptr);
    if (dkc::last_gemm_kernel() != static_cast<dkc::GemmKernel>(kernel) && m > 0 && n > 0 && batch > 0)
      throw std::logic_error(std::string("gemm ran ") + dkc::gemm_kernel_name(dkc::last_gemm_kernel()));
  });
}
