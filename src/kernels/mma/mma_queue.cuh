// The mma kernel's tile queue: tile t is (query block, head group)
// tile_index(t) (mma_schedule.cuh), taken as the call's TilePolicy says.
#pragma once

#include <cuda_runtime.h>

#include "kernels/common/tile_claim.cuh"
#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_schedule.cuh"
#include "kernels/mma/mma_tile.cuh"

namespace vflash::mma {

// The scheduler of the mma kernel (kernels/common/tile_claim.cuh states the
// interface): initial() and next() from the TileClaim of the call's
// TilePolicy, decode() by tile_index. The CTA's i-th tile uses slot i % 3 of
// `slots` (shared memory): thread 0 fetches the next tile's query block while
// the CTA works on this one, and the epilogue re-reads this one's (rather
// than holding it in registers across the key loop: a per-block spill reload
// on d128), possibly after thread 0 has started the next tile.
// next_tile[slot]: the tile after the slot's.
template <bool kRowBounds, int kBlockM, int kBlockN>
struct TileQueue {
  QueryBlock (&slots)[3];
  int (&next_tile)[3];
  bool implied;  // query blocks implied (dense, no mask: never with row bounds) or from the list
  int num_blocks, head_groups, num_tiles;  // num_tiles fits int32: validation bounds (total_q + batch) * heads_q
  bool head_major;                         // never with row bounds
  bool round_robin;
  const FwdArgs& args;

  __device__ __forceinline__ TileQueue(QueryBlock (&s)[3], int (&n)[3], const FwdArgs& a)
      : slots(s), next_tile(n), args(a) {
    const FwdParams& p = args.p;
    head_groups = p.heads_q / args.stacked_heads;
    implied = !kRowBounds && args.header == nullptr;
    num_blocks = implied ? args.implied_blocks : args.header->num_blocks, num_tiles = num_blocks * head_groups;
    const TilePolicy policy = implied ? tile_policy(p, true, num_blocks)
                                      : TilePolicy{args.header->round_robin != 0, args.header->head_major != 0};
    head_major = !kRowBounds && policy.head_major;
    round_robin = policy.round_robin;
  }
  // Built where it is used (a counter pointer held across the key loop costs
  // registers at d128's cap). Implied query blocks (no header) are round-robin.
  __device__ __forceinline__ kernels::TileClaim<int> claim() const { return {round_robin, &args.header->claimed}; }
  __device__ __forceinline__ int initial() const { return claim().initial(); }
  __device__ __forceinline__ int next(int t) const { return claim().next(t); }
  __device__ __forceinline__ TileIndex decode(int t) const {
    return tile_index(t, num_blocks, head_groups, head_major);
  }
  __device__ __forceinline__ int group_of(int t) const { return decode(t).head_group; }
  static constexpr int following(int slot) { return slot == 2 ? 0 : slot + 1; }

  // Thread 0 puts a tile's query block into a slot (complete after the next
  // wait and barrier): derived, or copied from the list.
  __device__ __forceinline__ void fetch(int tile, int slot) const {
    if (threadIdx.x != 0) return;
    const int block = decode(tile).query_block;
    if (implied) {
      slots[slot] = implied_query_block(args.p, block, kBlockM / args.stacked_heads, kBlockN);
    } else {
      const char* src = reinterpret_cast<const char*>(args.blocks + block);
      cp_async_16(smem_addr(&slots[slot]), src, true);
      cp_async_16(smem_addr(&slots[slot]) + 16, src + 16, true);
    }
  }
  // Thread 0, as the tile in `slot` starts, claims the tile after it and
  // fetches its query block; the other threads read it only after the next
  // barrier.
  __device__ __forceinline__ void claim_next(int tile, int slot) const {
    if (threadIdx.x != 0) return;
    const int claimed = next(tile);
    next_tile[slot] = claimed;
    if (claimed < num_tiles) fetch(claimed, following(slot));
  }
  __device__ __forceinline__ bool has_next(int slot) const { return next_tile[slot] < num_tiles; }
};

}  // namespace vflash::mma
