// The mma forward kernel: a persistent CTA walks (query block, head) tiles of
// the tile list and, per tile, streams key/value blocks through shared memory
// (cp.async; two stages: K and V of the next block, or of the next tile's
// first block and then its Q, load while this block computes; or one stage,
// K and V loading in alternate phases of the block), multiplies on
// warp tensor cores (ldmatrix + mma.sync m16n8k16, fp32 accumulation) and keeps
// an fp32 online softmax in the exp2 domain (softmax_scale * log2(e) folded
// into one FFMA per score before ex2).
//
// With key_split (TileConfig), two warps share a group of rows: each computes
// Q*K^T for half of a block's keys, the warp pair agrees on the row maxima and
// trades P through shared memory (named barrier per warp pair), and each computes
// P*V for half of the output columns, so each K and V fragment feeds two m
// atoms where one warp could not hold the accumulators of both (d256).
//
// Template: dtype, head-dim bucket, tile shape and whether the call has per-row
// key bounds (causal or window); every other feature (softcap, GQA, LSE,
// varlen/dense, the call's own d and d_v, the window sizes) is a run-time
// value tested by branches uniform across the CTA.
#pragma once

#include <cuda_runtime.h>

#include <bit>
#include <cmath>

#include "kernels/common/constants.cuh"
#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_schedule.cuh"
#include "params.hpp"

namespace vflash::mma {

struct FwdArgs {
  FwdParams p;
  TileListHeader* header;    // null when the query blocks are implied (query_blocks_implied)
  const QueryBlock* blocks;
  int implied_blocks;        // their count then
  float exp2_scale;  // score -> log2 units: softmax_scale*log2e (log2e after the softcap)
  float softcap;     // 0: none; else scores become softcap * tanh(score * softcap_in)
  float softcap_in;  // softmax_scale / softcap
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
  static constexpr int kSplit = kKeySplit ? 2 : 1;  // warps per group of rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = kWarps / kSplit * 16 * kMAtoms;
  static constexpr int kChunks = kBucket / 8;
  static constexpr int kPitch = row_pitch(kChunks);  // chunks per shared-memory row
  static constexpr uint32_t kRowBytes = kPitch * 16;
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

  // Issue cp.async of a [kRows][kChunks] tile whose row 0 is at g; rows >=
  // rows_valid and chunks >= chunks_data read as zero (the bucket's padding).
  // kStacked: tile row r is token r / stacked, head r % stacked past g (Q of
  // stacked query heads); otherwise row r is at g + r * row_stride.
  // A pass copies kGroupsPerPass blocks of 8 rows, thread t the chunk
  // t % kPitch of row t / kPitch of such a block (threads past them, and
  // those on the pitch padding, idle): the 8 lanes of each phase of a warp's
  // 128-bit copy read 128 contiguous bytes of a row into one shared line.
  // Each pass keeps the thread's chunk and row & 7, hence its swizzled slot,
  // so a pass of a full tile costs one 64-bit address add and the cp.async
  // (the copies sit in the loop over key blocks, where every issue slot counts).
  template <int kRows, bool kStacked = false>
  static __device__ __forceinline__ void load(uint32_t s_base, const Elem* g, int64_t row_stride,
                                              int rows_valid, int chunks_data, int stacked = 1,
                                              int64_t head_stride = 0) {
    constexpr int kBlockCopies = 8 * kPitch;  // one block of 8 rows
    // With fewer threads than a block's copies (d160..d256 on 4 warps) a pass
    // copies the largest power of two of rows its threads cover; a pass's slot
    // is then the first pass's with the pass's row offset XORed in (row0 <
    // kRowsPerPass).
    constexpr int kRowsPerPass =
        kBlockCopies <= kThreads ? 8 * (kThreads / kBlockCopies) : std::bit_floor(unsigned(kThreads / kPitch));
    constexpr int kPasses = (kRows + kRowsPerPass - 1) / kRowsPerPass;
    static_assert(kRows % 8 == 0 && (kRowsPerPass % 8 == 0 || 8 % kRowsPerPass == 0));
    const int tid = threadIdx.x;
    const int row0 = tid / kPitch, chunk = tid % kPitch;  // row0 = 8 * block + row in block
    if (tid >= kRowsPerPass * kPitch || chunk >= kChunks) return;
    const bool chunk_valid = chunk < chunks_data;
    constexpr uint32_t kPassBytes = kRowsPerPass * kRowBytes;
    const uint32_t first_dst = s_base + swizzle<kChunks>(row0, chunk);
    const auto dst = [&](int pass) {
      return (first_dst + pass * kPassBytes) ^ uint32_t((pass * kRowsPerPass & 7) << 4);
    };
    if constexpr (kStacked) {
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        const int row = row0 + i * kRowsPerPass;
        if (kRows % kRowsPerPass == 0 || row < kRows) {
          const bool valid = chunk_valid && row < rows_valid;
          const Elem* at = g + (row / stacked) * row_stride + (row % stacked) * head_stride + chunk * 8;
          cp_async_16(dst(i), valid ? at : g, valid);
        }
      }
    } else {
      // Padding chunks read nothing; their address stays inside the row.
      const Elem* src = g + row0 * row_stride + (chunk_valid ? chunk * 8 : 0);
      const int64_t pass_stride = kRowsPerPass * row_stride;
      if (rows_valid >= kRows) {  // every row present: no per-row test
#pragma unroll
        for (int i = 0; i < kPasses; ++i)
          if (kRows % kRowsPerPass == 0 || row0 + i * kRowsPerPass < kRows)
            cp_async_16(dst(i), src + i * pass_stride, chunk_valid);
      } else {
#pragma unroll
        for (int i = 0; i < kPasses; ++i) {
          const int row = row0 + i * kRowsPerPass;
          if (kRows % kRowsPerPass == 0 || row < kRows) {
            const bool valid = chunk_valid && row < rows_valid;
            cp_async_16(dst(i), valid ? src + i * pass_stride : g, valid);
          }
        }
      }
    }
  }
};

