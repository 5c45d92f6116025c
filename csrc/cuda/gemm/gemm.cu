// The GEMM dispatcher: which kernel runs a problem (csrc/cuda/gemm/gemm.h).
#include "cuda/gemm/gemm.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace deepkern::cuda {
namespace {

std::atomic<GemmKernel> chosen{GemmKernel::automatic};
std::atomic<GemmKernel> last{GemmKernel::automatic};

// Why `kernel` cannot take `p`, or nullptr when it can (sm90 is asked by running it).
const char* refusal(GemmKernel kernel, const GemmProblem& p) {
  switch (kernel) {
    case GemmKernel::simt:
      return p.dtype == DType::float32 ? nullptr : "the simt kernel computes float32 data only (bf16 runs on mma)";
    case GemmKernel::mma:
      return p.precision == GemmPrecision::fp32
                 ? "the mma kernel computes tf32 or bf16 (float32 without allow_tf32 runs on simt)"
                 : nullptr;
    default: return nullptr;
  }
}

}  // namespace

void set_gemm_kernel(GemmKernel kernel) { chosen.store(kernel); }
GemmKernel gemm_kernel() { return chosen.load(); }
GemmKernel last_gemm_kernel() { return last.load(); }

const char* gemm_kernel_name(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::simt: return "simt";
    case GemmKernel::mma: return "mma";
    case GemmKernel::sm90: return "sm90";
    default: return "automatic";
  }
}

void gemm(const GemmProblem& p, cudaStream_t stream) {
  if (p.m == 0 || p.n == 0 || p.batch == 0) {
    last.store(GemmKernel::automatic);
    return;
  }
  const GemmKernel want = chosen.load();
  if (const char* why = refusal(want, p))
    throw std::invalid_argument(std::string("gemm: the forced kernel cannot take this problem: ") + why);
  GemmKernel ran;
  if (want == GemmKernel::sm90 || want == GemmKernel::automatic) {
#ifdef DEEPKERN_HAVE_SM90_GEMM
    if (gemm_sm90(p, stream)) {
      last.store(GemmKernel::sm90);
      return;
    }
    if (want == GemmKernel::sm90)
      throw std::invalid_argument(
          "gemm: the forced kernel cannot take this problem: the sm90 kernel needs an sm_90 device and the "
          "precisions, layouts and alignment it supports");
#else
    if (want == GemmKernel::sm90)
      throw std::invalid_argument(
          "gemm: the forced kernel cannot take this problem: the sm90 kernel is not built (the CUDA architectures "
          "lack 90a)");
#endif
    ran = p.precision == GemmPrecision::fp32 ? GemmKernel::simt : GemmKernel::mma;
  } else {
    ran = want;
  }
  if (ran == GemmKernel::simt) {
    gemm_simt(p, stream);
  } else {
    gemm_mma(p, stream);
  }
  last.store(ran);
}

}  // namespace deepkern::cuda
