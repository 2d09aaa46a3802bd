// The sm_90a attention forward kernel: warp-specialised, persistent.
//
// One CTA = 1 producer + 2 or 3 consumer warpgroups (Config). One producer
// warp takes tile indices (round-robin, or from a global counter when tiles
// differ in cost), publishes each to the consumers, and issues TMA loads of
// the Q tile (64 rows per consumer warpgroup) and of K and V tiles into two
// kStages-deep shared-memory rings, each slot completing on an mbarrier.
// Each consumer warpgroup owns 64 query rows: S = Q K^T with wgmma (both
// operands in shared memory), online softmax in fp32 with exp2, O += P V with
// wgmma (P from registers); with two consumer warpgroups, QK^T of block n and
// PV of block n+1 issue as one batch. Consumers release K after its QK^T and V after its
// PV through "empty" mbarriers. The epilogue stages O through shared memory
// and writes 16-byte rows, masked at the sequence end so a tile never touches
// the next packed sequence.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "config.cuh"
#include "masking.cuh"
#include "online_softmax.cuh"
#include "ptx.cuh"
#include "tile_scheduler.cuh"
#include "wgmma_ops.cuh"

namespace vflash::hopper {

// kPacked: every sequence is shorter than a tile and tiles pack several
// (PackedTileScheduler, RowRangeMask); otherwise a tile is one query block of
// one sequence and head, and kRowBounds says whether the call has a causal
// mask or a window (TileMask). kSoftcap: the call caps scores with tanh.
// Both are compile-time so that the key-block loop carries no branch for
// them, which lets ptxas schedule the softmax under the P*V wgmma.
template <class Cfg, bool kPacked, bool kRowBounds, bool kSoftcap>
struct Kernel {
  static constexpr int kBlockM = Cfg::kBlockM;
  static constexpr int kBlockN = Cfg::kBlockN;
  static constexpr int kD = Cfg::kD;
  static constexpr int kDV = Cfg::kDV;
  static constexpr int kQkChunk = Cfg::kQkChunk;
  static constexpr int kQkSwz = Cfg::kQkSwizzleBytes;
  static constexpr int kVChunk = Cfg::kVChunk;
  static constexpr int kVSwz = Cfg::kVSwizzleBytes;
  static constexpr int kStages = Cfg::kStages;
  using Elem = std::conditional_t<Cfg::kDType == DType::bf16, __nv_bfloat16, __half>;
  using Scheduler =
      std::conditional_t<kPacked, PackedTileScheduler<kBlockM, kBlockN>, TileScheduler<kBlockM, kBlockN>>;
  using Mask =
      std::conditional_t<kPacked, RowRangeMask<kBlockM, kBlockN>, TileMask<kBlockM, kBlockN, kRowBounds>>;

  // setmaxnreg moves registers within the CTA's launch allocation
  // (__launch_bounds__(kThreads, 1)): what the producer warpgroup gives up
  // must cover what the consumer warpgroups take, or the consumers'
  // setmaxnreg.inc waits forever. Consumers take the most that fits.
  static constexpr int kLaunchRegs = 65536 / Cfg::kThreads / 8 * 8;
  // Issuing block n's QK^T together with block n+1's PV keeps S, P and O live
  // together: kOverlapRegs of them, and the rest needs about 72 registers
  // with 232 for the consumers (producer 32) or 52 with 240 (producer 24).
  static constexpr int kOverlapRegs = kDV / 2 + kBlockN / 2 + kBlockN / 4;
  static constexpr int kConsumerRegsFor(int producer_regs) {
    return std::min(240, kLaunchRegs + (kLaunchRegs - producer_regs) * Cfg::kProducerThreads /
                                           Cfg::kConsumerThreads / 8 * 8);
  }
  // The producer keeps 32 registers (with 24 it spills more and runs slower
  // at d128; it still spills a few tile-level values, never in the
  // consumers' loop) unless the overlap fits only with 24 (d256: S 40, P 20,
  // O 128; d192 / dv192), which then takes 24; packed tiles keep 32 and no
  // overlap, which is faster for them (docs/tuning.md).
  static constexpr bool kOverlapNeeds240 = !kPacked && kOverlapRegs > kConsumerRegsFor(32) - 72 &&
                                           kOverlapRegs <= kConsumerRegsFor(24) - 52;
  static constexpr int kProducerRegs = kOverlapNeeds240 ? 24 : 32;
  static constexpr int kConsumerRegs = kConsumerRegsFor(kProducerRegs);
  static_assert((kLaunchRegs - kProducerRegs) * Cfg::kProducerThreads >=
                    (kConsumerRegs - kLaunchRegs) * Cfg::kConsumerThreads,
                "register reallocation exceeds the CTA's allocation");
  static constexpr bool kOverlap = kOverlapNeeds240 || kOverlapRegs <= kConsumerRegs - 72;
  // Four reduction chains per row where the softmax sits on the issuing
  // warpgroup's critical path (the overlap); elsewhere the other warpgroups
  // fill that latency and one chain's fewer instructions are faster
  // (docs/tuning.md).
  using Softmax = OnlineSoftmax<kBlockN, kOverlap ? 4 : 1>;
  // Two consumer warpgroups: the second one's GEMMs start after the first
  // one's first QK^T, so that the two do not run their softmax in step (which
  // leaves the tensor pipe idle); kept for row-bounded tiles. On unmasked
  // tiles it was measured at d128 (kept) and d256 (slower); the other
  // instances keep those tiles without it (docs/tuning.md).
  static constexpr bool kHeadStart = !kPacked && Cfg::kConsumerWarpgroups == 2 && (kRowBounds || kD == 128);
  static constexpr int kHeadStartBarrier = 1 + Cfg::kConsumerWarpgroups;  // after the epilogue's per-warpgroup ones

