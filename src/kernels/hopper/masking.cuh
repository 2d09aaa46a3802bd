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
// code in its softmax).
template <int kBlockM, int kBlockN, bool kRowBounds>
struct TileMask {
  int row0;  // sequence row of the thread's first accumulator row; +8 for the second
  int quad_col;
  int r0;    // first row of the tile
  int diag;  // k_len - q_len: bottom-right alignment
  int k_len;

  __device__ __forceinline__ TileMask(const Tile& tile, int tile_row, int quad_col_)
      : row0(tile.m_block * kBlockM + tile_row),
        quad_col(quad_col_),
        r0(tile.m_block * kBlockM),
        diag(tile.k_len - tile.q_len),
        k_len(tile.k_len) {}

  __device__ __forceinline__ void apply(float (&sc)[kBlockN / 2], int n, const KernelArgs& a) const {
    const int key0 = n * kBlockN;
    const bool edge = key0 + kBlockN > k_len ||
                      (kRowBounds && a.window_right >= 0 && key0 + kBlockN - 1 > r0 + diag + a.window_right) ||
                      (kRowBounds && a.window_left >= 0 && key0 < r0 + kBlockM - 1 + diag - a.window_left);
    if (!edge) return;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int key = key0 + (i / 4) * 8 + quad_col + (i & 1);
      const int row = row0 + ((i & 2) ? 8 : 0);
      bool visible = key < k_len;
      if (kRowBounds && a.window_right >= 0) visible = visible && key <= row + diag + a.window_right;
      if (kRowBounds && a.window_left >= 0) visible = visible && key >= row + diag - a.window_left;
      if (!visible) sc[i] = -INFINITY;
    }
  }
};

template <int kBlockM, int kBlockN>
struct RowRangeMask {
  int quad_col;
  int lo[2], hi[2];  // visible keys [lo, hi] of the thread's two rows; lo > hi: none

  // Every thread of the warp takes part (the sequences are looked up with
  // warp shuffles).
  __device__ __forceinline__ RowRangeMask(const Tile& tile, int tile_row, int quad_col_, const KernelArgs& a)
      : quad_col(quad_col_) {
    const int tokens[2] = {tile.q_start + tile_row / a.pack, tile.q_start + (tile_row + 8) / a.pack};
    int seq[2];
    find_sequences(tile.seq, a, tokens, seq);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      lo[r] = 0;
      hi[r] = -1;
      if (seq[r] < a.batch && tokens[r] - tile.q_start < tile.q_len) {
        const SeqBounds s = SeqBounds::of(seq[r], a);
        const KeyRange k = s.visible(tokens[r] - s.q_start, a);
        lo[r] = k.lo - tile.k_start;
        hi[r] = k.hi - tile.k_start;
      }
    }
  }

  __device__ __forceinline__ void apply(float (&sc)[kBlockN / 2], int n, const KernelArgs&) const {
    const int key0 = n * kBlockN;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int key = key0 + (i / 4) * 8 + quad_col + (i & 1);
      const int r = (i >> 1) & 1;
      if (key < lo[r] || key > hi[r]) sc[i] = -INFINITY;
    }
  }
};

}  // namespace vflash::hopper
