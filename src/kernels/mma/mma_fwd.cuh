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

#include <cmath>

#include "kernels/common/score_constants.hpp"
#include "kernels/mma/mma_epilogue.cuh"
#include "kernels/mma/mma_loader.cuh"
#include "kernels/mma/mma_mask.cuh"
#include "kernels/mma/mma_matmul.cuh"
#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_queue.cuh"
#include "kernels/mma/mma_schedule.cuh"
#include "kernels/mma/mma_softmax.cuh"
#include "kernels/mma/mma_tile.cuh"
#include "params.hpp"

namespace vflash::mma {

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
  using Queue = TileQueue<kRowBounds, T::kBlockM, kBlockN>;
  constexpr int kBlockM = T::kBlockM, kNTiles = T::kNTiles;
  constexpr uint32_t kKVBytes = T::kKVBytes;

  // Q, then the stages of K and V. Two stages: block i computes from stage
  // i & 1 while block i + 1 (or the next tile's first block) loads into the
  // other. One stage (TileConfig::kv_stages): V of block i loads during its
  // Q*K^T, K of the next block (and at a tile's end the next Q) during its
  // softmax and P*V; two barriers per block, in half the shared memory.
  extern __shared__ __align__(128) uint4 smem[];
  __shared__ QueryBlock block_slot[3];  // TileQueue's slots
  __shared__ int next_slot[3];
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
  const int out_tiles = p.head_dim_v / 8;
  const Loader<T> load{p, args, sQ, sK, sV, p.head_dim / 8, p.head_dim_v / 8};
  const LaneOffsets<T::kChunks> q_lane(sQ, lane & 15, lane >> 4);
  const LaneOffsets<T::kChunks> k_lane(sK + key_half * (kBlockN / 2) * T::kRowBytes,
                                       (lane & 7) + ((lane >> 4) << 3), (lane >> 3) & 1);
  const LaneOffsets<T::kChunks> v_lane(sV + key_half * T::kOutSteps * 32, lane & 15, lane >> 4);
  // V rows of the warp's own keys (its P in registers) and of its partner's
  // (their P from the warp pair's buffer, sP: row r of the warp pair's rows at
  // line r, chunk c of 8 keys at slot (c ^ r) & 7).
  const uint32_t v_own = key_half * (kBlockN / 2) * T::kRowBytes, v_other = (kBlockN / 2) * T::kRowBytes - v_own;
  const uint32_t sP = sV + kKVStages * kKVBytes + warp / 2 * (16 * kMAtoms) * 128;
  const LaneOffsets<8> p_lane(sP, lane & 15, (lane >> 4) ^ ((key_half ^ 1) * 4));
  const int p_slot = (lane >> 2) ^ (key_half * 4);  // own chunk t of a row sits at slot t ^ p_slot
  const uint32_t p_store = sP + (lane >> 2) * 128 + (lane & 3) * 4;
  const Queue queue(block_slot, next_slot, args);

  int tile = queue.initial();
  if (tile >= queue.num_tiles) return;
  queue.fetch(tile, 0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  int stage = 0;  // stage of the block computed next
  {
    const View first(block_slot[0], queue.group_of(tile), args);
    load.q(first);
    load.first(first, stage);
    cp_async_commit();
  }

  for (int slot = 0;; slot = Queue::following(slot)) {
    queue.claim_next(tile, slot);
    cp_async_commit();
    const auto next_view = [&] {
      return View(block_slot[Queue::following(slot)], queue.group_of(next_slot[slot]), args);
    };
    const View cur(block_slot[slot], queue.group_of(tile), args);
    const auto loads = block_loads(load, cur, [&] { return queue.has_next(slot); }, next_view);
    // Mask bounds (KeyMask) relative to the row; has_* false when the bound excludes nothing.
    const int sq = cur.g.seqlen_q, sk = cur.g.seqlen_k, m0 = cur.g.m0;
    const int m_last = m0 + cur.tokens_valid - 1;
    const int64_t shift = int64_t(sk) - sq;
    const bool has_lo = kRowBounds && p.window_left >= 0 && shift - p.window_left + (sq - 1) > 0;
    const bool has_hi = kRowBounds && p.window_right >= 0 && shift + p.window_right < sk - 1;
    const int lo = has_lo ? int(shift - p.window_left) : 0;
    const int hi = has_hi ? int(shift + p.window_right) : 0;
    const int nb_first = cur.g.nb_first, nb_end = cur.g.nb_end;

    // A warp whose rows all lie past the tile's valid rows skips the tile.
    // Key-split warp pairs always run (their extra rows are never stored): every
    // warp then meets the same barriers, without which racecheck loses track
    // of the CTA barriers and reports hazards that do not exist.
    const bool warp_active = kKeySplit || warp_row0 < cur.rows_valid;
    float o[kMAtoms][2 * T::kOutSteps][4];
    WarpSoftmax<kMAtoms, kNTiles, kLaggedMax> sm;
    sm.reset();
    QFragments<T> qf;
    zero(o);

    if (nb_end == nb_first) loads.keyless(stage);  // no key visible: start the next tile's loads

    for (int nb = nb_end - 1; nb >= nb_first; --nb) {
      const int n0 = nb * kBlockN;
      cp_async_wait<0>();
      __syncthreads();  // block nb (and Q) landed; every warp is done with the other stage
      loads.at_top(nb, nb_first, stage);
      const uint32_t k_stage = stage * kKVBytes, v_stage = stage * kKVBytes;
      uint32_t pf[T::kSplit][kMAtoms][kNTiles / 2][4];  // P as A fragments of P*V: own keys, partner's
      float s[kMAtoms][kNTiles][4];
      if (warp_active) qk_scores<T, kNTiles>(s, qf, q_lane, k_lane, k_stage, warp_row0, nb == nb_end - 1);
      if constexpr (kKVStages == 1) {
        loads.next_k(nb, nb_first);
      } else if constexpr (T::kEarlyQLoad) {
        if (nb == nb_first) loads.next_q();
      }

      if (warp_active) {
        if (args.score.has_softcap()) cap_scores(s, args.score);  // rare
        if (n0 + kBlockN > sk || (has_hi && n0 + kBlockN - 1 > m0 + hi) || (has_lo && n0 < int64_t(m_last) + lo))
          KeyMask<kRowBounds>{sk, m0, m_last, has_lo, has_hi, lo, hi}.template apply<kBlockN>(
              s, n0, key_half, warp_row0, lane, args.stacked_heads);
        softmax_step<T, kLaggedMax, kNTiles>(sm, s, pf, o, partner_rows, args.score.exp2_scale, warp, lane, p_store,
                                             p_slot);
      }

      if constexpr (kKVStages == 2 && !T::kEarlyQLoad) {
        if (nb == nb_first) loads.next_q();
      }
      if (warp_active) pv_accumulate<T, kNTiles>(o, pf, p_lane, v_lane, v_stage, v_own, v_other, warp);
      if constexpr (kKVStages == 2) stage ^= 1;
    }

    if (warp_active) {
      const View fin(block_slot[slot], queue.group_of(tile), args);
      write_output<T>(fin, o, sm, partner_rows, args, warp, lane, key_half, warp_row0, out_tiles);
    }
    if (!queue.has_next(slot)) break;
    tile = next_slot[slot];
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
  args.score = kernels::score_constants(p);
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
