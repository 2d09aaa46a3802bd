// The Hopper kernel's call arguments and tile schedules: which query rows and
// heads a linear tile index names, and which key blocks that tile visits.
//   TileScheduler:       a tile is one query block of one (sequence, head);
//   PackedTileScheduler: sequences shorter than a tile are packed: a tile is a
//                        run of consecutive rows of the packed varlen tensor,
//                        whole or partial sequences, for `pack` stacked query
//                        heads of one KV head.
#pragma once

#include <cstdint>

#include "kernels/common/visible_keys.cuh"

namespace vflash::hopper {

// What the kernel needs besides the tensor maps of Q, K and V.
struct KernelArgs {
  void* o;
  float* lse;  // null: not written
  int64_t o_batch_stride, o_row_stride, o_head_stride;
  int64_t lse_batch_stride, lse_head_stride;
  const int32_t* cu_seqlens_q;  // null: dense layout
  const int32_t* cu_seqlens_k;
  int seqlen_q, seqlen_k;  // dense only
  int batch, heads_q, heads_per_kv, head_dim_v;
  int window_left, window_right;  // -1: unbounded; causal is window_right = 0
  float score_scale_log2;  // multiplies raw scores into log2 units (1 with softcap)
  float softcap_in;        // softmax_scale / softcap; 0 = no softcap
  float softcap_out;       // softcap * log2(e)
  int head_group;          // query heads whose tiles interleave (their K/V share the L2)
  // Packed tiles: query heads of one KV head stacked in a tile's rows (tile
  // row = token * pack + head within the stack); 1 otherwise.
  int pack;
  // Packed tiles: each consumer warpgroup computes only the key blocks its
  // own rows see (worth its lookups when its rows hold whole sequences).
  bool warpgroup_key_ranges;
  int* tile_counter;       // zeroed before the launch, hands out tiles past the first wave; null: round-robin
};

// One unit of work: kBlockM query rows of one (sequence, query head).
struct Tile {
  int b, h, m_block;
  int seq;  // packed tiles: the sequence of the first row
  int q_start, q_len;  // row offset of the sequence in the packed tensor (0 when dense), length
  int k_start, k_len;
  int n_begin, n_end;  // key blocks [n_begin, n_end) that some row of the tile can see
};

// Linear tile index -> tile. Every warp of a CTA decodes the index the
// producer published on its own. Varlen decoding walks the sequences with a
// cursor that only moves forward (a CTA's tile indices increase), 32
// sequences per step with a warp scan. Inside a sequence (or dense batch
// entry), heads go in groups of a.head_group whose K/V fit in L2 together;
// inside a group the query blocks go last first (under causal masking the
// last sees the most keys), cycling over the group's heads, so that with
// tiles handed out dynamically the longest go first.
template <int kBlockM, int kBlockN>
struct TileScheduler {
  int b = 0;
  int64_t first_tile = 0;  // tiles of sequences before b

  __device__ __forceinline__ bool decode(int64_t t, const KernelArgs& a, Tile& tile) {
    const int lane = threadIdx.x & 31;
    int64_t local;
    int m_blocks;
    if (a.cu_seqlens_q == nullptr) {
      m_blocks = kernels::blocks_of(a.seqlen_q, kBlockM);
      const int64_t per_batch = int64_t(m_blocks) * a.heads_q;
      if (per_batch == 0 || t >= per_batch * a.batch) return false;
      tile.b = int(t / per_batch);
      local = t - int64_t(tile.b) * per_batch;
      tile.q_start = 0;
      tile.q_len = a.seqlen_q;
      tile.k_start = 0;
      tile.k_len = a.seqlen_k;
    } else {
      for (;;) {
        if (b >= a.batch) return false;
        const int mine = b + lane;
        int64_t count = 0;
        if (mine < a.batch) {
          const int len = a.cu_seqlens_q[mine + 1] - a.cu_seqlens_q[mine];
          count = int64_t(kernels::blocks_of(len, kBlockM)) * a.heads_q;
        }
        int64_t inclusive = count;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const int64_t up = __shfl_up_sync(0xffffffffu, inclusive, off);
          if (lane >= off) inclusive += up;
        }
        const unsigned hit = __ballot_sync(0xffffffffu, mine < a.batch && first_tile + inclusive > t);
        if (hit != 0) {
          const int src = __ffs(hit) - 1;
          first_tile += __shfl_sync(0xffffffffu, inclusive - count, src);
          b += src;
          break;
        }
        first_tile += __shfl_sync(0xffffffffu, inclusive, 31);
        b += 32;
      }
      tile.b = b;
      tile.q_start = a.cu_seqlens_q[b];
      tile.q_len = a.cu_seqlens_q[b + 1] - tile.q_start;
      tile.k_start = a.cu_seqlens_k[b];
      tile.k_len = a.cu_seqlens_k[b + 1] - tile.k_start;
      m_blocks = kernels::blocks_of(tile.q_len, kBlockM);
      local = t - first_tile;
    }
    const int64_t group_tiles = int64_t(a.head_group) * m_blocks;
    const int group = int(local / group_tiles);
    const int within = int(local - group * group_tiles);
    const int group_heads = min(a.head_group, a.heads_q - group * a.head_group);
    tile.h = group * a.head_group + within % group_heads;
    tile.m_block = m_blocks - 1 - within / group_heads;

    const int r0 = tile.m_block * kBlockM;
    const int r1 = min(r0 + kBlockM, tile.q_len) - 1;
    const kernels::KeySpan keys =
        kernels::visible_keys(r0, r1, tile.q_len, tile.k_len, a.window_left, a.window_right);
    tile.n_begin = keys.begin / kBlockN;
    tile.n_end = keys.empty() ? tile.n_begin : (keys.end - 1) / kBlockN + 1;
    return true;
  }
};

