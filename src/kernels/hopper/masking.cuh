// Which keys a consumer thread's two rows may see, for the Hopper kernel.
// Scores arrive in the wgmma accumulator layout: entry i of a thread's
// kBlockN / 2 belongs to its row (i >> 1) & 1 (the second 8 rows below the
// first) and to key column (i / 4) * 8 + quad_col + (i & 1) of the block.
//   TileMask:     a tile of one sequence; causal / window bounds follow from
//                 the row and the bottom-right diagonal, and only blocks at an
//                 edge of the visible band pay for the per-entry test.
//   RowRangeMask: a packed tile of several short sequences; each row carries
//                 the key range of its own sequence (in the tile's key
//                 coordinates), tested on every block (packed tiles see few).
#pragma once

#include <cmath>
#include <cstdint>

#include "tile_scheduler.cuh"

namespace vflash::hopper {

// kRowBounds: the call has a causal mask or a window; without, only the
// sequence end masks (the unmasked kernel then carries none of the per-row
// code in its softmax). Bounds come from kernels::visible_keys, computed once
// per tile. The kernel applies the mask only to blocks that some row of the
// warpgroup sees in part (without row bounds: only the last, partial block).
template <int kBlockM, int kBlockN, bool kRowBounds>
struct TileMask {
  int quad_col;
  int begin[2], end[2];  // keys [begin, end) of the thread's two rows

  __device__ __forceinline__ TileMask(const Tile& tile, int tile_row, int quad_col_, const KernelArgs& a)
      : quad_col(quad_col_) {
    const int r0 = tile.m_block * kBlockM;
    const int wl = kRowBounds ? a.window_left : -1, wr = kRowBounds ? a.window_right : -1;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const kernels::KeySpan keys = kernels::visible_keys(r0 + tile_row + 8 * r, tile.q_len, tile.k_len, wl, wr);
      begin[r] = keys.begin;
      end[r] = keys.end;
    }
  }

  __device__ __forceinline__ void apply(float (&sc)[kBlockN / 2], int n, const KernelArgs&) const {
    const int key0 = n * kBlockN;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int key = key0 + (i / 4) * 8 + quad_col + (i & 1);
      const int r = kRowBounds ? (i >> 1) & 1 : 0;  // without row bounds: end[0] == end[1] = k_len
      if ((kRowBounds && key < begin[r]) || key >= end[r]) sc[i] = -INFINITY;
    }
  }
};

template <int kBlockM, int kBlockN>
struct RowRangeMask {
  int quad_col;
  int begin[2], end[2];  // keys [begin, end) of the thread's two rows, in the tile's key numbering

  // Every thread of the warp takes part (the sequences are looked up with
  // warp shuffles).
  __device__ __forceinline__ RowRangeMask(const Tile& tile, int tile_row, int quad_col_, const KernelArgs& a)
      : quad_col(quad_col_) {
    const int tokens[2] = {tile.q_start + tile_row / a.pack, tile.q_start + (tile_row + 8) / a.pack};
    int seq[2];
    find_sequences(tile.seq, a, tokens, seq);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      begin[r] = end[r] = 0;
      if (seq[r] < a.batch && tokens[r] - tile.q_start < tile.q_len) {
        const SeqBounds s = SeqBounds::of(seq[r], a);
        const kernels::KeySpan k = kernels::visible_keys(tokens[r] - s.q_start, s.q_len, s.k_len, a.window_left,
                                                         a.window_right);
        begin[r] = s.k_start - tile.k_start + k.begin;
        end[r] = s.k_start - tile.k_start + k.end;
      }
    }
  }

  __device__ __forceinline__ void apply(float (&sc)[kBlockN / 2], int n, const KernelArgs&) const {
    const int key0 = n * kBlockN;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int key = key0 + (i / 4) * 8 + quad_col + (i & 1);
      const int r = (i >> 1) & 1;
      if (key < begin[r] || key >= end[r]) sc[i] = -INFINITY;
    }
  }
};

}  // namespace vflash::hopper