// Where one tile's tensors are: its query block (from shared memory) and head.
template <class Elem, int kBlockM>
struct TileView {
  QueryBlock g;
  int head, head_k;  // the first of the tile's a.stacked_heads query heads; their key/value head
  int tokens_valid;  // of the query block in its sequence
  int rows_valid;    // tile rows: tokens_valid * a.stacked_heads

  // The tile of (query block, head group): query heads [group * stacked, (group + 1) * stacked).
  __device__ __forceinline__ TileView(const QueryBlock& qb, int head_group, const FwdArgs& a)
      : g(qb) {
    head = head_group * a.stacked_heads;
    head_k = head / a.group;
    tokens_valid = min(kBlockM / a.stacked_heads, g.seqlen_q - g.m0);
    rows_valid = tokens_valid * a.stacked_heads;
  }
  __device__ __forceinline__ const Elem* q(const FwdParams& p) const {
    return static_cast<const Elem*>(p.q) + g.batch * p.q_batch_stride +
           (int64_t(g.q_start) + g.m0) * p.q_row_stride + head * p.q_head_stride;
  }
  __device__ __forceinline__ const Elem* k(const FwdParams& p) const {
    return static_cast<const Elem*>(p.k) + g.batch * p.k_batch_stride +
           int64_t(g.k_start) * p.k_row_stride + head_k * p.k_head_stride;
  }
  __device__ __forceinline__ const Elem* v(const FwdParams& p) const {
    return static_cast<const Elem*>(p.v) + g.batch * p.v_batch_stride +
           int64_t(g.k_start) * p.v_row_stride + head_k * p.v_head_stride;
  }
  __device__ __forceinline__ Elem* o(const FwdParams& p) const {
    return static_cast<Elem*>(p.o) + g.batch * p.o_batch_stride +
           (int64_t(g.q_start) + g.m0) * p.o_row_stride + head * p.o_head_stride;
  }
};

// kRowBounds: the call has a causal mask or a window (per-row key bounds);
// without, the only mask is the sequence end, and the kernel keeps none of
// the per-row code (its own instantiation, so that the row mask's form never
// changes how ptxas allocates and schedules the unmasked loop: a cheaper row
// mask slowed the vision shapes, which never execute it, when both shared one
// kernel; docs/tuning.md).
template <class Elem, int kBucket, int kWarps, int kMAtoms, int kBlockN, int kKVStages, bool kKeySplit,
          bool kLaggedMax, bool kRowBounds>
