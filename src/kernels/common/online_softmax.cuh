// The online softmax every kernel runs, in the exp2 domain: per query row a
// reference maximum and a running sum; per key block the row's maximum, the
// exponentials p = 2^(x * f - ref * f) (one FFMA and one ex2 per score,
// f = ScoreConstants::exp2_scale), the factor O's row is rescaled by, and
// after the last block the normaliser and the log-sum-exp.
//
// A thread holds kRows rows, kValues values of each; a row is spread over
// kRowLanes lanes (1, 2 or 4 consecutive lanes: the 4 threads of a quad in
// mma.sync and wgmma accumulators). Values are reached through an accessor,
// value(i) -> float& for i in [0, kValues), so that any fragment layout fits.
#pragma once

#include <cmath>

#include "kernels/common/constants.cuh"
#include "kernels/common/host_device.hpp"

namespace vflash::kernels {

// Lagged maximum: the reference follows the row maximum only when it falls
// behind by more than 2^kMaxLag in p (p then stays <= 2^kMaxLag, which fp32
// sums and 16-bit P carry as precisely as p <= 1), so that after a row's
// first block O's rescale is rarely due (docs/tuning.md).
inline constexpr float kMaxLag = 8.f;

// The row's next reference maximum given its maximum so far, mx (>= ref).
// A row that has seen no visible key keeps -inf (lagged: (-inf) - (-inf) is
// NaN, which compares false and keeps ref).
VFLASH_HD float next_reference(float ref, float mx, float f, bool lagged) {
  return !lagged || (mx - ref) * f > kMaxLag ? mx : ref;
}

// The exponent's offset for reference ref: ref * f, or 0 for a row without a
// visible key so far (its scores are all -inf: p = 0, not NaN).
VFLASH_HD float exp2_base(float ref, float f) { return ref == -INFINITY ? 0.f : ref * f; }

#if defined(__CUDACC__)
// 2^x; -inf gives +0.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// kChains: a row's maximum and sum run as this many independent chains over
// its values (value i feeds chain i % kChains), where a serial chain would be
// latency-bound.
// kSkipRescale: O is rescaled only when a reference of the warp moved
// (settle()); once the maxima settle, most blocks of long rows skip it. The
// sums always take their factor, exactly 1 for a reference that stays
// (exponentiate()), and need no register of their own.
template <int kRows, int kValues, int kRowLanes = 4, bool kLaggedMax = false, bool kSkipRescale = false,
          int kChains = 1>
struct OnlineSoftmax {
  static_assert(kValues % 2 == 0 && (kRowLanes == 1 || kRowLanes == 2 || kRowLanes == 4));
  float row_max[kRows];  // reference maximum, in score units (f takes them to log2)
  float row_sum[kRows];  // this thread's share of the row's sum of p

  __device__ __forceinline__ void reset() {
#pragma unroll
    for (int r = 0; r < kRows; ++r) row_max[r] = -INFINITY, row_sum[r] = 0.f;
  }

  // Row r's maximum so far: its reference and this block's values, over the row's lanes.
  template <class Value>
  __device__ __forceinline__ float block_max(int r, Value value) const {
    float mx;
    if constexpr (kChains == 1) {
      mx = row_max[r];
#pragma unroll
      for (int i = 0; i < kValues; i += 2) mx = fmaxf(mx, fmaxf(value(i), value(i + 1)));
    } else {
      float part[kChains];
#pragma unroll
      for (int c = 0; c < kChains; ++c) part[c] = -INFINITY;
#pragma unroll
      for (int i = 0; i < kValues; ++i) part[i % kChains] = fmaxf(part[i % kChains], value(i));
      mx = part[0];
#pragma unroll
      for (int c = 1; c < kChains; ++c) mx = fmaxf(mx, part[c]);
    }
#pragma unroll
    for (int lanes = 1; lanes < kRowLanes; lanes *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, lanes));
    return kChains == 1 ? mx : fmaxf(row_max[r], mx);
  }

  // Given row r's maximum so far, mx: the new reference, the values replaced
  // by their p, and p added to the row's sum.
  // Returns the factor O's row must be multiplied by; moved is set when the
  // reference changed.
  template <class Value>
  __device__ __forceinline__ float exponentiate(int r, float mx, float f, Value value, bool& moved) {
    const float ref = next_reference(row_max[r], mx, f, kLaggedMax);
    const float base = exp2_base(ref, f);
    // Exactly 1 for a reference that stays: the sums take it every block while
    // O's rescale may be skipped, and 2^(ref * f - base) is 1 only to within
    // the rounding of the product, the same each block.
    const float corr = ref == row_max[r] ? 1.f : exp2_approx(row_max[r] * f - base);
    moved |= ref != row_max[r];
    row_max[r] = ref;
    float sum = 0.f;
    if constexpr (kChains == 1) {
#pragma unroll
      for (int i = 0; i < kValues; i += 2) {
        value(i) = exp2_approx(fmaf(value(i), f, -base));
        value(i + 1) = exp2_approx(fmaf(value(i + 1), f, -base));
        sum += value(i) + value(i + 1);
      }
    } else {
      float part[kChains];
#pragma unroll
      for (int c = 0; c < kChains; ++c) part[c] = 0.f;
#pragma unroll
      for (int i = 0; i < kValues; ++i) {
        value(i) = exp2_approx(fmaf(value(i), f, -base));
        part[i % kChains] += value(i);
      }
      sum = part[0];
#pragma unroll
      for (int c = 1; c < kChains; ++c) sum += part[c];
    }
    row_sum[r] = row_sum[r] * corr + sum;
    return corr;
  }

  // After exponentiate() of every row: O's rescale, rescale_o() with the
  // rows' factors corr (kSkipRescale: only when a reference of the warp moved). moved: the
  // thread's rows moved a reference; the whole warp must call this.
  template <class RescaleO>
  __device__ __forceinline__ void settle(bool moved, const float (&)[kRows], RescaleO rescale_o) {
    if constexpr (kSkipRescale) {
      if (__any_sync(0xffffffffu, moved)) rescale_o();
    } else {
      rescale_o();
    }
  }

  // After the last block: row r's sum over its lanes.
  __device__ __forceinline__ float total(int r) const {
    float sum = row_sum[r];
#pragma unroll
    for (int lanes = 1; lanes < kRowLanes; lanes *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, lanes);
    return sum;
  }
  // O's normaliser for a row of total `sum`: 0 for a row that saw no key.
  __device__ __forceinline__ static float normaliser(float sum) { return sum > 0.f ? 1.f / sum : 0.f; }
  // The row's natural-log LSE: -inf for a row that saw no key.
  __device__ __forceinline__ float lse(int r, float sum, float f) const {
    const float lse2 = sum > 0.f ? row_max[r] * f + __log2f(sum) : -INFINITY;
    return lse2 * kLn2;
  }
};
#endif

}  // namespace vflash::kernels
