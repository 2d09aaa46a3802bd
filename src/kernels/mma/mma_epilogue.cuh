// The mma kernel's epilogue: O / rowsum in 16-bit, and the LSE (natural log);
// rows without a visible key give 0 and -inf.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/mma/mma_loader.cuh"
#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_softmax.cuh"
#include "kernels/mma/mma_tile.cuh"

namespace vflash::mma {

// A warp's rows of the tile `fin` from its O accumulators (the output columns
// from key_half * 16 * kOutSteps with key split) and its softmax state
// (WarpSoftmax, mma_softmax.cuh).
// partner_rows: the warp pairs' exchange buffer (key split only).
template <class T, class Softmax, int kPartnerRows>
__device__ __forceinline__ void write_output(const TileView<typename T::Element, T::kBlockM>& fin,
                                             float (&o)[T::kMAtomsPerWarp][2 * T::kOutSteps][4], Softmax& sm,
                                             float (&partner_rows)[kPartnerRows][16 * T::kMAtomsPerWarp],
                                             const FwdArgs& args, int warp, int lane, int key_half, int warp_row0,
                                             int out_tiles) {
  using Elem = typename T::Element;
  constexpr int kMAtoms = T::kMAtomsPerWarp;
  const FwdParams& p = args.p;
  Elem* o_base = fin.o(p) + key_half * T::kOutSteps * 16;
  if constexpr (T::kSplit == 2) {
    // Each warp summed its half of the keys (the partner read this warp's
    // last maxima before the block's second pair barrier).
#pragma unroll
    for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        sm.row_sum[2 * ma + half] = sm.total(2 * ma + half);
        partner_rows[warp][ma * 16 + half * 8 + (lane >> 2)] = sm.row_sum[2 * ma + half];
      }
    pair_barrier<T::kWarpsPerCta / 2>(warp / 2);
#pragma unroll
    for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        sm.row_sum[2 * ma + half] += partner_rows[warp ^ 1][ma * 16 + half * 8 + (lane >> 2)];
  }
#pragma unroll
  for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float sum = T::kSplit == 2 ? sm.row_sum[2 * ma + half] : sm.total(2 * ma + half);
      const float inv = sm.normaliser(sum);
      const int r = warp_row0 + ma * 16 + (lane >> 2) + half * 8;
      if (r < fin.rows_valid) {
        const int token = r / args.stacked_heads, stacked = r % args.stacked_heads;  // of the tile's stacked heads
        Elem* orow = o_base + token * p.o_row_stride + stacked * p.o_head_stride + 2 * (lane & 3);
#pragma unroll
        for (int t = 0; t < 2 * T::kOutSteps; ++t)
          if (key_half * 2 * T::kOutSteps + t < out_tiles)
            *reinterpret_cast<uint32_t*>(orow + t * 8) =
                to_elem_x2<Elem>(o[ma][t][2 * half] * inv, o[ma][t][2 * half + 1] * inv);
        if (p.lse != nullptr && (lane & 3) == 0 && key_half == 0) {
          p.lse[fin.g.batch * p.lse_batch_stride + (fin.head + stacked) * p.lse_head_stride + fin.g.q_start +
                fin.g.m0 + token] = sm.lse(2 * ma + half, sum, args.score.exp2_scale);
        }
      }
    }
  }
}

}  // namespace vflash::mma