__global__ void __launch_bounds__(kWarps * 32)
    fwd_kernel(const __grid_constant__ FwdArgs args) {
  using T = FwdTile<Elem, kBucket, kWarps, kMAtoms, kBlockN, kKVStages, kKeySplit>;
  using View = TileView<Elem, T::kBlockM>;
  constexpr int kBlockM = T::kBlockM, kChunks = T::kChunks, kSteps = T::kSteps,
                kNTiles = T::kNTiles;
  constexpr uint32_t kKVBytes = kBlockN * T::kRowBytes;  // one K or V buffer

  // Q, then the stages of K and V. Two stages: block i computes from stage
  // i & 1 while block i + 1 (or the next tile's first block) loads into the
  // other. One stage (TileConfig::kv_stages): V of block i loads during its
  // Q*K^T, K of the next block (and at a tile's end the next Q) during its
  // softmax and P*V; two barriers per block, in half the shared memory.
  extern __shared__ __align__(128) uint4 smem[];
  // The CTA's i-th tile uses slot i % 3: thread 0 fetches the next tile's
  // query block while the CTA works on this one, and the epilogue re-reads this
  // one's (rather than holding it in registers across the key loop: a
  // per-block spill reload on d128), possibly after thread 0 has started the
  // next tile.
  __shared__ QueryBlock block_slot[3];
  __shared__ int next_slot[3];  // the tile after this one
  // Key split: each warp's row maxima (then its row sums) for its warp-pair partner.
  __shared__ float partner_rows[kKeySplit ? kWarps : 1][16 * kMAtoms];
  const uint32_t sQ = smem_addr(smem);
  const uint32_t sK = sQ + kBlockM * T::kRowBytes;
  const uint32_t sV = sK + kKVStages * kKVBytes;

  const FwdParams& p = args.p;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // Key split: the warp's half of each key block and of the output columns.
  const int key_half = kKeySplit ? warp & 1 : 0;
  const int warp_row0 = warp / T::kSplit * 16 * kMAtoms;  // first row of this warp within the tile

  // The bucket's reduction steps and output tiles all run (zeros beyond the
  // call's d and d_v): branch-free inner loops; only d_v/8 output tiles are stored.
  const int q_data_chunks = p.head_dim / 8, v_data_chunks = p.head_dim_v / 8;
  const int out_tiles = p.head_dim_v / 8;
  const LaneOffsets<kChunks> q_lane(sQ, lane & 15, lane >> 4);
  const LaneOffsets<kChunks> k_lane(sK + key_half * (kBlockN / 2) * T::kRowBytes, (lane & 7) + ((lane >> 4) << 3),
                                    (lane >> 3) & 1);
  const LaneOffsets<kChunks> v_lane(sV + key_half * T::kOutSteps * 32, lane & 15, lane >> 4);
  // V rows of the warp's own keys (its P in registers) and of its partner's
  // (their P from the warp pair's buffer, sP: row r of the warp pair's rows at line r,
  // chunk c of 8 keys at slot (c ^ r) & 7).
  const uint32_t v_own = key_half * (kBlockN / 2) * T::kRowBytes, v_other = (kBlockN / 2) * T::kRowBytes - v_own;
  const uint32_t sP = sV + kKVStages * kKVBytes + warp / 2 * (16 * kMAtoms) * 128;
  const LaneOffsets<8> p_lane(sP, lane & 15, (lane >> 4) ^ ((key_half ^ 1) * 4));
  const int p_slot = (lane >> 2) ^ (key_half * 4);  // own chunk t of a row sits at slot t ^ p_slot
  const uint32_t p_store = sP + (lane >> 2) * 128 + (lane & 3) * 4;
  const int head_groups = p.heads_q / args.stacked_heads;
  // Query blocks implied (dense, no mask: never with row bounds) or from the list.
  // num_tiles fits int32: validation bounds (total_q + batch) * heads_q.
  const bool implied = !kRowBounds && args.header == nullptr;
  const int num_blocks = implied ? args.implied_blocks : args.header->num_blocks, num_tiles = num_blocks * head_groups;
  const bool equal_costs = implied || args.header->equal_costs != 0;
  // Tile t -> (query block, head group): tile_index (mma_schedule.cuh); never head-major with row bounds.
  const bool head_major = !kRowBounds && (implied ? head_major_order(p, true, num_blocks) : args.header->head_major != 0);
  const auto block_of = [&](int t) { return tile_index(t, num_blocks, head_groups, head_major).query_block; };
  const auto group_of = [&](int t) { return tile_index(t, num_blocks, head_groups, head_major).head_group; };

  // Thread 0 puts a tile's query block into a slot (complete after the next wait
  // and barrier): derived, or copied from the list.
  auto fetch_block = [&](int tile, int slot) {
    if (tid != 0) return;
    if (implied) {
      block_slot[slot] = implied_query_block(p, block_of(tile), kBlockM / args.stacked_heads, kBlockN);
    } else {
      const char* src = reinterpret_cast<const char*>(args.blocks + block_of(tile));
      cp_async_16(smem_addr(&block_slot[slot]), src, true);
      cp_async_16(smem_addr(&block_slot[slot]) + 16, src + 16, true);
    }
  };
  auto load_q = [&](const View& view) {
    if (args.stacked_heads > 1)
      T::template load<kBlockM, true>(sQ, view.q(p), p.q_row_stride, view.rows_valid, q_data_chunks, args.stacked_heads,
                                      p.q_head_stride);
    else
      T::template load<kBlockM>(sQ, view.q(p), p.q_row_stride, view.rows_valid, q_data_chunks);
  };
  // K or V of key block nb of a tile into a stage.
  auto load_k = [&](const View& view, int nb, int stage) {
    const int n0 = nb * kBlockN;
    T::template load<kBlockN>(sK + stage * kKVBytes, view.k(p) + n0 * p.k_row_stride,
                              p.k_row_stride, view.g.seqlen_k - n0, q_data_chunks);
  };
  auto load_v = [&](const View& view, int nb, int stage) {
    const int n0 = nb * kBlockN;
    T::template load<kBlockN>(sV + stage * kKVBytes, view.v(p) + n0 * p.v_row_stride,
                              p.v_row_stride, view.g.seqlen_k - n0, v_data_chunks);
  };
  // What a tile's first block needs before its top barrier: K and V, or with
  // one stage K only (its V loads at that barrier).
  auto load_first = [&](const View& view, int stage) {
    if (view.g.nb_end == view.g.nb_first) return;
    load_k(view, view.g.nb_end - 1, stage);
    if constexpr (kKVStages == 2) load_v(view, view.g.nb_end - 1, stage);
  };

  int tile = blockIdx.x;
  if (tile >= num_tiles) return;
  fetch_block(tile, 0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  int stage = 0;  // stage of the block computed next
  {
    const View first(block_slot[0], group_of(tile), args);
    load_q(first);
    load_first(first, stage);
    cp_async_commit();
  }

  const auto following = [](int slot) { return slot == 2 ? 0 : slot + 1; };
  for (int slot = 0;; slot = following(slot)) {
    // Uneven tiles (causal, mixed lengths) go to the CTAs as they ask:
    // thread 0 claims the next tile of the longest-first list when this one
    // starts (a fixed round-robin left the CTA with the longest tiles up to a
    // longest tile behind). Equal tiles go round-robin, which is faster for
    // them (docs/tuning.md).
    // The next tile reaches the other threads through shared memory, read only
    // after the next barrier.
    if (tid == 0) {
      const int claimed = equal_costs ? tile + int(gridDim.x) : int(gridDim.x) + atomicAdd(&args.header->claimed, 1);
      next_slot[slot] = claimed;
      if (claimed < num_tiles) fetch_block(claimed, following(slot));
    }
    cp_async_commit();
    const auto next = [&] { return next_slot[slot]; };
    const auto has_next = [&] { return next_slot[slot] < num_tiles; };
    const View cur(block_slot[slot], group_of(tile), args);
    const int sq = cur.g.seqlen_q, sk = cur.g.seqlen_k, m0 = cur.g.m0;
    const int rows_valid = cur.rows_valid, m_last = m0 + cur.tokens_valid - 1;
    const int nb_first = cur.g.nb_first, nb_end = cur.g.nb_end;

    // Mask bounds relative to the row: key j visible to row i when
    // i + lo <= j <= i + hi; has_* false when the bound excludes nothing.
    const int64_t shift = int64_t(sk) - sq;
    const bool has_lo = kRowBounds && p.window_left >= 0 && shift - p.window_left + (sq - 1) > 0;
    const bool has_hi = kRowBounds && p.window_right >= 0 && shift + p.window_right < sk - 1;
    const int lo = has_lo ? int(shift - p.window_left) : 0;
    const int hi = has_hi ? int(shift + p.window_right) : 0;

    // A warp whose rows all lie past the tile's valid rows skips the tile.
    // Key-split warp pairs always run (their extra rows are never stored): every
    // warp then meets the same barriers, without which racecheck loses track
    // of the CTA barriers and reports hazards that do not exist.
    const bool warp_active = kKeySplit || warp_row0 < rows_valid;
    float o[kMAtoms][2 * T::kOutSteps][4];
    float row_max[kMAtoms][2], row_sum[kMAtoms][2];  // raw-score reference max; per-thread partial sums
    uint32_t qf[T::kQInRegs ? kMAtoms : 1][T::kQInRegs ? kSteps : 1][4];
#pragma unroll
    for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
      for (int t = 0; t < 2 * T::kOutSteps; ++t)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[ma][t][e] = 0.f;
      row_max[ma][0] = row_max[ma][1] = -INFINITY;
      row_sum[ma][0] = row_sum[ma][1] = 0.f;
    }

    if (nb_end == nb_first) {  // no key visible: start the next tile's loads
      cp_async_wait<0>();
      __syncthreads();
      if (has_next()) {
        const View nxt(block_slot[following(slot)], group_of(next()), args);
        load_q(nxt);
        load_first(nxt, stage);
      }
      cp_async_commit();
    }

    for (int nb = nb_end - 1; nb >= nb_first; --nb) {
      const int n0 = nb * kBlockN;
      cp_async_wait<0>();
      __syncthreads();  // block nb (and Q) landed; every warp is done with the other stage
      if constexpr (kKVStages == 2) {
        if (nb > nb_first) {
          load_k(cur, nb - 1, stage ^ 1);
          load_v(cur, nb - 1, stage ^ 1);
        } else if (has_next()) {
          load_first(View(block_slot[following(slot)], group_of(next()), args), stage ^ 1);
        }
      } else {
        load_v(cur, nb, 0);
      }
      cp_async_commit();
      const uint32_t k_stage = stage * kKVBytes, v_stage = stage * kKVBytes;

      // Every warp is done with Q at a tile's last block: the next tile's Q may load.
      const auto load_next_q = [&] {
        __syncthreads();
        if (has_next()) load_q(View(block_slot[following(slot)], group_of(next()), args));
        cp_async_commit();
      };
      // One stage, after Q*K^T: V of this block lands; every warp is done
      // with K (and at a tile's last block with Q), which take the next block's.
      const auto load_next_k = [&] {
        cp_async_wait<0>();
        __syncthreads();
        if (nb > nb_first) {
          load_k(cur, nb - 1, 0);
        } else if (has_next()) {
          const View nxt(block_slot[following(slot)], group_of(next()), args);
          load_q(nxt);
          load_first(nxt, 0);
        }
        cp_async_commit();
      };
      uint32_t pf[T::kSplit][kMAtoms][kNTiles / 2][4];  // P as A fragments of P*V: own keys, partner's
      float s[kMAtoms][kNTiles][4];
      if (warp_active) {
        if constexpr (T::kQInRegs) {
          if (nb == nb_end - 1) {
#pragma unroll
            for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
              for (int ks = 0; ks < kSteps; ++ks)
                ldmatrix_x4(qf[ma][ks], q_lane.at(warp_row0 + ma * 16, 2 * ks));
          }
        }
#pragma unroll
        for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
          for (int t = 0; t < kNTiles; ++t)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[ma][t][e] = 0.f;

#pragma unroll
        for (int ks = 0; ks < kSteps; ++ks) {
          uint32_t a[kMAtoms][4];
#pragma unroll
          for (int ma = 0; ma < kMAtoms; ++ma) {
            if constexpr (T::kQInRegs) {
#pragma unroll
              for (int e = 0; e < 4; ++e) a[ma][e] = qf[ma][ks][e];
            } else {
              ldmatrix_x4(a[ma], q_lane.at(warp_row0 + ma * 16, 2 * ks));
            }
          }
#pragma unroll
          for (int np = 0; np < kNTiles / 2; ++np) {
            uint32_t kb[4];
            ldmatrix_x4(kb, k_lane.at(np * 16, 2 * ks) + k_stage);
#pragma unroll
            for (int ma = 0; ma < kMAtoms; ++ma) {
              mma_16816<Elem>(s[ma][2 * np], a[ma], kb[0], kb[1]);
              mma_16816<Elem>(s[ma][2 * np + 1], a[ma], kb[2], kb[3]);
            }
          }
        }
      }
      if constexpr (kKVStages == 1) {
        load_next_k();
      } else if constexpr (T::kEarlyQLoad) {
        if (nb == nb_first) load_next_q();
      }

      if (warp_active) {
        if (args.softcap > 0.f) {  // rare: cap * tanh(score * scale / cap), in place
#pragma unroll
          for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
            for (int t = 0; t < kNTiles; ++t)
#pragma unroll
              for (int e = 0; e < 4; ++e) s[ma][t][e] = args.softcap * tanhf(s[ma][t][e] * args.softcap_in);
        }
        const bool needs_mask = n0 + kBlockN > sk || (has_hi && n0 + kBlockN - 1 > m0 + hi) ||
                                (has_lo && n0 < int64_t(m_last) + lo);
        if (needs_mask) {
          if constexpr (kRowBounds) {
            // Row i sees columns [i + lo, i + hi] of [0, sk): as offsets from
            // the thread's first column, so each entry tests its own
            // compile-time offset against two per-row bounds.
            const int col0 = n0 + key_half * (kBlockN / 2) + 2 * (lane & 3);
#pragma unroll
            for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
              for (int half = 0; half < 2; ++half) {
                const int row = m0 + (warp_row0 + ma * 16 + (lane >> 2) + half * 8) / args.stacked_heads;
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

        // Online softmax: rows lane/4 and lane/4 + 8 of each m atom; a row's
        // 2*kNTiles values per thread, spread over the 4 threads of a quad.
        // p = 2^(s * exp2_scale - max * exp2_scale): one FFMA and one ex2.
        const float f = args.exp2_scale;
        bool max_moved = false;
        float corr[kMAtoms][2];
        // Row (ma, half)'s maximum so far, mx: its reference maximum (row_max),
        // correction, exponentials and sum. With kLaggedMax the reference
        // follows the maximum only when it falls behind by more than
        // 2^kMaxLag in p (p then stays <= 256, which fp32 sums and 16-bit P
        // carry as precisely as p <= 1), so that after a row's first block
        // O's rescale (a multiply per accumulator) is rarely due.
        constexpr float kMaxLag = 8.f;
        const auto exponentiate = [&](int ma, int half, float mx) {
          // (-inf) - (-inf) is NaN: a row with no visible key so far keeps -inf.
          const float ref = !kLaggedMax || (mx - row_max[ma][half]) * f > kMaxLag ? mx : row_max[ma][half];
          const float base = ref == -INFINITY ? 0.f : ref * f;  // all masked so far: p = 0
          corr[ma][half] = exp2_approx(row_max[ma][half] * f - base);
          max_moved |= ref != row_max[ma][half];
          row_max[ma][half] = ref;
          float sum = 0.f;
#pragma unroll
          for (int t = 0; t < kNTiles; ++t) {
            s[ma][t][2 * half] = exp2_approx(fmaf(s[ma][t][2 * half], f, -base));
            s[ma][t][2 * half + 1] = exp2_approx(fmaf(s[ma][t][2 * half + 1], f, -base));
            sum += s[ma][t][2 * half] + s[ma][t][2 * half + 1];
          }
          row_sum[ma][half] = row_sum[ma][half] * corr[ma][half] + sum;
        };
        const auto p_fragments = [&](int ma) {
#pragma unroll
          for (int kk = 0; kk < kNTiles / 2; ++kk) {
            pf[0][ma][kk][0] = to_elem_x2<Elem>(s[ma][2 * kk][0], s[ma][2 * kk][1]);
            pf[0][ma][kk][1] = to_elem_x2<Elem>(s[ma][2 * kk][2], s[ma][2 * kk][3]);
            pf[0][ma][kk][2] = to_elem_x2<Elem>(s[ma][2 * kk + 1][0], s[ma][2 * kk + 1][1]);
            pf[0][ma][kk][3] = to_elem_x2<Elem>(s[ma][2 * kk + 1][2], s[ma][2 * kk + 1][3]);
          }
        };
        float mxs[kMAtoms][2];
#pragma unroll
        for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            float mx = row_max[ma][half];
#pragma unroll
            for (int t = 0; t < kNTiles; ++t)
              mx = fmaxf(mx, fmaxf(s[ma][t][2 * half], s[ma][t][2 * half + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            if constexpr (kKeySplit) {
              mxs[ma][half] = mx;
              partner_rows[warp][ma * 16 + half * 8 + (lane >> 2)] = mx;
            } else {
              exponentiate(ma, half, mx);
            }
          }
          if constexpr (!kKeySplit) p_fragments(ma);
        }
        if constexpr (kKeySplit) {
          // The warp pair's common maxima; then each warp's P into the pair's
          // buffer, for the partner's P*V after the warp's own keys. (Both
          // buffers are rewritten only after the next block's top barrier.)
          pair_barrier<kWarps / 2>(warp / 2);
#pragma unroll
          for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
            for (int half = 0; half < 2; ++half)
              exponentiate(ma, half, fmaxf(mxs[ma][half], partner_rows[warp ^ 1][ma * 16 + half * 8 + (lane >> 2)]));
            p_fragments(ma);
#pragma unroll
            for (int kk = 0; kk < kNTiles / 2; ++kk)
#pragma unroll
              for (int j = 0; j < 4; ++j)  // j: rows +8 (j & 1), keys +8 (j >> 1) of 16-key step kk
                st_shared_b32(p_store + (ma * 16 + (j & 1) * 8) * 128 + (((2 * kk + (j >> 1)) ^ p_slot) << 4),
                              pf[0][ma][kk][j]);
          }
        }
        // Once the maxima settle (most blocks of long rows), O needs no rescale.
        if (__any_sync(0xffffffffu, max_moved)) {
#pragma unroll
          for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
            for (int t = 0; t < 2 * T::kOutSteps; ++t)
#pragma unroll
              for (int e = 0; e < 4; ++e) o[ma][t][e] *= corr[ma][e >> 1];
        }
      }

      if constexpr (kKVStages == 2 && !T::kEarlyQLoad) {
        if (nb == nb_first) load_next_q();
      }

      if (warp_active) {
#pragma unroll
        for (int keys = 0; keys < T::kSplit; ++keys) {  // own, then the partner's
          if (keys == 1) {
            pair_barrier<kWarps / 2>(warp / 2);
#pragma unroll
            for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
              for (int kk = 0; kk < kNTiles / 2; ++kk) ldmatrix_x4(pf[keys][ma][kk], p_lane.at(ma * 16, 2 * kk));
          }
          const uint32_t v_rows = v_stage + (keys == 0 ? v_own : v_other);
#pragma unroll
          for (int kk = 0; kk < kNTiles / 2; ++kk) {
#pragma unroll
            for (int dp = 0; dp < T::kOutSteps; ++dp) {
              uint32_t vb[4];
              ldmatrix_x4_trans(vb, v_lane.at(kk * 16, 2 * dp) + v_rows);
#pragma unroll
              for (int ma = 0; ma < kMAtoms; ++ma) {
                mma_16816<Elem>(o[ma][2 * dp], pf[keys][ma][kk], vb[0], vb[1]);
                mma_16816<Elem>(o[ma][2 * dp + 1], pf[keys][ma][kk], vb[2], vb[3]);
              }
            }
          }
        }
      }
      if constexpr (kKVStages == 2) stage ^= 1;
    }

    // Epilogue: O / rowsum, and LSE; rows without a visible key give 0 and -inf.
    if (warp_active) {
      const View fin(block_slot[slot], group_of(tile), args);
      Elem* o_base = fin.o(p) + key_half * T::kOutSteps * 16;
      const auto quad_sum = [&](int ma, int half) {
        float sum = row_sum[ma][half];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        return sum + __shfl_xor_sync(0xffffffffu, sum, 2);
      };
      if constexpr (kKeySplit) {
        // Each warp summed its half of the keys (the partner read this warp's
        // last maxima before the block's second pair barrier).
#pragma unroll
        for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            row_sum[ma][half] = quad_sum(ma, half);
            partner_rows[warp][ma * 16 + half * 8 + (lane >> 2)] = row_sum[ma][half];
          }
        pair_barrier<kWarps / 2>(warp / 2);
#pragma unroll
        for (int ma = 0; ma < kMAtoms; ++ma)
#pragma unroll
          for (int half = 0; half < 2; ++half)
            row_sum[ma][half] += partner_rows[warp ^ 1][ma * 16 + half * 8 + (lane >> 2)];
      }
#pragma unroll
      for (int ma = 0; ma < kMAtoms; ++ma) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const float sum = kKeySplit ? row_sum[ma][half] : quad_sum(ma, half);
          const float inv = sum > 0.f ? 1.f / sum : 0.f;
          const int r = warp_row0 + ma * 16 + (lane >> 2) + half * 8;
          if (r < fin.rows_valid) {
            const int token = r / args.stacked_heads, stacked = r % args.stacked_heads;  // of the tile's stacked heads
            Elem* orow = o_base + token * p.o_row_stride + stacked * p.o_head_stride + 2 * (lane & 3);
#pragma unroll
            for (int t = 0; t < 2 * T::kOutSteps; ++t)
              if (key_half * 2 * T::kOutSteps + t < out_tiles)
                *reinterpret_cast<uint32_t*>(orow + t * 8) =
                    to_elem_x2<Elem>(o[ma][t][2 * half] * inv, o[ma][t][2 * half + 1] * inv);
            if (p.lse != nullptr && (lane & 3) == 0 && key_half == 0) {
              const float lse2 = sum > 0.f ? row_max[ma][half] * args.exp2_scale + __log2f(sum) : -INFINITY;
              p.lse[fin.g.batch * p.lse_batch_stride + (fin.head + stacked) * p.lse_head_stride + fin.g.q_start +
                    fin.g.m0 + token] =
                  lse2 * 0.69314718055994531f;
            }
          }
        }
      }
    }
    if (!has_next()) break;
    tile = next();
  }
  cp_async_wait<0>();
}

