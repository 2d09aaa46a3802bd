// The mma kernel's arguments, tile shape and shared-memory layout: what every
// unit of the kernel (mma_loader, mma_mask, mma_softmax, mma_epilogue) shares.
#pragma once

#include <cuda_runtime.h>

#include <bit>
#include <cstdint>

#include "kernels/common/score_constants.hpp"
#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_schedule.cuh"
#include "params.hpp"

namespace vflash::mma {

struct FwdArgs {
  FwdParams p;
  TileListHeader* header;    // null when the query blocks are implied (query_blocks_implied)
  const QueryBlock* blocks;
  int implied_blocks;        // their count then
  kernels::ScoreConstants score;  // score_constants(p)
  int group;         // query heads per key/value head
  int stacked_heads;  // query heads stacked in a tile's rows (stacked_heads())
};

// Shared-memory layout of a [rows][kChunks] tile of 16-byte chunks (8
// elements): each row takes row_pitch(kChunks) chunks, whole 128-byte lines
// (the padding is never read), and chunk c of row r sits in line c / 8 of the
// row at slot (c ^ r) & 7. The 8 chunks of a 128-byte piece of a global row
// then fill one 128-byte shared line, which cp.async writes as one wavefront
// (spread over 8 lines, as in this kernel's first layout, every 16 bytes was
// its own wavefront and each L2 sector was fetched twice; docs/tuning.md),
// and ldmatrix (8 rows, one chunk) reads 8 distinct bank groups.
constexpr int row_pitch(int chunks) { return (chunks + 7) / 8 * 8; }

template <int kChunks>
__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
  return uint32_t(row * row_pitch(kChunks) + (chunk & ~7) + ((chunk ^ row) & 7)) << 4;
}

// Per-lane part of the ldmatrix addresses of one operand: lane reads row
// row0 + lane_row, chunk chunk0 + lane_chunk (row0 a multiple of 8, chunk0 even,
// lane_chunk 0 or 1), so (chunk ^ row) & 7 = (chunk0 & 6) ^ lane_chunk ^ (lane_row & 7)
// and the whole address is a per-lane base plus one of four per-lane swizzle
// terms plus a constant of the unrolled loops.
template <int kChunks>
struct LaneOffsets {
  uint32_t base;
  uint32_t swz[4];
  __device__ __forceinline__ LaneOffsets(uint32_t smem_base, int lane_row, int lane_chunk) {
    base = smem_base + uint32_t(lane_row * row_pitch(kChunks)) * 16;
    const int x = (lane_row & 7) ^ lane_chunk;
#pragma unroll
    for (int j = 0; j < 4; ++j) swz[j] = uint32_t((x ^ (2 * j)) << 4);
  }
  __device__ __forceinline__ uint32_t at(int row0, int chunk0) const {
    return base + uint32_t(row0 * row_pitch(kChunks) + (chunk0 & ~7)) * 16 + swz[(chunk0 & 7) >> 1];
  }
};

template <class Elem, int kBucket, int kWarps, int kMAtoms, int kBlockN, int kKVStages, bool kKeySplit>
struct FwdTile {
  using Element = Elem;
  static constexpr int kKeys = kBlockN;  // keys per block
  static constexpr int kStages = kKVStages;
  static constexpr int kWarpsPerCta = kWarps;
  static constexpr int kMAtomsPerWarp = kMAtoms;
  static constexpr int kSplit = kKeySplit ? 2 : 1;  // warps per group of rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = kWarps / kSplit * 16 * kMAtoms;
  static constexpr int kChunks = kBucket / 8;
  static constexpr int kPitch = row_pitch(kChunks);  // chunks per shared-memory row
  static constexpr uint32_t kRowBytes = kPitch * 16;
  static constexpr uint32_t kKVBytes = kBlockN * kRowBytes;  // one K or V buffer
  static constexpr int kSteps = kBucket / 16;          // reduction steps of Q*K^T
  static constexpr int kOutSteps = kSteps / kSplit;    // a warp's 16-column output steps of P*V
  static constexpr int kNTiles = kBlockN / 8 / kSplit;  // a warp's 8-key tiles of S
  // Key split: a warp pair's P buffer is one 128-byte line per row (64 keys), and
  // each warp's output columns start on a line of V (whole swizzle periods).
  static_assert(!kKeySplit || (kWarps % 2 == 0 && kBlockN == 64 && kSteps % 8 == 0));
  // Q fragments stay in registers when they and S are small; otherwise Q is
  // re-read per block (in registers beside d64's 128 S registers of 128-key
  // blocks it spills; docs/tuning.md).
  static constexpr bool kQInRegs = kMAtoms * kSteps * 4 <= 40 && kMAtoms * kNTiles * 4 <= 64;
  // Where a tile's last block hands Q's buffer to the next tile: right after
  // Q*K^T for the 8-warp shapes (softmax and P*V then run as one stretch),
  // after the softmax for the others (the early hand-off spills there;
  // docs/tuning.md).
  static constexpr bool kEarlyQLoad = kWarps == 8;
  static_assert(kBlockN % 16 == 0 && kBucket % 16 == 0 && (kKVStages == 1 || kKVStages == 2));
};

}  // namespace vflash::mma