// Rows and keys of one varlen sequence in the packed tensors.
struct KeyRange {
  int lo, hi;  // packed key rows [lo, hi]; lo > hi: none
};
struct SeqBounds {
  int q_start, q_len, k_start, k_len;
  __device__ __forceinline__ static SeqBounds of(int s, const KernelArgs& a) {
    const int q0 = a.cu_seqlens_q[s], k0 = a.cu_seqlens_k[s];
    return {q0, a.cu_seqlens_q[s + 1] - q0, k0, a.cu_seqlens_k[s + 1] - k0};
  }
  // Keys that row `row` of the sequence sees, as packed key rows.
  __device__ __forceinline__ KeyRange visible(int row, const KernelArgs& a) const {
    const kernels::KeySpan keys = kernels::visible_keys(row, q_len, k_len, a.window_left, a.window_right);
    return {k_start + keys.begin, k_start + keys.end - 1};
  }
};

// The first sequence s >= from whose rows end past `row` (row < the last
// sequence's end), 32 candidates per step of the warp.
__device__ __forceinline__ int seek_sequence(const KernelArgs& a, int from, int row) {
  const int lane = threadIdx.x & 31;
  for (;; from += 32) {
    const int s = from + lane;
    const bool past = s < a.batch && a.cu_seqlens_q[s + 1] > row;
    if (const unsigned hit = __ballot_sync(0xffffffffu, past)) return from + __ffs(hit) - 1;
  }
}

// Sequences of two rows per thread (packed row indices), each at or after
// sequence `from`; a row past the last sequence gets a.batch. The warp loads
// 32 sequence ends per step and every thread counts those at or before its
// rows.
__device__ __forceinline__ void find_sequences(int from, const KernelArgs& a, const int (&rows)[2], int (&seq)[2]) {
  const int lane = threadIdx.x & 31;
  seq[0] = seq[1] = -1;
  for (;; from += 32) {
    const int s = from + lane;
    const int end = s < a.batch ? a.cu_seqlens_q[s + 1] : INT32_MAX;
    int before[2] = {0, 0};
#pragma unroll 8
    for (int l = 0; l < 32; ++l) {
      const int e = __shfl_sync(0xffffffffu, end, l);
      before[0] += e <= rows[0];
      before[1] += e <= rows[1];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
      if (seq[r] < 0 && before[r] < 32) seq[r] = min(from + before[r], a.batch);
    if (__all_sync(0xffffffffu, seq[0] >= 0 && seq[1] >= 0)) return;
  }
}

// Packed tiles (varlen, every sequence shorter than a tile): tile t is rows
// [j * T, (j + 1) * T) of the packed query tensor, T = kBlockM / pack, for
// query heads [g * pack, (g + 1) * pack), with j = t / groups and g = t %
// groups: a CTA's tile indices increase, so its rows only move forward and a
// cursor finds their sequences. The tile's keys run from the first row's
// first visible key to the last row's last; every row masks its own sequence
// (RowRangeMask).
template <int kBlockM, int kBlockN>
struct PackedTileScheduler {
  int b = 0;  // sequence of the previous tile's first row

  __device__ __forceinline__ bool decode(int64_t t, const KernelArgs& a, Tile& tile) {
    const int end = a.cu_seqlens_q[a.batch];
    const int groups = a.heads_q / a.pack;
    const int tokens = kBlockM / a.pack;
    const int64_t j = t / groups;
    if (j * tokens >= end) return false;
    tile.b = 0;
    tile.m_block = 0;
    tile.h = int(t - j * groups) * a.pack;
    tile.q_start = int(j * tokens);
    tile.q_len = min(tokens, end - tile.q_start);
    b = seek_sequence(a, b, tile.q_start);
    tile.seq = b;
    const KeyRange keys = keys_of_rows(a, b, tile.q_start, tile.q_start + tile.q_len - 1);
    tile.k_start = keys.lo;
    tile.k_len = max(0, keys.hi - keys.lo + 1);
    tile.n_begin = 0;
    tile.n_end = kernels::blocks_of(tile.k_len, kBlockN);
    return true;
  }

  // The key blocks [n_begin, n_end) that consumer warpgroup wg's 64 rows of
  // the tile see: 64-token sequences in a 192-row tile need one block each
  // where the tile needs two.
  __device__ __forceinline__ static void warpgroup_blocks(const Tile& tile, int wg, const KernelArgs& a,
                                                          int& n_begin, int& n_end) {
    const int first = tile.q_start + wg * 64 / a.pack;
    const int last = min(tile.q_start + (wg * 64 + 63) / a.pack, tile.q_start + tile.q_len - 1);
    n_begin = n_end = 0;
    if (first > last) return;
    const KeyRange keys = keys_of_rows(a, seek_sequence(a, tile.seq, first), first, last);
    if (keys.hi < keys.lo) return;
    n_begin = (keys.lo - tile.k_start) / kBlockN;
    n_end = (keys.hi - tile.k_start) / kBlockN + 1;
  }

  // Keys that packed rows [first, last] see, from the first row's first
  // visible key to the last row's last (or the end of the keys of the
  // sequences before the last row's); `seq` holds the first row.
  __device__ __forceinline__ static KeyRange keys_of_rows(const KernelArgs& a, int seq, int first, int last) {
    const int last_seq = seek_sequence(a, seq, last);
    const SeqBounds s0 = SeqBounds::of(seq, a), s1 = SeqBounds::of(last_seq, a);
    const int lo = s0.visible(first - s0.q_start, a).lo;
    int hi = s1.visible(last - s1.q_start, a).hi;
    if (last_seq > seq) hi = max(hi, s1.k_start - 1);
    return {lo, hi};
  }
};

}  // namespace vflash::hopper
