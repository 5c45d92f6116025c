// The LSTM's pointwise passes of one step (lstm.cpp runs them per thread block inside its teams),
// as one table per ISA: cell_kernels.cpp is compiled once per ISA and vectorizes them for it.
#pragma once
#include <cstdint>

#include "core/isa_dispatch.h"

namespace deepkern::cpu {

// Both kernels cover `rows` batch rows and `units` hidden units (one thread's block), vectorized
// along the units; gate blocks are i, f, g, o. They only compute.
template <class T>
struct CellKernels {
  // The cell update: gate pre-activations `pre` in (gate blocks `pre_block` apart, rows 4 * pre_block
  // apart); the new cell and hidden states out (rows H apart; c_prev null means zero). With `act`
  // (rows 4H apart, blocks H apart) the activations and y (rows H apart) are written too (a cached
  // forward); act null: inference, y is not written.
  void (*forward)(int64_t rows, int64_t units, const T* pre, int64_t pre_block, T* act, int64_t H, const T* c_prev,
                  T* c, T* h, T* y);
  // One step backward from the cached activations `gates` (rows 4H apart) and cell states c and
  // c_prev (rows H apart; c_prev null means zero): the gradient of h_t is dh + grad_y (grad_y may be
  // null); dc comes in as the gradient of c_t from later steps and leaves as the gradient of
  // c_{t-1}; dgates (rows 4H apart) receives the gradient of the gate pre-activations.
  void (*backward)(int64_t rows, int64_t H, int64_t units, const T* gates, const T* c, const T* c_prev, const T* grad_y,
                   const T* dh, T* dc, T* dgates);
};

DEEPKERN_DECLARE_ISA_TABLES(KernelsByType<CellKernels>, cell_kernels)

}  // namespace deepkern::cpu
