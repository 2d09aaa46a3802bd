// The mma kernel's two products per key block, on warp tensor cores
// (ldmatrix + mma.sync m16n8k16, fp32 accumulation): S = Q * K^T over the
// bucket's head dim, and O += P * V over the block's keys.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_tile.cuh"

namespace vflash::mma {

// Q fragments: in registers across a tile's blocks (T::kQInRegs), else a
// placeholder and Q is re-read from shared memory per block.
template <class T>
using QFragments = uint32_t[T::kQInRegs ? T::kMAtomsPerWarp : 1][T::kQInRegs ? T::kSteps : 1][4];

// Accumulators (O before a tile's first block, S before a block's Q*K^T) = 0.
template <int kMAtoms, int kTiles>
__device__ __forceinline__ void zero(float (&acc)[kMAtoms][kTiles][4]) {
#pragma unroll
  for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
    for (int t = 0; t < kTiles; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[ma][t][e] = 0.f;
}

// S of the warp's rows (from warp_row0) and keys (k_lane, stage k_stage).
// first_block: the tile's first block, which reads Q into qf.
template <class T, int kNTiles>
__device__ __forceinline__ void qk_scores(float (&s)[T::kMAtomsPerWarp][kNTiles][4], QFragments<T>& qf,
                                          const LaneOffsets<T::kChunks>& q_lane,
                                          const LaneOffsets<T::kChunks>& k_lane, uint32_t k_stage, int warp_row0,
                                          bool first_block) {
  constexpr int kMAtoms = T::kMAtomsPerWarp, kSteps = T::kSteps;
  if constexpr (T::kQInRegs) {
    if (first_block) {
#pragma unroll
      for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
        for (int ks = 0; ks < kSteps; ++ks) ldmatrix_x4(qf[ma][ks], q_lane.at(warp_row0 + ma * 16, 2 * ks));
    }
  }
  zero(s);

#pragma unroll
  for (int ks = 0; ks < kSteps; ++ks) {
    uint32_t a[kMAtoms][4];
#pragma unroll
    for (int ma = 0; ma < kMAtoms; ++ma) {
      if constexpr (T::kQInRegs) {
#pragma unroll
        for (int e = 0; e < 4; ++e) a[ma][e] = qf[ma][ks][e];
      } else {
        ldmatrix_x4(a[ma], q_lane.at(warp_row0 + ma * 16, 2 * ks));
      }
    }
#pragma unroll
    for (int np = 0; np < kNTiles / 2; ++np) {
      uint32_t kb[4];
      ldmatrix_x4(kb, k_lane.at(np * 16, 2 * ks) + k_stage);
#pragma unroll
      for (int ma = 0; ma < kMAtoms; ++ma) {
        mma_16816<typename T::Element>(s[ma][2 * np], a[ma], kb[0], kb[1]);
        mma_16816<typename T::Element>(s[ma][2 * np + 1], a[ma], kb[2], kb[3]);
      }
    }
  }
}

// O += P * V for the warp's own keys (P in pf[0]) and, with key split, then
// its partner's (P read from the warp pair's buffer at p_lane into pf[1]);
// v_own / v_other: the byte offsets of those keys' V rows in stage v_stage.
template <class T, int kNTiles>
__device__ __forceinline__ void pv_accumulate(float (&o)[T::kMAtomsPerWarp][2 * T::kOutSteps][4],
                                              uint32_t (&pf)[T::kSplit][T::kMAtomsPerWarp][kNTiles / 2][4],
                                              const LaneOffsets<8>& p_lane, const LaneOffsets<T::kChunks>& v_lane,
                                              uint32_t v_stage, uint32_t v_own, uint32_t v_other, int warp) {
  constexpr int kMAtoms = T::kMAtomsPerWarp;
#pragma unroll
  for (int keys = 0; keys < T::kSplit; ++keys) {  // own, then the partner's
    if (keys == 1) {
      pair_barrier<T::kWarpsPerCta / 2>(warp / 2);
#pragma unroll
      for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
        for (int kk = 0; kk < kNTiles / 2; ++kk) ldmatrix_x4(pf[keys][ma][kk], p_lane.at(ma * 16, 2 * kk));
    }
    const uint32_t v_rows = v_stage + (keys == 0 ? v_own : v_other);
#pragma unroll
    for (int kk = 0; kk < kNTiles / 2; ++kk) {
#pragma unroll
      for (int dp = 0; dp < T::kOutSteps; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, v_lane.at(kk * 16, 2 * dp) + v_rows);
#pragma unroll
        for (int ma = 0; ma < kMAtoms; ++ma) {
          mma_16816<typename T::Element>(o[ma][2 * dp], pf[keys][ma][kk], vb[0], vb[1]);
          mma_16816<typename T::Element>(o[ma][2 * dp + 1], pf[keys][ma][kk], vb[2], vb[3]);
        }
      }
    }
  }
}

}  // namespace vflash::mma
