// The optimizer kernels compiled for the x86-64 baseline (SSE2, no FMA); rules.h holds the code.
#define DEEPKERN_OPTIM_ISA generic
#include "cpu/optim/rules.h"
