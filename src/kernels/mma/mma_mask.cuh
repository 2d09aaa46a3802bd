// The mma kernel's key mask: the sequence end and, with row bounds (causal or
// window; kernels::visible_keys states the rule), each row's visible keys.
// The tile's bounds are set once per tile, relative to the row, so that a
// block's test is a few compares and each score's a compile-time offset.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "params.hpp"

namespace vflash::mma {

template <bool kRowBounds>
struct KeyMask {
  int sk, m0, m_last;  // keys of the sequence; first and last query token of the tile
  // Key j visible to row i when i + lo <= j <= i + hi; has_* false when the
  // bound excludes nothing (the kernel sets them per tile: built here, the
  // bounds moved ptxas' branches in the row-bounded loop).
  bool has_lo, has_hi;
  int lo, hi;

  __device__ __forceinline__ KeyMask(int sk_, int m0_, int m_last_, bool has_lo_, bool has_hi_, int lo_, int hi_)
      : sk(sk_), m0(m0_), m_last(m_last_), has_lo(has_lo_), has_hi(has_hi_), lo(lo_), hi(hi_) {}
  // Whether a block of kBlockN keys from n0 hides any key of the tile's rows.
  template <int kBlockN>
  __device__ __forceinline__ bool needed(int n0) const {
    return n0 + kBlockN > sk || (has_hi && n0 + kBlockN - 1 > m0 + hi) || (has_lo && n0 < int64_t(m_last) + lo);
  }

  // Scores of hidden keys become -inf. s: a warp's S fragments of kNTiles
  // 8-key tiles from key n0 + key_half * kBlockN / 2, rows from tile row
  // warp_row0 (tile row r is token r / stacked).
  template <int kBlockN, int kMAtoms, int kNTiles>
  __device__ __forceinline__ void apply(float (&s)[kMAtoms][kNTiles][4], int n0, int key_half, int warp_row0,
                                        int lane, int stacked) const {
    if constexpr (kRowBounds) {
      // Row i sees columns [i + lo, i + hi] of [0, sk): as offsets from
      // the thread's first column, so each entry tests its own
      // compile-time offset against two per-row bounds.
      const int col0 = n0 + key_half * (kBlockN / 2) + 2 * (lane & 3);
#pragma unroll
      for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int row = m0 + (warp_row0 + ma * 16 + (lane >> 2) + half * 8) / stacked;
          const int first = has_lo ? row + lo - col0 : -kBlockN;
          const int last = (has_hi ? min(row + hi, sk - 1) : sk - 1) - col0;
#pragma unroll
          for (int t = 0; t < kNTiles; ++t)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int off = t * 8 + e;
              if (off < first || off > last) s[ma][t][2 * half + e] = -INFINITY;
            }
        }
    } else {
#pragma unroll
      for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
        for (int t = 0; t < kNTiles; ++t)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (n0 + key_half * (kBlockN / 2) + t * 8 + 2 * (lane & 3) + (e & 1) >= sk) s[ma][t][e] = -INFINITY;
    }
  }
};

}  // namespace vflash::mma
