// The mma kernel's tile queue: tile t is (query block, head group)
// tile_index(t) (mma_schedule.cuh); a persistent CTA starts with tile
// blockIdx.x and then takes the next one round-robin or, when tiles cost
// differently, claims it through the tile list's header.
#pragma once

#include <cuda_runtime.h>

#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_schedule.cuh"
#include "kernels/mma/mma_tile.cuh"

namespace vflash::mma {

// The CTA's i-th tile uses slot i % 3 of `slots` (shared memory): thread 0
// fetches the next tile's query block while the CTA works on this one, and
// the epilogue re-reads this one's (rather than holding it in registers
// across the key loop: a per-block spill reload on d128), possibly after
// thread 0 has started the next tile. next[slot]: the tile after the slot's.
template <bool kRowBounds, int kBlockM, int kBlockN>
struct TileQueue {
  QueryBlock (&slots)[3];
  int (&next)[3];
  bool implied;  // query blocks implied (dense, no mask: never with row bounds) or from the list
  int num_blocks, head_groups, num_tiles;  // num_tiles fits int32: validation bounds (total_q + batch) * heads_q
  bool equal_costs, head_major;

  __device__ __forceinline__ TileQueue(QueryBlock (&s)[3], int (&n)[3], const FwdArgs& args)
      : slots(s), next(n) {
    const FwdParams& p = args.p;
    head_groups = p.heads_q / args.stacked_heads;
    implied = !kRowBounds && args.header == nullptr;
    num_blocks = implied ? args.implied_blocks : args.header->num_blocks, num_tiles = num_blocks * head_groups;
    equal_costs = implied || args.header->equal_costs != 0;
    // Never head-major with row bounds.
    head_major = !kRowBounds && (implied ? head_major_order(p, true, num_blocks) : args.header->head_major != 0);
  }
  __device__ __forceinline__ int block_of(int t) const {
    return tile_index(t, num_blocks, head_groups, head_major).query_block;
  }
  __device__ __forceinline__ int group_of(int t) const {
    return tile_index(t, num_blocks, head_groups, head_major).head_group;
  }
  static constexpr int following(int slot) { return slot == 2 ? 0 : slot + 1; }

  // Thread 0 puts a tile's query block into a slot (complete after the next
  // wait and barrier): derived, or copied from the list.
  __device__ __forceinline__ void fetch(const FwdArgs& args, int tile, int slot) const {
    if (threadIdx.x != 0) return;
    if (implied) {
      slots[slot] = implied_query_block(args.p, block_of(tile), kBlockM / args.stacked_heads, kBlockN);
    } else {
      const char* src = reinterpret_cast<const char*>(args.blocks + block_of(tile));
      cp_async_16(smem_addr(&slots[slot]), src, true);
      cp_async_16(smem_addr(&slots[slot]) + 16, src + 16, true);
    }
  }
  // Thread 0, as the tile in `slot` starts, picks the tile after it. Uneven
  // tiles (causal, mixed lengths) go to the CTAs as they ask: the next tile of
  // the longest-first list (a fixed round-robin left the CTA with the longest
  // tiles up to a longest tile behind). Equal tiles go round-robin, which is
  // faster for them (docs/tuning.md). The other threads read it only after
  // the next barrier.
  __device__ __forceinline__ void claim_next(const FwdArgs& args, int tile, int slot) const {
    if (threadIdx.x != 0) return;
    const int claimed = equal_costs ? tile + int(gridDim.x) : int(gridDim.x) + atomicAdd(&args.header->claimed, 1);
    next[slot] = claimed;
    if (claimed < num_tiles) fetch(args, claimed, following(slot));
  }
  __device__ __forceinline__ bool has_next(int slot) const { return next[slot] < num_tiles; }
};

}  // namespace vflash::mma
