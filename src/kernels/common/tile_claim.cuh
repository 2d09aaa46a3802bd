// The interface of a persistent kernel's tile scheduler, and the tile claim
// both kernel families share. A scheduler provides
//   Index initial() const      the CTA's first tile index;
//   Index next(Index t) const  the index after t (one thread claims it and
//                              hands it to the others);
//   decode(Index t, ...)       what tile t is (rows, heads, key blocks).
// TileClaim is initial() and next(): CTA c starts with tile c, then takes
// c + grid, c + 2 grid, ... (round-robin: tiles of equal cost), or the next
// index of a counter the grid shares (grid + counter++: a CTA that drew short
// tiles takes more; the counter is zeroed before the launch).
#pragma once

#include <cuda_runtime.h>

namespace vflash::kernels {

template <class Index>
struct TileClaim {
  bool round_robin;
  int* counter;  // read only when !round_robin

  __device__ __forceinline__ Index initial() const { return Index(blockIdx.x); }
  __device__ __forceinline__ Index next(Index t) const {
    return round_robin ? t + Index(gridDim.x) : Index(gridDim.x) + atomicAdd(counter, 1);
  }
};

}  // namespace vflash::kernels
