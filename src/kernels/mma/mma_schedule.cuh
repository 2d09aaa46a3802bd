// Tile shapes per head-dim bucket, the key-block range of a query block, and
// the varlen tile list: a prepass kernel writes the query blocks (a
// sequence's block of query rows) that exist, most key blocks first, into the caller's workspace; the
// persistent main kernel takes the (query block, head) tiles in that order, or head
// by head when all cost the same (tile_index; CTA c starts with tile c, then
// claims the next one through the list's header, or takes c + grid, ... when
// all tiles cost the same), so the longest start first and the short ones
// fill in. No host synchronisation, no block launched
// for absent work.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common/visible_keys.cuh"
#include "params.hpp"
#include "per_device.hpp"

namespace vflash::mma {

// Head dims are served by the smallest bucket holding max(round16(d), round16(d_v));
// the kernel is instantiated per (dtype, bucket) and skips, at run time, the
// 16-wide reduction steps and output tiles beyond the call's own dims.
inline constexpr int kBuckets[] = {32, 64, 80, 96, 128, 160, 192, 256};

constexpr int round16(int d) { return (d + 15) / 16 * 16; }

constexpr int bucket_for(int head_dim, int head_dim_v) {
  const int need = round16(head_dim) > round16(head_dim_v) ? round16(head_dim) : round16(head_dim_v);
  for (int b : kBuckets)
    if (b >= need) return b;
  return 0;
}

// A CTA of `warps` warps owns block_m = warps * 16 * m_atoms query rows (each
// warp 16 * m_atoms consecutive rows) and walks the keys block_n at a time,
// K and V in kv_stages buffers each. Shared memory: (block_m + 2 * kv_stages *
// block_n) * pitch * 2 bytes (pitch: the bucket rounded up to 64 elements,
// whole 128-byte lines per row). key_split: warps work in pairs, a pair on
// 16 * m_atoms rows (block_m halves), one warp on each half of a key block's
// keys in Q*K^T and on each half of the output columns in P*V, trading P
// through a block_m x block_n buffer (mma_fwd.cuh). lagged_max: the online
// softmax's reference maximum lags the row maximum by up to 2^8 in p, so
// that O is rarely rescaled (mma_fwd.cuh).
struct TileConfig {
  int warps;
  int m_atoms;
  int block_n;
  int kv_stages = 2;  // 1: K and V single-buffered, loaded in alternate phases (mma_fwd.cuh)
  bool key_split = false;
  bool lagged_max = true;
  constexpr int block_m() const { return warps / (key_split ? 2 : 1) * 16 * m_atoms; }
  constexpr int threads() const { return warps * 32; }
  constexpr size_t smem_bytes(int bucket) const {
    return size_t(block_m() + 2 * kv_stages * block_n) * ((bucket + 63) / 64 * 64) * 2 +
           (key_split ? size_t(block_m()) * block_n * 2 : 0);
  }
  constexpr bool operator==(const TileConfig&) const = default;
};

// A bucket's shapes, chosen from measurements (bench/mma_tiles.md). The
// standard shape stays within 96 KiB of shared memory, so that every claimed
// family (8.6/8.9/12.x allow 99 KiB per block) can run it; where measured
// faster, a call takes
//   short_rows: 64-row tiles when its sequences fill at most 64 rows of a
//               128-row tile (at most 64 query tokens, heads stacked included):
//               the standard tile would run half empty;
//   short_seqs: the same with 32-key blocks when the keys, too, fit one 64-key
//               block: less shared memory, so a third CTA fits on an SM;
//   two_ctas:   a shape that is faster where two of its CTAs fit on an SM,
//               judged by the per-block opt-in (9.0, 10.x, 8.0; the 99 KiB
//               devices would run one).
// A bucket without such an alternative returns its standard shape.
enum class TileShape { standard, short_rows, short_seqs, two_ctas };

constexpr TileConfig tile_config(int bucket, TileShape shape = TileShape::standard) {
  switch (bucket) {
    case 32:
    case 64:
      // 128-key blocks (Q then re-read from shared memory, 80 KiB; docs/tuning.md).
      if (shape == TileShape::two_ctas) return {4, 2, 128};
      [[fallthrough]];
    case 80:
    case 96:
    case 128:
      // d80's standard loop (Q in registers, 255 of them) runs slower on the
      // vision shapes with either form of the maximum's update in the code,
      // lagged or not: it keeps the plain one (docs/tuning.md).
      return shape == TileShape::short_rows   ? TileConfig{4, 1, 64}
             : shape == TileShape::short_seqs ? TileConfig{4, 1, 32}
             : bucket == 80                   ? TileConfig{4, 2, 64, 2, false, false}
                                              : TileConfig{4, 2, 64};
    // d160..d256: 64-key blocks with K and V single-buffered (72 / 96 KiB)
    // beat 8 warps x 32-key blocks, two buffers (96 KiB), where two CTAs fit;
    // with one CTA per SM (the 99 KiB devices) the 8 warps stay ahead at d192
    // but not at d256 (8 warps x 16-key blocks; docs/tuning.md).
    case 160:
    case 192: return shape == TileShape::two_ctas ? TileConfig{4, 1, 64, 1} : TileConfig{8, 1, 32};
    // d256: where two CTAs fit, warp pairs on 32 rows (key_split, 104 KiB):
    // each K and V fragment feeds two m atoms.
    default: return shape == TileShape::two_ctas ? TileConfig{4, 2, 64, 1, true} : TileConfig{4, 1, 64, 1};
  }
}

inline constexpr TileShape kTileShapes[] = {TileShape::standard, TileShape::short_rows, TileShape::short_seqs,
                                            TileShape::two_ctas};

// Rows/keys of sequence b.
struct SeqExtent {
  int64_t q_start, k_start;  // first row within the packed tensors (0 when dense)
  int seqlen_q, seqlen_k;
};

__device__ __forceinline__ SeqExtent seq_extent(const FwdParams& p, int b) {
  SeqExtent e;
  if (p.cu_seqlens_q != nullptr) {
    const int q0 = p.cu_seqlens_q[b], q1 = p.cu_seqlens_q[b + 1];
    const int k0 = p.cu_seqlens_k[b], k1 = p.cu_seqlens_k[b + 1];
    e = {q0, k0, q1 - q0, k1 - k0};
  } else {
    e = {0, 0, p.seqlen_q, p.seqlen_k};
  }
  return e;
}

// One query block of the tile list (block_m / stacked heads rows of one sequence), with what the main kernel
// needs of it (read by cp.async into shared memory: 32 bytes, 16-aligned).
struct alignas(16) QueryBlock {
  int batch, m0, q_start, k_start;
  int seqlen_q, seqlen_k, nb_first, nb_end;  // key blocks [nb_first, nb_end) of block_n
};

// Sequence b's query block at row m0.
__device__ __forceinline__ QueryBlock make_query_block(const FwdParams& p, int b, const SeqExtent& e, int m0, int block_m,
                                              int block_n) {
  const int m_last = (m0 + block_m < e.seqlen_q ? m0 + block_m : e.seqlen_q) - 1;
  const kernels::KeySpan r = kernels::visible_keys(m0, m_last, e.seqlen_q, e.seqlen_k, p.window_left, p.window_right);
  const int nb_first = r.begin / block_n;
  const int nb_end = r.empty() ? nb_first : (r.end - 1) / block_n + 1;
  return {b, m0, int(e.q_start), int(e.k_start), e.seqlen_q, e.seqlen_k, nb_first, nb_end};
}

// Dense calls without a mask need no tile list: all query blocks cost the same and
// block i is query block i % blocks of sequence i / blocks (no prepass launch;
// docs/tuning.md).
inline bool query_blocks_implied(const FwdParams& p) { return !p.is_varlen() && !p.has_window(); }

__device__ __forceinline__ QueryBlock implied_query_block(const FwdParams& p, int i, int block_m, int block_n) {
  const int blocks = kernels::blocks_of(p.seqlen_q, block_m);
  const int b = i / blocks;
  return make_query_block(p, b, seq_extent(p, b), i % blocks * block_m, block_m, block_n);
}

// Workspace: a 16-byte header then the query blocks, most key blocks first.
struct alignas(16) TileListHeader {
  int num_blocks;   // query blocks in the list
  int claimed;      // tiles past the first gridDim.x that CTAs have claimed (zeroed by the prepass)
  int round_robin;  // TilePolicy (set by the prepass)
  int head_major;
};

// The (query block, head group) of tile t. By default the group innermost: tiles
// keep the list's longest-first order and one sequence's heads run together
// (whole token rows). head_major (equal tiles of an unmasked call whose
// sequences span several query blocks): the query block innermost, one head after
// the other, so that the CTAs running at once read the keys and values of few
// heads and these stay in L2. With one query block per sequence the default
// order reads whole token rows instead, which is faster there (docs/tuning.md).
struct TileIndex {
  int query_block, head_group;
};

// Whether a call's tiles go head by head (the rule above).
__host__ __device__ __forceinline__ bool head_major_order(const FwdParams& p, bool equal_costs, int num_blocks) {
  return equal_costs && p.window_left < 0 && p.window_right < 0 && num_blocks > p.batch;
}

// How the CTAs take a call's tiles (kernels::TileClaim) and in which order:
// equal tiles (every query block visits as many key blocks) round-robin,
// which is faster for them (docs/tuning.md); uneven ones (causal, mixed
// lengths) through the list's counter as the CTAs ask, longest first (a
// fixed round-robin left the CTA with the longest tiles up to a longest tile
// behind). The one place the policy is chosen: by the launch for implied
// query blocks (equal_costs) and by the prepass, which sees the costs.
struct TilePolicy {
  bool round_robin;
  bool head_major;  // tile_index's order
};
__host__ __device__ __forceinline__ TilePolicy tile_policy(const FwdParams& p, bool equal_costs, int num_blocks) {
  return {equal_costs, head_major_order(p, equal_costs, num_blocks)};
}

__host__ __device__ __forceinline__ TileIndex tile_index(int t, int num_blocks, int head_groups, bool head_major) {
  if (head_major) return {t % num_blocks, t / num_blocks};
  return {t / head_groups, t % head_groups};
}

// Query heads of one key/value head stacked in a tile's rows (tile row r is
// token r / stacked, head r % stacked of the group): all of them when the
// call's sequences are shorter than a tile and they divide its rows, else 1.
// The tile list's query blocks then hold block_m / stacked tokens.
inline int stacked_heads(const FwdParams& p, int block_m) {
  const int group = p.heads_k > 0 ? p.heads_q / p.heads_k : 1;
  const int max_q = p.is_varlen() ? p.max_seqlen_q : p.seqlen_q;
  return group > 1 && max_q < block_m && block_m % group == 0 ? group : 1;
}
inline int tokens_per_tile(const FwdParams& p, int block_m) { return block_m / stacked_heads(p, block_m); }

// The shape a call takes, given the shared memory a block may opt in to on
// its device (cudaDevAttrMaxSharedMemoryPerBlockOptin).
inline TileShape tile_shape(const FwdParams& p, int bucket, size_t smem_per_block) {
  const TileConfig standard = tile_config(bucket);
  const TileConfig short_rows = tile_config(bucket, TileShape::short_rows);
  const int max_q = p.is_varlen() ? p.max_seqlen_q : p.seqlen_q;
  if (short_rows != standard && int64_t(max_q) * stacked_heads(p, standard.block_m()) <= short_rows.block_m()) {
    const int max_k = p.is_varlen() ? p.max_seqlen_k : p.seqlen_k;
    return max_k <= short_rows.block_n ? TileShape::short_seqs : TileShape::short_rows;
  }
  const TileConfig two_ctas = tile_config(bucket, TileShape::two_ctas);
  if (two_ctas != standard && 2 * two_ctas.smem_bytes(bucket) <= smem_per_block) return TileShape::two_ctas;
  return TileShape::standard;
}

inline int64_t max_query_blocks(const FwdParams& p, int block_m) {
  if (p.is_varlen()) return (p.total_q + block_m - 1) / block_m + p.batch;
  return int64_t(p.batch) * kernels::blocks_of(p.seqlen_q, block_m);
}

inline size_t tile_list_bytes(const FwdParams& p, int block_m) {
  return sizeof(TileListHeader) + sizeof(QueryBlock) * size_t(max_query_blocks(p, block_m));
}

// Workspace of a call of `bucket`, whichever of the bucket's shapes it takes.
inline size_t tile_list_bytes_any_shape(const FwdParams& p, int bucket) {
  size_t bytes = 0;
  for (TileShape shape : kTileShapes) {
    const size_t b = tile_list_bytes(p, tokens_per_tile(p, tile_config(bucket, shape).block_m()));
    bytes = b > bytes ? b : bytes;
  }
  return bytes;
}

// Shared memory a block may opt in to on `device` (queried once per device).
int smem_per_block_optin(int device, size_t* bytes);

// Launches the prepass on params.stream; it writes the query blocks to `blocks`.
int launch_tile_list(const FwdParams& p, int block_m, int block_n, TileListHeader* header,
                     QueryBlock* blocks);

// A __global__ function of this family (dispatch's loadability probe).
const void* tile_list_symbol();

}  // namespace vflash::mma
