// Online softmax of one consumer thread's two rows in the Hopper kernel:
// softcap, masking (masking.cuh) and the running max / sum over key blocks,
// then the final normalisation and log-sum-exp. Scores arrive in the wgmma
// accumulator layout: entry i of a thread's kBlockN / 2 belongs to its row
// (i >> 1) & 1.
#pragma once

#include <cstdint>

#include "ptx.cuh"
#include "tile_scheduler.cuh"

namespace vflash::hopper {

// kChains: the row max and sum of a block run as this many independent
// chains per row (a serial chain over kBlockN / 4 entries is latency-bound
// where the softmax sits on the warpgroup's critical path).
template <int kBlockN, int kChains>
struct OnlineSoftmax {
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.f, 0.f};  // this thread's partial sums; reduced over the quad in finish()

  // Which chain accumulator entry i feeds (entries i and i ^ 2 belong to the
  // thread's two rows).
  __device__ __forceinline__ static constexpr int chain(int i) {
    return kChains == 1 ? 0 : (i & 1) | ((i >> 1) & 2);
  }

  // Softcap (kSoftcap), mask (kMasked; masking.cuh), and the update for key
  // block n. Leaves exp2 of the scores in `sc` and the factor by which O must
  // be rescaled for each of the thread's two rows in `rescale`.
  template <bool kSoftcap, bool kMasked, class Mask>
  __device__ __forceinline__ void update(float (&sc)[kBlockN / 2], int n, const KernelArgs& a, const Mask& mask,
                                         float (&rescale)[2]) {
    const float sl2 = a.score_scale_log2;
    if constexpr (kSoftcap) {
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i) sc[i] = a.softcap_out * tanhf(sc[i] * a.softcap_in);
    }
    if constexpr (kMasked) mask.apply(sc, n, a);
    float part[2][kChains];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < kChains; ++j) part[r][j] = -INFINITY;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) part[(i >> 1) & 1][chain(i)] = fmaxf(part[(i >> 1) & 1][chain(i)], sc[i]);
    float blk_max[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      blk_max[r] = part[r][0];
#pragma unroll
      for (int j = 1; j < kChains; ++j) blk_max[r] = fmaxf(blk_max[r], part[r][j]);
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      blk_max[r] = fmaxf(blk_max[r], __shfl_xor_sync(0xffffffffu, blk_max[r], 1));
      blk_max[r] = fmaxf(blk_max[r], __shfl_xor_sync(0xffffffffu, blk_max[r], 2));
      const float new_max = fmaxf(row_max[r], blk_max[r]);
      // A row that has seen no visible key yet keeps max -inf; exponents
      // are then taken against 0 so they stay 0 rather than NaN.
      base[r] = new_max == -INFINITY ? 0.f : new_max * sl2;
      rescale[r] = fast_exp2(row_max[r] * sl2 - base[r]);
      row_max[r] = new_max;
      row_sum[r] *= rescale[r];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < kChains; ++j) part[r][j] = 0.f;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int r = (i >> 1) & 1;
      sc[i] = fast_exp2(fmaf(sc[i], sl2, -base[r]));
      part[r][chain(i)] += sc[i];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < kChains; ++j) row_sum[r] += part[r][j];
  }

  // After the last block: the natural-log LSE of each row (-inf for a row
  // that saw no key) and the factor that normalises its O (0 for such rows).
  __device__ __forceinline__ void finish(const KernelArgs& a, float (&lse)[2], float (&normalise)[2]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
      row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
      const bool seen = row_sum[r] > 0.f;
      lse[r] = seen ? (row_max[r] * a.score_scale_log2 + __log2f(row_sum[r])) * 0.6931471805599453f : -INFINITY;
      normalise[r] = seen ? 1.f / row_sum[r] : 0.f;
    }
  }
};

}  // namespace vflash::hopper