  struct Barriers {
    uint64_t q_full, q_empty;
    // K and V have separate rings so a K slot is released as soon as its
    // QK^T completes, while the same block's V is still needed for PV.
    uint64_t k_full[kStages], k_empty[kStages], v_full[kStages], v_empty[kStages];
    // The producer publishes each tile index it takes to the consumers.
    uint64_t tile_full[2], tile_empty[2];
    int64_t tile_index[2];
  };
  static_assert(sizeof(Barriers) <= Cfg::kBarrierBytes, "barrier area too small");

  // Byte offset of element (row, col) in the O staging tile (chunked like
  // V): the layout TMA writes with CU_TENSOR_MAP_SWIZZLE_<kVSwz>B.
  __device__ __forceinline__ static uint32_t o_stage_offset(int row, int col) {
    uint32_t off = uint32_t(row * kVSwz + (col % kVChunk) * 2);
    off ^= ((off >> 7) & (kVSwz / 16 - 1)) << 4;
    return uint32_t((col / kVChunk) * kBlockM * kVSwz) + off;
  }

  // Position in the two-entry ring of published tile indices.
  struct TileSlot {
    int index = 0;
    uint32_t phase = 0;
    __device__ __forceinline__ TileSlot& operator++() {
      index ^= 1;
      phase ^= index == 0;
      return *this;
    }
  };

  // Position in a kStages-deep ring of shared-memory slots; each slot's
  // mbarrier phase flips every time the ring wraps.
  struct Ring {
    int stage = 0;
    uint32_t phase = 0;
    __device__ __forceinline__ void advance() {
      if (++stage == kStages) {
        stage = 0;
        phase ^= 1;
      }
    }
  };

