// Compile-time shape of one Hopper kernel instantiation: tile sizes, the
// shared-memory plan and the launch entry points. The list of instantiations
// is generated (src/kernels/hopper/instances.py -> instances.inc).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "params.hpp"

namespace vflash::hopper {

inline constexpr int kSmemLimit = 227 * 1024;  // dynamic shared memory per block on sm_90

template <int kQkDim, int kVDim, int kBlockN_, int kStages_, int kConsumerWarpgroups_, int kQkBox, DType kDType_>
struct Config {
  static constexpr int kD = kQkDim;  // QK^T reduction dim as computed (72 runs as 80)
  static constexpr int kDV = kVDim;  // PV output dim as computed (72 runs as 96)
  static constexpr int kConsumerWarpgroups = kConsumerWarpgroups_;
  static constexpr int kBlockM = 64 * kConsumerWarpgroups;  // query rows per tile: 64 per consumer warpgroup
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static constexpr DType kDType = kDType_;

  // Shared-memory tiles are stored as column chunks, each a row-major
  // [rows][chunk] block swizzled the way TMA writes it and wgmma reads it.
  // Q and K (the QK^T operands, K-major) use kQkBox-column chunks (chosen per
  // instance, instances.py), stored kQkWidth wide: columns past the head dim
  // are TMA's zero fill (never read from memory) and the reduction stops at
  // kD. V is the MN-major B operand of PV with N = kDV, and O is staged like
  // it, so their chunks divide kDV: 80 takes 32 B chunks of 16 columns.
  static constexpr int kQkChunk = kQkBox;
  static constexpr int kQkWidth = (kD + kQkChunk - 1) / kQkChunk * kQkChunk;
  static constexpr int kVChunk = kDV % 64 == 0 ? 64 : kDV % 32 == 0 ? 32 : 16;
  static constexpr int kQkSwizzleBytes = kQkChunk * 2;
  static constexpr int kVSwizzleBytes = kVChunk * 2;
  static_assert(kQkChunk == 16 || kQkChunk == 32 || kQkChunk == 64, "Q/K boxes are 32, 64 or 128 bytes wide");
  static_assert(kD % 16 == 0 && kDV % kVChunk == 0, "head dims must be whole wgmma steps and chunks");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256, "key tile must be whole wgmma k-steps");

  static constexpr int kQBytes = kBlockM * kQkWidth * 2;
  static constexpr int kKBytes = kBlockN * kQkWidth * 2;
  static constexpr int kVBytes = kBlockN * kDV * 2;
  static constexpr int kOBytes = kBlockM * kDV * 2;
  static constexpr int kAlign = 1024;  // a 128 B swizzle pattern repeats every 1 KB
  static constexpr int kBarrierBytes = 256;
  static constexpr int kRingBytes = kStages * (kKBytes + kVBytes);
  // The O staging buffer gets its own space when it fits (so the next tile's
  // Q can load during the epilogue); otherwise it reuses the Q tile's space.
  static constexpr bool kOReusesQ = kAlign + kQBytes + kOBytes + kRingBytes + kBarrierBytes > kSmemLimit;
  static constexpr int kQOffset = 0;
  static constexpr int kOOffset = kOReusesQ ? 0 : kQBytes;
  static constexpr int kKOffset = kQBytes + (kOReusesQ ? 0 : kOBytes);
  static constexpr int kVOffset = kKOffset + kStages * kKBytes;
  static constexpr int kBarrierOffset = kVOffset + kStages * kVBytes;
  static constexpr int kSmemBytes = kAlign + kBarrierOffset + kBarrierBytes;
  static_assert(kSmemBytes <= kSmemLimit, "tile plan exceeds shared memory");
  static_assert(kQBytes % kAlign == 0 && kKBytes % kAlign == 0 && kVBytes % kAlign == 0 && kOBytes % kAlign == 0,
                "tiles must keep 1 KB alignment");
  static_assert(kOBytes <= kQBytes || !kOReusesQ, "O staged in Q's space must fit there");

  static constexpr int kProducerThreads = 128;  // one warpgroup; one warp issues TMA
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kThreads = kProducerThreads + kConsumerThreads;
};

// Packed tiles (PackedTileScheduler): a varlen call whose sequences are all
// shorter than a tile, with few keys each, packs several sequences into each
// tile, for up to stacked_heads() query heads of one KV head. Each row masks
// the keys of its own sequence, so the keys of a tile's other sequences cost
// compute: kPackedMaxSeqlenK bounds that waste.
inline constexpr int kPackedMaxSeqlenK = 256;
inline bool packs_sequences(const FwdParams& p, int block_m) {
  return p.is_varlen() && p.max_seqlen_q < block_m && p.max_seqlen_k <= kPackedMaxSeqlenK;
}
// Packed tiles load and compute keys in blocks of kPackedBlockN: each
// warpgroup's rows then see about one block, and a tile's loads overshoot its
// keys by less (instances.py generates the wgmma for this N). The freed
// shared memory deepens the K/V rings, up to 4 slots.
inline constexpr int kPackedBlockN = 64;
template <class Cfg>
using PackedConfig = Config<Cfg::kD, Cfg::kDV, kPackedBlockN,
                            std::min(4, Cfg::kStages * Cfg::kBlockN / kPackedBlockN), Cfg::kConsumerWarpgroups,
                            Cfg::kQkChunk, Cfg::kDType>;

// Query heads of one KV head stacked in a packed tile's rows: all of them
// when they divide the tile's rows, else 1.
inline constexpr int stacked_heads(int heads_per_kv, int block_m) {
  return block_m % heads_per_kv == 0 ? heads_per_kv : 1;
}

// Defined in fwd_launch.cuh, instantiated once per generated inst_*.cu.
template <class Cfg>
int launch_fwd(const FwdParams& params);
template <class Cfg>
const void* kernel_symbol();

}  // namespace vflash::hopper