// Launch of one instantiation: the tile-list prepass (unless the query blocks
// are implied), then the persistent grid (as many CTAs as fit on the device at
// once, never more than tiles).
template <class Elem, int kBucket, int kWarps, int kMAtoms, int kBlockN, int kKVStages = 2, bool kKeySplit = false,
          bool kLaggedMax = true>
int launch_fwd_tiles(const FwdParams& p) {
  constexpr TileConfig cfg{kWarps, kMAtoms, kBlockN, kKVStages, kKeySplit, kLaggedMax};
  constexpr int kBlockM = cfg.block_m();
  const int stacked = stacked_heads(p, kBlockM);
  const int tokens = kBlockM / stacked;  // per query block of the tile list
  const int64_t max_tiles = max_query_blocks(p, tokens) * (p.heads_q / stacked);
  if (max_tiles == 0) return cudaSuccess;
  const bool implied = query_blocks_implied(p);
  TileListHeader* header = nullptr;
  QueryBlock* blocks = nullptr;
  if (!implied) {
    if (p.workspace == nullptr || p.workspace_bytes < tile_list_bytes(p, tokens)) return cudaErrorInvalidValue;
    header = static_cast<TileListHeader*>(p.workspace);
    blocks = reinterpret_cast<QueryBlock*>(header + 1);
    if (int err = launch_tile_list(p, tokens, kBlockN, header, blocks); err != cudaSuccess) return err;
  }

  auto kernel = p.has_window()
                    ? fwd_kernel<Elem, kBucket, kWarps, kMAtoms, kBlockN, kKVStages, kKeySplit, kLaggedMax, true>
                    : fwd_kernel<Elem, kBucket, kWarps, kMAtoms, kBlockN, kKVStages, kKeySplit, kLaggedMax, false>;
  constexpr size_t smem = cfg.smem_bytes(kBucket);
  // CTAs per device (set up once per kernel and device: attribute and occupancy).
  static PerDevice resident[2];  // per kernel: [has_window]
  int ctas = 0;
  const int err = resident[p.has_window()].get(p.device, &ctas, [&](int dev, int* value) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    int per_sm = 0, sms = 0;
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, cfg.threads(), smem);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess && per_sm == 0) e = cudaErrorInvalidConfiguration;
    *value = per_sm * sms;
    return int(e);
  });
  if (err != cudaSuccess) return err;

  FwdArgs args;
  args.p = p;
  args.header = header;
  args.blocks = blocks;
  args.implied_blocks = implied ? int(max_query_blocks(p, tokens)) : 0;
  args.group = p.heads_q / p.heads_k;
  args.stacked_heads = stacked;
  args.softcap = p.softcap;
  args.softcap_in = p.softcap > 0.f ? p.softmax_scale / p.softcap : 0.f;
  args.exp2_scale = p.softcap > 0.f ? kernels::kLog2e : p.softmax_scale * kernels::kLog2e;
  const int grid = int(max_tiles < ctas ? max_tiles : ctas);
  kernel<<<grid, cfg.threads(), smem, static_cast<cudaStream_t>(p.stream)>>>(args);
  return cudaGetLastError();
}

// The library's instantiation of a bucket: its measured tile shapes, one
// picked per call (tile_shape).
template <class Elem, int kBucket, TileShape kShape>
int launch_fwd_shape(const FwdParams& p) {
  constexpr TileConfig c = tile_config(kBucket, kShape);
  return launch_fwd_tiles<Elem, kBucket, c.warps, c.m_atoms, c.block_n, c.kv_stages, c.key_split, c.lagged_max>(p);
}

template <class Elem, int kBucket>
int launch_fwd(const FwdParams& p) {
  size_t smem_per_block = 0;
  if (int err = smem_per_block_optin(p.device, &smem_per_block); err != cudaSuccess) return err;
  switch (tile_shape(p, kBucket, smem_per_block)) {
    case TileShape::short_rows: return launch_fwd_shape<Elem, kBucket, TileShape::short_rows>(p);
    case TileShape::short_seqs: return launch_fwd_shape<Elem, kBucket, TileShape::short_seqs>(p);
    case TileShape::two_ctas: return launch_fwd_shape<Elem, kBucket, TileShape::two_ctas>(p);
    default: return launch_fwd_shape<Elem, kBucket, TileShape::standard>(p);
  }
}

}  // namespace vflash::mma