  // ---------------------------------------------------------------- producer
  __device__ __forceinline__ static void produce(const CUtensorMap* tq, const CUtensorMap* tk, const CUtensorMap* tv,
                                 const KernelArgs& a, uint8_t* smem, Barriers& bars) {
    const bool leader = (threadIdx.x & 31) == 0;
    if (leader) {
      tma_prefetch_descriptor(tq);
      tma_prefetch_descriptor(tk);
      tma_prefetch_descriptor(tv);
    }
    const uint64_t keep = policy_evict_last();
    const uint64_t stream = policy_evict_first();
    const uint32_t q_smem = smem_addr(smem + Cfg::kQOffset);
    const uint32_t k_smem = smem_addr(smem + Cfg::kKOffset);
    const uint32_t v_smem = smem_addr(smem + Cfg::kVOffset);
    const bool batch_coord_dense = a.cu_seqlens_q == nullptr;
    Scheduler sched;
    Tile tile;
    Ring k_ring, v_ring;
    uint32_t q_phase = 0;
    // Q, then K(last), then K(n-1) before V(n): the consumers compute QK^T of
    // block n-1 together with PV of block n.
    auto load_tile = [&](const Tile& tile) {
      const int bc = batch_coord_dense ? tile.b : 0;
      if (leader) {
        mbar_wait(smem_addr(&bars.q_empty), q_phase ^ 1);
        const uint32_t qbar = smem_addr(&bars.q_full);
        mbar_arrive_expect_tx(qbar, Cfg::kQBytes);
        const int row = tile.q_start + tile.m_block * kBlockM;
#pragma unroll
        for (int c = 0; c < Cfg::kQkWidth / kQkChunk; ++c)
          tma_load_4d(q_smem + c * kBlockM * kQkSwz, tq, qbar, c * kQkChunk, tile.h, row, bc, stream);
      }
      q_phase ^= 1;
      const int kv_head = tile.h / a.heads_per_kv;
      auto load = [&](Ring& ring, uint64_t* full, uint64_t* empty, const CUtensorMap* map, uint32_t base,
                      int tile_bytes, int width, int chunk, int swz, int n) {
        const int s = ring.stage;
        if (leader) {
          mbar_wait(smem_addr(&empty[s]), ring.phase ^ 1);
          const uint32_t bar = smem_addr(&full[s]);
          mbar_arrive_expect_tx(bar, tile_bytes);
          const int row = tile.k_start + n * kBlockN;
          for (int c = 0; c < width / chunk; ++c)
            tma_load_4d(base + s * tile_bytes + c * kBlockN * swz, map, bar, c * chunk, kv_head, row, bc, keep);
        }
        ring.advance();
      };
      auto load_k = [&](int n) {
        load(k_ring, bars.k_full, bars.k_empty, tk, k_smem, Cfg::kKBytes, Cfg::kQkWidth, kQkChunk, kQkSwz, n);
      };
      load_k(tile.n_end - 1);
      for (int n = tile.n_end - 1; n >= tile.n_begin; --n) {
        if (n > tile.n_begin) load_k(n - 1);
        load(v_ring, bars.v_full, bars.v_empty, tv, v_smem, Cfg::kVBytes, kDV, kVChunk, kVSwz, n);
      }
    };

    // The first wave is static; later tiles come from a global counter (when
    // given), so a CTA that drew short tiles takes more. Each index taken is
    // published to the consumers, the one that ends the schedule included.
    TileSlot slot;
    const bool dynamic = a.tile_counter != nullptr;
    for (int64_t t = blockIdx.x;; ++slot) {
      if (dynamic && leader) {
        mbar_wait(smem_addr(&bars.tile_empty[slot.index]), slot.phase ^ 1);
        bars.tile_index[slot.index] = t;
        mbar_arrive(smem_addr(&bars.tile_full[slot.index]));
      }
      if (!sched.decode(t, a, tile)) break;
      // Taken now, read after this tile's loads are issued: the atomic's
      // latency hides behind them.
      const int64_t next =
          a.tile_counter == nullptr ? t + gridDim.x : leader ? gridDim.x + atomicAdd(a.tile_counter, 1) : 0;
      if (tile.n_begin < tile.n_end) load_tile(tile);  // else no visible key: consumers write zeros
      t = __shfl_sync(0xffffffffu, next, 0);
    }
  }

  // ---------------------------------------------------------------- consumer
  __device__ __forceinline__ static uint32_t pack(float lo, float hi) {
    if constexpr (Cfg::kDType == DType::bf16) {
      __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
      return *reinterpret_cast<uint32_t*>(&v);
    } else {
      __half2 v = __floats2half2_rn(lo, hi);
      return *reinterpret_cast<uint32_t*>(&v);
    }
  }

  // Each k-step's descriptor is the tile's base descriptor plus a
  // compile-time offset in its 16-byte address field: shared memory stays
  // below 256 KiB, so the 14-bit field never carries into the next one.
  __device__ __forceinline__ static void issue_qk(float (&sc)[kBlockN / 2], uint32_t q_smem, uint32_t k_tile, int wg) {
    const uint64_t da0 = make_smem_desc(q_smem + wg * 64 * kQkSwz, 16, 8 * kQkSwz, kQkSwz);
    const uint64_t db0 = make_smem_desc(k_tile, 16, 8 * kQkSwz, kQkSwz);
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int c = kk * 16 / kQkChunk, within = (kk * 16) % kQkChunk;
      const uint64_t da = da0 + uint64_t((c * kBlockM * kQkSwz + within * 2) >> 4);
      const uint64_t db = db0 + uint64_t((c * kBlockN * kQkSwz + within * 2) >> 4);
      wgmma_ss<kBlockN, Cfg::kDType>(sc, da, db, kk > 0);
    }
  }

