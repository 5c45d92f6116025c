// The optimizer kernels compiled for AVX-512 (-mavx512f ... -mfma); rules.h holds the code.
#define DEEPKERN_OPTIM_ISA avx512
#include "cpu/optim/rules.h"
