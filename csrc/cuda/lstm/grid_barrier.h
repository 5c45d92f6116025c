// A barrier across all blocks of a grid whose blocks are all resident at once (the caller checks
// that with cudaOccupancyMaxActiveBlocksPerMultiprocessor before launching), written without
// cooperative groups: a counter in global memory that every block adds one to per barrier. The
// emulation (tests/cuda_emulation/include/cuda/lstm/grid_barrier.h) has a host version with the
// same contract; keep this header to this one function.
#pragma once
#include <cuda_runtime.h>

namespace deepkern::cuda {

// Barrier number `round` (1, 2, ...) of the grid: returns once every block has called it `round`
// times, with every global write made before the call by any block visible to the calling block.
// `counter` is zero before the first round, read and written only by this function, and
// blockDim-wide: every thread of every block calls it.
__device__ __forceinline__ void grid_barrier(unsigned int* counter, unsigned int round) {
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    const unsigned int target = round * gridDim.x * gridDim.y * gridDim.z;
    __threadfence();  // this block's writes before its arrival
    atomicAdd(counter, 1u);
    while (*static_cast<volatile unsigned int*>(counter) < target) {}
    __threadfence();  // the others' writes before this block's next reads
  }
  __syncthreads();
}

}  // namespace deepkern::cuda
