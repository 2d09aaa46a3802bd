// The mma kernel's side of the online softmax (kernels/common/online_softmax.cuh):
// the mma.sync accumulator layout of S and O, P as the A fragments of P*V,
// and with key split the warp pair's exchange of row maxima and P.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/online_softmax.cuh"
#include "kernels/common/score_constants.hpp"
#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_tile.cuh"

namespace vflash::mma {

// A warp's softmax state: row r = 2 * ma + half is row lane / 4 + 8 * half of
// m atom ma; its 2 * kNTiles values per thread (s[ma][t][2 * half + e]) are
// spread over the 4 threads of a quad. O's rescale is skipped while no
// reference of the warp moves.
template <int kMAtoms, int kNTiles, bool kLaggedMax>
using WarpSoftmax = kernels::OnlineSoftmax<2 * kMAtoms, 2 * kNTiles, 4, kLaggedMax, true>;

// Value i of row (ma, half) of S.
template <int kMAtoms, int kNTiles>
__device__ __forceinline__ auto row_values(float (&s)[kMAtoms][kNTiles][4], int ma, int half) {
  return [&s, ma, half](int i) -> float& { return s[ma][i >> 1][2 * half + (i & 1)]; };
}

// Scores in place of S: softcap_out * tanh(s * softcap_in) (ScoreConstants).
template <int kMAtoms, int kNTiles>
__device__ __forceinline__ void cap_scores(float (&s)[kMAtoms][kNTiles][4], const kernels::ScoreConstants& c) {
#pragma unroll
  for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
    for (int t = 0; t < kNTiles; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[ma][t][e] = c.capped(s[ma][t][e]);
}

// P of m atom ma (exponentials, fp32) as the A fragments of P*V, one per
// 16-key step.
template <class Elem, int kMAtoms, int kNTiles>
__device__ __forceinline__ void p_fragments(uint32_t (&pf)[kMAtoms][kNTiles / 2][4],
                                            const float (&s)[kMAtoms][kNTiles][4], int ma) {
#pragma unroll
  for (int kk = 0; kk < kNTiles / 2; ++kk) {
    pf[ma][kk][0] = to_elem_x2<Elem>(s[ma][2 * kk][0], s[ma][2 * kk][1]);
    pf[ma][kk][1] = to_elem_x2<Elem>(s[ma][2 * kk][2], s[ma][2 * kk][3]);
    pf[ma][kk][2] = to_elem_x2<Elem>(s[ma][2 * kk + 1][0], s[ma][2 * kk + 1][1]);
    pf[ma][kk][3] = to_elem_x2<Elem>(s[ma][2 * kk + 1][2], s[ma][2 * kk + 1][3]);
  }
}

// O *= corr per row (accumulator entry e of m atom ma belongs to row 2 * ma + e / 2).
template <int kMAtoms, int kOutTiles>
__device__ __forceinline__ void rescale_o(float (&o)[kMAtoms][kOutTiles][4], const float (&corr)[2 * kMAtoms]) {
#pragma unroll
  for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
    for (int t = 0; t < kOutTiles; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[ma][t][e] *= corr[2 * ma + (e >> 1)];
}

// One key block's softmax step for a warp: S (masked, capped) becomes P in
// pf[0], the softmax state advances and O is rescaled. With key split the
// warp pair first agrees on the row maxima through partner_rows, and each
// warp writes its P to the pair's buffer (p_store, p_slot) for its partner.
template <class T, bool kLaggedMax, int kNTiles, int kPartnerRows>
__device__ __forceinline__ void softmax_step(WarpSoftmax<T::kMAtomsPerWarp, kNTiles, kLaggedMax>& sm,
                                             float (&s)[T::kMAtomsPerWarp][kNTiles][4],
                                             uint32_t (&pf)[T::kSplit][T::kMAtomsPerWarp][kNTiles / 2][4],
                                             float (&o)[T::kMAtomsPerWarp][2 * T::kOutSteps][4],
                                             float (&partner_rows)[kPartnerRows][16 * T::kMAtomsPerWarp], float f,
                                             int warp, int lane, uint32_t p_store, int p_slot) {
  constexpr int kMAtoms = T::kMAtomsPerWarp;
  bool max_moved = false;
  float corr[2 * kMAtoms];
  float mxs[kMAtoms][2];
#pragma unroll
  for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float mx = sm.block_max(2 * ma + half, row_values(s, ma, half));
      if constexpr (T::kSplit == 2) {
        mxs[ma][half] = mx;
        partner_rows[warp][ma * 16 + half * 8 + (lane >> 2)] = mx;
      } else {
        corr[2 * ma + half] = sm.exponentiate(2 * ma + half, mx, f, row_values(s, ma, half), max_moved);
      }
    }
    if constexpr (T::kSplit == 1) p_fragments<typename T::Element>(pf[0], s, ma);
  }
  if constexpr (T::kSplit == 2) {
    // The warp pair's common maxima; then each warp's P into the pair's
    // buffer, for the partner's P*V after the warp's own keys. (Both
    // buffers are rewritten only after the next block's top barrier.)
    pair_barrier<T::kWarpsPerCta / 2>(warp / 2);
#pragma unroll
    for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const float mx = fmaxf(mxs[ma][half], partner_rows[warp ^ 1][ma * 16 + half * 8 + (lane >> 2)]);
        corr[2 * ma + half] = sm.exponentiate(2 * ma + half, mx, f, row_values(s, ma, half), max_moved);
      }
      p_fragments<typename T::Element>(pf[0], s, ma);
#pragma unroll
      for (int kk = 0; kk < kNTiles / 2; ++kk)
#pragma unroll
        for (int j = 0; j < 4; ++j)  // j: rows +8 (j & 1), keys +8 (j >> 1) of 16-key step kk
          st_shared_b32(p_store + (ma * 16 + (j & 1) * 8) * 128 + (((2 * kk + (j >> 1)) ^ p_slot) << 4),
                        pf[0][ma][kk][j]);
    }
  }
  sm.settle(max_moved, corr, [&] { rescale_o(o, corr); });
}

}  // namespace vflash::mma