  __device__ __forceinline__ static void issue_pv(float (&o)[kDV / 2], const uint32_t (&p)[kBlockN / 16][4],
                                                  uint32_t v_tile) {
    const uint64_t db0 = make_smem_desc(v_tile, kBlockN * kVSwz, 8 * kVSwz, kVSwz);
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
      wgmma_rs<kDV, Cfg::kDType>(o, p[kk], db0 + uint64_t((kk * 16 * kVSwz) >> 4), 1);
  }

  // Accumulator layout of S equals the register-A layout of the PV wgmma:
  // consecutive pairs of S entries become the packed 16-bit P fragments.
  __device__ __forceinline__ static void to_p(const float (&sc)[kBlockN / 2], uint32_t (&p)[kBlockN / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
      for (int j = 0; j < 4; ++j) p[kk][j] = pack(sc[8 * kk + 2 * j], sc[8 * kk + 2 * j + 1]);
  }

  __device__ __forceinline__ static void rescale_o(float (&o)[kDV / 2], const float (&rescale)[2]) {
#pragma unroll
    for (int i = 0; i < kDV / 2; ++i) o[i] *= rescale[(i >> 1) & 1];
  }

  // A consumer thread's place in its warpgroup and in the tile's rows.
  struct ConsumerThread {
    int wg, tid, lane;
    int tile_row;  // tile row of the thread's accumulator rows (i & 2) == 0; + 8 for the others
    int quad_col;  // first key / output column of the thread within an 8-column group
  };
  // Shared-memory addresses of the Q, K and V tiles and the O staging tile.
  struct SmemTiles {
    uint32_t q, k, v;
    uint8_t* o_stage;
  };

  // Passes over `count` K/V blocks this warpgroup does not need: it still
  // releases their slots, after their loads land (so its arrivals count
  // toward the phase the other warpgroups complete).
  __device__ __forceinline__ static void skip_blocks(int count, Barriers& bars, Ring& k_ring, Ring& v_ring) {
    for (int i = 0; i < count; ++i) {
      mbar_wait(smem_addr(&bars.k_full[k_ring.stage]), k_ring.phase);
      mbar_arrive(smem_addr(&bars.k_empty[k_ring.stage]));
      k_ring.advance();
      mbar_wait(smem_addr(&bars.v_full[v_ring.stage]), v_ring.phase);
      mbar_arrive(smem_addr(&bars.v_empty[v_ring.stage]));
      v_ring.advance();
    }
  }

  // Key blocks [n_begin, n_end) of one tile, last first: S = Q K^T, softmax, O += P V. Blocks
  // [unmasked.begin, unmasked.end) are visible to every row of the warpgroup
  // and take the loop without the mask; the blocks above and below take the
  // masked one (compile-time both, no branch in either loop). When S, P and
  // O fit in registers together (kOverlap), S of block n is issued together
  // with PV of block n+1 and block n's softmax runs between the two waits;
  // otherwise each block's GEMMs and softmax run in sequence. Either way the
  // other warpgroups' GEMMs fill a warpgroup's softmax.
  __device__ __forceinline__ static void mainloop(int wg, const KernelArgs& a, int n_begin, int n_end,
                                                  kernels::KeySpan unmasked, const SmemTiles& tiles, Barriers& bars,
                                                  Ring& k_ring, Ring& v_ring, const Mask& mask, float (&o)[kDV / 2],
                                                  Softmax& st) {
    const uint32_t q_smem = tiles.q, k_smem = tiles.k, v_smem = tiles.v;
    float sc[kBlockN / 2];
    uint32_t p[kBlockN / 16][4];
    float rescale[2];
    auto qk = [&](int n) {
      mbar_wait(smem_addr(&bars.k_full[k_ring.stage]), k_ring.phase);
      wgmma_fence();
      issue_qk(sc, q_smem, k_smem + k_ring.stage * Cfg::kKBytes, wg);
      wgmma_commit();
    };
    auto qk_done = [&](int n) {
      fence_regs(sc);
      mbar_arrive(smem_addr(&bars.k_empty[k_ring.stage]));
      k_ring.advance();
      if (!Cfg::kOReusesQ && n == n_begin) mbar_arrive(smem_addr(&bars.q_empty));
    };
    auto pv = [&]() {
      mbar_wait(smem_addr(&bars.v_full[v_ring.stage]), v_ring.phase);
      wgmma_fence();  // after the wait loop: keeps the issue on a convergent path
      issue_pv(o, p, v_smem + v_ring.stage * Cfg::kVBytes);
      wgmma_commit();
    };
    auto pv_done = [&]() {
      fence_regs(o);
      fence_regs(p);
      mbar_arrive(smem_addr(&bars.v_empty[v_ring.stage]));
      v_ring.advance();
    };
    // The softmax of block n, with or without the mask (a tag type).
    auto softmax = [&](int n, auto masked) {
      st.template update<kSoftcap, decltype(masked)::value>(sc, n, a, mask, rescale);
    };
    // Runs step(n, tag) for n = from - 1 down to n_begin: the masked blocks
    // above the unmasked span, the span, the masked blocks below it.
    const int split_hi = max(n_begin, min(end_whole_block(unmasked), n_end));
    const int split_lo = max(n_begin, min(first_whole_block(unmasked), split_hi));
    auto blocks_down = [&](int from, auto step) {
      int n = from - 1;
      for (; n >= split_hi; --n) step(n, std::true_type{});
      for (; n >= split_lo; --n) step(n, std::false_type{});
      for (; n >= n_begin; --n) step(n, std::true_type{});
    };
    if constexpr (kOverlap) {
      const int n = n_end - 1;
      if (kHeadStart && wg == 1) named_barrier_sync(kHeadStartBarrier, 256);
      qk(n);
      wgmma_wait<0>();
      qk_done(n);
      if (kHeadStart && wg == 0) named_barrier_arrive(kHeadStartBarrier, 256);
      if (n >= split_hi || n < split_lo)
        softmax(n, std::true_type{});
      else
        softmax(n, std::false_type{});
      to_p(sc, p);
      // O takes block n+1's rescale while QK^T of block n runs, just before
      // the PV that accumulates into it.
      blocks_down(n, [&](int n, auto masked) {
        qk(n);
        rescale_o(o, rescale);
        pv();
        wgmma_wait<1>();
        qk_done(n);
        softmax(n, masked);
        wgmma_wait<0>();
        pv_done();
        to_p(sc, p);
      });
      rescale_o(o, rescale);
      pv();
      wgmma_wait<0>();
      pv_done();
    } else {
      blocks_down(n_end, [&](int n, auto masked) {
        qk(n);
        wgmma_wait<0>();
        qk_done(n);
        softmax(n, masked);
        // Once the row maxima settle (most blocks of long rows) O needs no
        // rescale (docs/tuning.md).
        if (__any_sync(0xffffffffu, rescale[0] != 1.f || rescale[1] != 1.f)) rescale_o(o, rescale);
        to_p(sc, p);
        pv();
        wgmma_wait<0>();
        pv_done();
      });
    }
  }

  // The key blocks that lie wholly inside a key span: [first_whole_block, end_whole_block).
  __device__ __forceinline__ static int first_whole_block(kernels::KeySpan keys) {
    return kernels::blocks_of(keys.begin, kBlockN);
  }
  __device__ __forceinline__ static int end_whole_block(kernels::KeySpan keys) { return keys.end / kBlockN; }

  // Where tile row `row` lands: its query row within the sequence and its
  // head (packed tiles stack a.pack heads per token; a literal 1 keeps
  // divisions out of the other tiles).
  struct OutRow {
    int q_row, h;
  };
  __device__ __forceinline__ static OutRow out_row(const Tile& tile, int row, const KernelArgs& a) {
    const int stacked = kPacked ? a.pack : 1;
    return {tile.m_block * kBlockM + row / stacked, tile.h + row % stacked};
  }

  // Writes this warpgroup's 64 rows of O in 16-byte pieces, piece(row, col)
  // for each, only rows inside the sequence (a tile never touches the next
  // packed sequence).
  template <class Piece>
  __device__ __forceinline__ static void write_o(const ConsumerThread& me, const KernelArgs& a, const Tile& tile,
                                                 Piece piece) {
    Elem* const o = static_cast<Elem*>(a.o);
    const int units_per_row = a.head_dim_v / 8;
    for (int u = me.tid; u < 64 * units_per_row; u += 128) {
      const int row = me.wg * 64 + u / units_per_row;
      const int col = (u % units_per_row) * 8;
      const OutRow r = out_row(tile, row, a);
      if (r.q_row < tile.q_len)
        *reinterpret_cast<uint4*>(o + int64_t(tile.b) * a.o_batch_stride + int64_t(r.h) * a.o_head_stride +
                                  int64_t(tile.q_start + r.q_row) * a.o_row_stride + col) = piece(row, col);
    }
  }

  __device__ __forceinline__ static void write_lse(const ConsumerThread& me, const KernelArgs& a, const Tile& tile,
                                                   const float (&lse)[2]) {
    if (a.lse == nullptr || (me.lane & 3) != 0) return;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const OutRow r = out_row(tile, me.tile_row + 8 * i, a);
      if (r.q_row < tile.q_len)
        a.lse[int64_t(tile.b) * a.lse_batch_stride + int64_t(r.h) * a.lse_head_stride + tile.q_start + r.q_row] =
            lse[i];
    }
  }

