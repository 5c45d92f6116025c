// Host version of csrc/cuda/lstm/grid_barrier.h for the emulation. The emulated GPU runs a grid's
// blocks one after another, so no block can wait for another: a grid barrier is only possible in a
// grid of one block, where it is __syncthreads. A larger grid is an error naming the barrier.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>

namespace deepkern::cuda {

inline void grid_barrier(unsigned int* counter, unsigned int round) {
  static_cast<void>(counter);
  static_cast<void>(round);
  if (gridDim.x * gridDim.y * gridDim.z != 1)
    throw std::logic_error(
        "grid_barrier: the emulation runs blocks one after another; a grid barrier needs a grid "
        "of one block");
  __syncthreads();
}

}  // namespace deepkern::cuda
