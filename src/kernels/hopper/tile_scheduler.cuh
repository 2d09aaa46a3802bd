// The Hopper kernel's call arguments and tile schedule: which (sequence,
// heads, query block) a linear tile index names, and which key blocks that
// tile visits.
#pragma once

#include <cstdint>

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
  int* tile_counter;       // zeroed before the launch, hands out tiles past the first wave; null: round-robin
};

// One unit of work: kBlockM query rows of one (sequence, query head).
struct Tile {
  int b, h, m_block;
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
      m_blocks = (a.seqlen_q + kBlockM - 1) / kBlockM;
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
          count = int64_t((len + kBlockM - 1) / kBlockM) * a.heads_q;
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
      m_blocks = (tile.q_len + kBlockM - 1) / kBlockM;
      local = t - first_tile;
    }
    const int64_t group_tiles = int64_t(a.head_group) * m_blocks;
    const int group = int(local / group_tiles);
    const int within = int(local - group * group_tiles);
    const int group_heads = min(a.head_group, a.heads_q - group * a.head_group);
    tile.h = group * a.head_group + within % group_heads;
    tile.m_block = m_blocks - 1 - within / group_heads;

    // Keys visible to rows [r0, r1] (bottom-right aligned masks).
    const int r0 = tile.m_block * kBlockM;
    const int r1 = min(r0 + kBlockM, tile.q_len) - 1;
    const int diag = tile.k_len - tile.q_len;
    int key_hi = tile.k_len - 1;
    if (a.window_right >= 0) key_hi = min(key_hi, r1 + diag + a.window_right);
    int key_lo = 0;
    if (a.window_left >= 0) key_lo = max(0, r0 + diag - a.window_left);
    tile.n_begin = key_lo / kBlockN;
    tile.n_end = key_hi < key_lo ? tile.n_begin : key_hi / kBlockN + 1;
    return true;
  }
};

}  // namespace vflash::hopper