  // Epilogue of one warpgroup's 64 rows: normalise O, stage it in shared
  // memory (chunked like V), then write its rows and their LSE.
  __device__ __forceinline__ static void store_tile(const ConsumerThread& me, const KernelArgs& a, const Tile& tile,
                                                    const SmemTiles& tiles, const float (&o)[kDV / 2], Softmax& st) {
    uint8_t* o_stage = tiles.o_stage;
    float lse[2], normalise[2];
    st.finish(a, lse, normalise);
#pragma unroll
    for (int j = 0; j < kDV / 8; ++j) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint32_t v = pack(o[4 * j + 2 * r] * normalise[r], o[4 * j + 2 * r + 1] * normalise[r]);
        *reinterpret_cast<uint32_t*>(o_stage + o_stage_offset(me.tile_row + r * 8, 8 * j + me.quad_col)) = v;
      }
    }
    named_barrier_sync(1 + me.wg, 128);
    write_o(me, a, tile, [&](int row, int col) {
      return *reinterpret_cast<const uint4*>(o_stage + o_stage_offset(row, col));
    });
    write_lse(me, a, tile, lse);
    named_barrier_sync(1 + me.wg, 128);  // staging reads done before the next tile rewrites it
  }

  // A tile whose rows see no key: O = 0 and LSE = -inf, written straight to
  // global memory. Such a tile takes no Q buffer (the producer loads none for
  // it), and with kOReusesQ the staging tile is Q's buffer, which the
  // producer may already be filling with the next tile's Q.
  __device__ __forceinline__ static void store_empty_tile(const ConsumerThread& me, const KernelArgs& a,
                                                          const Tile& tile) {
    write_o(me, a, tile, [](int, int) { return make_uint4(0u, 0u, 0u, 0u); });
    const float lse[2] = {-INFINITY, -INFINITY};
    write_lse(me, a, tile, lse);
  }

  __device__ __forceinline__ static void consume(int wg, const KernelArgs& a, uint8_t* smem, Barriers& bars) {
    ConsumerThread me;
    me.wg = wg;
    me.tid = threadIdx.x & 127;
    me.lane = me.tid & 31;
    me.tile_row = wg * 64 + (me.tid / 32) * 16 + me.lane / 4;
    me.quad_col = (me.lane % 4) * 2;
    SmemTiles tiles;
    tiles.q = smem_addr(smem + Cfg::kQOffset);
    tiles.k = smem_addr(smem + Cfg::kKOffset);
    tiles.v = smem_addr(smem + Cfg::kVOffset);
    tiles.o_stage = smem + Cfg::kOOffset;
    Scheduler sched;
    Tile tile;
    Ring k_ring, v_ring;
    uint32_t q_phase = 0;
    const bool dynamic = a.tile_counter != nullptr;
    int64_t t = int64_t(blockIdx.x) - gridDim.x;
    for (TileSlot slot;; ++slot) {
      if (dynamic) {
        mbar_wait(smem_addr(&bars.tile_full[slot.index]), slot.phase);
        // Read by every thread, made visibly warp-uniform so the compiler
        // keeps the wgmma sequence below on a convergent path.
        t = __shfl_sync(0xffffffffu, bars.tile_index[slot.index], 0);
        mbar_arrive(smem_addr(&bars.tile_empty[slot.index]));
      } else {
        t += gridDim.x;  // round-robin: known without the producer
      }
      if (!sched.decode(t, a, tile)) break;
      if (tile.n_begin >= tile.n_end) {
        store_empty_tile(me, a, tile);
        continue;
      }
      float o[kDV / 2];
#pragma unroll
      for (int i = 0; i < kDV / 2; ++i) o[i] = 0.f;
      Softmax st;
      const Mask mask(tile, me.tile_row, me.quad_col, a);
      if constexpr (kPacked) {
        int n_begin = tile.n_begin, n_end = tile.n_end;
        if (a.warpgroup_key_ranges) Scheduler::warpgroup_blocks(tile, wg, a, n_begin, n_end);
        mbar_wait(smem_addr(&bars.q_full), q_phase);
        skip_blocks(tile.n_end - n_end, bars, k_ring, v_ring);
        if (n_begin < n_end)  // rows of several sequences: every block masked
          mainloop(wg, a, n_begin, n_end, kernels::KeySpan{0, 0}, tiles, bars, k_ring, v_ring, mask, o, st);
        else if (!Cfg::kOReusesQ)
          mbar_arrive(smem_addr(&bars.q_empty));
        skip_blocks(n_begin - tile.n_begin, bars, k_ring, v_ring);
      } else {
        // Keys every row of this warpgroup sees: both bounds grow with the row.
        const int first = tile.m_block * kBlockM + wg * 64;
        const int wl = kRowBounds ? a.window_left : -1, wr = kRowBounds ? a.window_right : -1;
        const kernels::KeySpan unmasked{kernels::visible_keys(first + 63, tile.q_len, tile.k_len, wl, wr).begin,
                                        kernels::visible_keys(first, tile.q_len, tile.k_len, wl, wr).end};
        mbar_wait(smem_addr(&bars.q_full), q_phase);
        mainloop(wg, a, tile.n_begin, tile.n_end, unmasked, tiles, bars, k_ring, v_ring, mask, o, st);
      }
      store_tile(me, a, tile, tiles, o, st);
      if constexpr (Cfg::kOReusesQ) {
        fence_proxy_async();  // our generic writes precede the next Q TMA into this space
        mbar_arrive(smem_addr(&bars.q_empty));
      }
      q_phase ^= 1;
    }
  }
};

