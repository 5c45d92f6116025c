// The optimizer kernels compiled for AVX2 + FMA (-mavx2 -mfma); rules.h holds the code.
#define DEEPKERN_OPTIM_ISA avx2
#include "cpu/optim/rules.h"
