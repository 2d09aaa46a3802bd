// The mma kernel's online softmax, in the exp2 domain: per row a reference
// maximum and a running sum; per key block the exponentials
// p = 2^(s * f - max * f) (one FFMA and one ex2 per score, f = exp2_scale),
// P as the A fragments of P*V, and O's rescale when a reference moved.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/mma/mma_ptx.cuh"

namespace vflash::mma {

// Row (ma, half) of a thread: rows lane/4 and lane/4 + 8 of each m atom; a
// row's 2 * kNTiles values per thread, spread over the 4 threads of a quad.
// kLaggedMax: the reference follows the maximum only when it falls behind by
// more than 2^kMaxLag in p (p then stays <= 256, which fp32 sums and 16-bit P
// carry as precisely as p <= 1), so that after a row's first block O's
// rescale (a multiply per accumulator) is rarely due.
template <int kMAtoms, int kNTiles, bool kLaggedMax>
struct OnlineSoftmax {
  static constexpr float kMaxLag = 8.f;
  float row_max[kMAtoms][2];  // raw-score reference maximum
  float row_sum[kMAtoms][2];  // per-thread partial sums

  // A new tile's rows of m atom ma: nothing seen yet.
  __device__ __forceinline__ void reset(int ma) {
    row_max[ma][0] = row_max[ma][1] = -INFINITY;
    row_sum[ma][0] = row_sum[ma][1] = 0.f;
  }

  // The row's maximum so far (this block's scores and the reference), over the quad.
  __device__ __forceinline__ float block_max(const float (&s)[kMAtoms][kNTiles][4], int ma, int half) const {
    float mx = row_max[ma][half];
#pragma unroll
    for (int t = 0; t < kNTiles; ++t) mx = fmaxf(mx, fmaxf(s[ma][t][2 * half], s[ma][t][2 * half + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    return fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  }

  // Given the row's maximum mx: its reference, O's correction factor corr,
  // the exponentials (in place of the scores) and the sum. moved: set when
  // the reference changed.
  __device__ __forceinline__ void exponentiate(float (&s)[kMAtoms][kNTiles][4], int ma, int half, float mx, float f,
                                               float& corr, bool& moved) {
    // (-inf) - (-inf) is NaN: a row with no visible key so far keeps -inf.
    const float ref = !kLaggedMax || (mx - row_max[ma][half]) * f > kMaxLag ? mx : row_max[ma][half];
    const float base = ref == -INFINITY ? 0.f : ref * f;  // all masked so far: p = 0
    corr = exp2_approx(row_max[ma][half] * f - base);
    moved |= ref != row_max[ma][half];
    row_max[ma][half] = ref;
    float sum = 0.f;
#pragma unroll
    for (int t = 0; t < kNTiles; ++t) {
      s[ma][t][2 * half] = exp2_approx(fmaf(s[ma][t][2 * half], f, -base));
      s[ma][t][2 * half + 1] = exp2_approx(fmaf(s[ma][t][2 * half + 1], f, -base));
      sum += s[ma][t][2 * half] + s[ma][t][2 * half + 1];
    }
    row_sum[ma][half] = row_sum[ma][half] * corr + sum;
  }
};

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

// O *= corr per row, skipped when no reference in the warp moved (once the
// maxima settle: most blocks of long rows).
template <int kMAtoms, int kOutTiles>
__device__ __forceinline__ void rescale_o(float (&o)[kMAtoms][kOutTiles][4], const float (&corr)[kMAtoms][2],
                                          bool moved) {
  if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
    for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
      for (int t = 0; t < kOutTiles; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[ma][t][e] *= corr[ma][e >> 1];
  }
}

}  // namespace vflash::mma