template <class Cfg, bool kPacked, bool kRowBounds, bool kSoftcap>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    fwd_kernel(const __grid_constant__ CUtensorMap tmap_q, const __grid_constant__ CUtensorMap tmap_k,
               const __grid_constant__ CUtensorMap tmap_v, const KernelArgs args) {
  using K = Kernel<Cfg, kPacked, kRowBounds, kSoftcap>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + Cfg::kAlign - 1) &
                                             ~uintptr_t(Cfg::kAlign - 1));
  auto& bars = *reinterpret_cast<typename K::Barriers*>(smem + Cfg::kBarrierOffset);
  if (threadIdx.x == 0) {
    mbar_init(smem_addr(&bars.q_full), 1);
    mbar_init(smem_addr(&bars.q_empty), Cfg::kConsumerThreads);
    for (int s = 0; s < Cfg::kStages; ++s) {
      mbar_init(smem_addr(&bars.k_full[s]), 1);
      mbar_init(smem_addr(&bars.v_full[s]), 1);
      mbar_init(smem_addr(&bars.k_empty[s]), Cfg::kConsumerThreads);
      mbar_init(smem_addr(&bars.v_empty[s]), Cfg::kConsumerThreads);
    }
    for (int i = 0; i < 2; ++i) {
      mbar_init(smem_addr(&bars.tile_full[i]), 1);
      mbar_init(smem_addr(&bars.tile_empty[i]), Cfg::kConsumerThreads);
    }
    fence_barrier_init();
  }
  __syncthreads();

  // Read from lane 0, the warpgroup index is warp-uniform to ptxas as well:
  // what derives from it (the Q descriptors) then lives in uniform registers
  // instead of being moved there before every wgmma.
  const int wg = __shfl_sync(0xffffffffu, int(threadIdx.x / 128), 0);
  if (wg == 0) {
    regs_lower<K::kProducerRegs>();
    if (threadIdx.x < 32) K::produce(&tmap_q, &tmap_k, &tmap_v, args, smem, bars);
  } else {
    regs_raise<K::kConsumerRegs>();
    K::consume(wg - 1, args, smem, bars);
  }
}

}  // namespace vflash::hopper
