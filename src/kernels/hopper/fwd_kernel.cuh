// The sm_90a attention forward kernel: warp-specialised, persistent.
//
// One CTA = 1 producer + 2 or 3 consumer warpgroups (Config). One producer
// warp takes tile indices (round-robin, or from a global counter when tiles
// differ in cost), publishes each to the consumers, and issues TMA loads of
// the Q tile (64 rows per consumer warpgroup) and of K and V tiles into two
// kStages-deep shared-memory rings, each slot completing on an mbarrier.
// Each consumer warpgroup owns 64 query rows: S = Q K^T with wgmma (both
// operands in shared memory), online softmax in fp32 with exp2, O += P V with
// wgmma (P from registers); with two consumer warpgroups, block n's softmax
// overlaps block n+1's PV. Consumers release K after its QK^T and V after its
// PV through "empty" mbarriers. The epilogue stages O through shared memory
// and writes 16-byte rows, masked at the sequence end so a tile never touches
// the next packed sequence.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "config.cuh"
#include "ptx.cuh"
#include "wgmma_ops.cuh"

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

template <class Cfg>
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
  using Scheduler = TileScheduler<kBlockM, kBlockN>;

  // setmaxnreg moves registers within the CTA's launch allocation
  // (__launch_bounds__(kThreads, 1)): what the producer warpgroup gives up
  // must cover what the consumer warpgroups take, or the consumers'
  // setmaxnreg.inc waits forever. Consumers take the most that fits.
  static constexpr int kLaunchRegs = 65536 / Cfg::kThreads / 8 * 8;
  // 32 for the producer leaves consumers 232 (two warpgroups) or 160 (three).
  // The producer warp still spills a few tile-level values to local memory
  // (never in the consumers' loop); 24 spilled more and measured slower.
  static constexpr int kProducerRegs = 32;
  static constexpr int kConsumerRegs = std::min(
      240, kLaunchRegs + (kLaunchRegs - kProducerRegs) * Cfg::kProducerThreads / Cfg::kConsumerThreads / 8 * 8);
  static_assert((kLaunchRegs - kProducerRegs) * Cfg::kProducerThreads >=
                    (kConsumerRegs - kLaunchRegs) * Cfg::kConsumerThreads,
                "register reallocation exceeds the CTA's allocation");
  // Overlapping block n's softmax with block n+1's PV keeps S, P and O live
  // together; that needs about 80 registers of headroom for the rest.
  static constexpr bool kOverlap = kDV / 2 + kBlockN / 2 + kBlockN / 4 <= kConsumerRegs - 72;

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

  __device__ __forceinline__ static void issue_qk(float (&sc)[kBlockN / 2], uint32_t q_smem, uint32_t k_tile, int wg) {
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {
      const int c = kk * 16 / kQkChunk, within = (kk * 16) % kQkChunk;
      const uint64_t da =
          make_smem_desc(q_smem + c * kBlockM * kQkSwz + wg * 64 * kQkSwz + within * 2, 16, 8 * kQkSwz, kQkSwz);
      const uint64_t db = make_smem_desc(k_tile + c * kBlockN * kQkSwz + within * 2, 16, 8 * kQkSwz, kQkSwz);
      wgmma_ss<kBlockN, Cfg::kDType>(sc, da, db, kk > 0);
    }
  }

  __device__ __forceinline__ static void issue_pv(float (&o)[kDV / 2], const uint32_t (&p)[kBlockN / 16][4], uint32_t v_tile) {
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint64_t db = make_smem_desc(v_tile + kk * 16 * kVSwz, kBlockN * kVSwz, 8 * kVSwz, kVSwz);
      wgmma_rs<kDV, Cfg::kDType>(o, p[kk], db, 1);
    }
  }

  // Query rows and key columns of one consumer thread's accumulator entries,
  // and the call's masking state.
  struct RowState {
    int my_row0;  // sequence row of accumulator rows (i & 2) == 0; +8 for the others
    int quad_col;
    int r0;       // first row of the tile
    int diag;     // k_len - q_len: bottom-right alignment
    int k_len;
    float row_max[2];
    float row_sum[2];  // this thread's partial sums; reduced over the quad at the end
  };

  // Softcap, mask, and the online-softmax update for key block n. Leaves
  // exp2 of the scores in `sc` and returns the factor by which O must be
  // rescaled for each of the thread's two rows.
  __device__ __forceinline__ static void softmax_block(float (&sc)[kBlockN / 2], int n, const KernelArgs& a, RowState& st,
                                       float (&rescale)[2]) {
    const float sl2 = a.score_scale_log2;
    if (a.softcap_in != 0.f) {
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i) sc[i] = a.softcap_out * tanhf(sc[i] * a.softcap_in);
    }
    const int key0 = n * kBlockN;
    const bool edge = key0 + kBlockN > st.k_len ||
                      (a.window_right >= 0 && key0 + kBlockN - 1 > st.r0 + st.diag + a.window_right) ||
                      (a.window_left >= 0 && key0 < st.r0 + kBlockM - 1 + st.diag - a.window_left);
    if (edge) {
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i) {
        const int key = key0 + (i / 4) * 8 + st.quad_col + (i & 1);
        const int row = st.my_row0 + ((i & 2) ? 8 : 0);
        bool visible = key < st.k_len;
        if (a.window_right >= 0) visible = visible && key <= row + st.diag + a.window_right;
        if (a.window_left >= 0) visible = visible && key >= row + st.diag - a.window_left;
        if (!visible) sc[i] = -INFINITY;
      }
    }
    float part[2][kChains];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < kChains; ++j) part[r][j] = -INFINITY;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) part[(i >> 1) & 1][chain(i)] = fmaxf(part[(i >> 1) & 1][chain(i)], sc[i]);
    float blk_max[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      blk_max[r] = part[r][0];
#pragma unroll
      for (int j = 1; j < kChains; ++j) blk_max[r] = fmaxf(blk_max[r], part[r][j]);
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      blk_max[r] = fmaxf(blk_max[r], __shfl_xor_sync(0xffffffffu, blk_max[r], 1));
      blk_max[r] = fmaxf(blk_max[r], __shfl_xor_sync(0xffffffffu, blk_max[r], 2));
      const float new_max = fmaxf(st.row_max[r], blk_max[r]);
      // A row that has seen no visible key yet keeps max -inf; exponents
      // are then taken against 0 so they stay 0 rather than NaN.
      base[r] = new_max == -INFINITY ? 0.f : new_max * sl2;
      rescale[r] = fast_exp2(st.row_max[r] * sl2 - base[r]);
      st.row_max[r] = new_max;
      st.row_sum[r] *= rescale[r];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < kChains; ++j) part[r][j] = 0.f;
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int r = (i >> 1) & 1;
      sc[i] = fast_exp2(fmaf(sc[i], sl2, -base[r]));
      part[r][chain(i)] += sc[i];
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int j = 0; j < kChains; ++j) st.row_sum[r] += part[r][j];
  }

  // Row max and sum of a block run as kChains independent chains per row.
  // With the overlap the softmax sits on the issuing warpgroup's critical
  // path, where one serial chain over a row's kBlockN / 4 entries is
  // latency-bound; otherwise the other warpgroups fill that latency and the
  // fewer instructions of one chain measured faster (docs/perf.md).
  static constexpr int kChains = kOverlap ? 4 : 1;
  // Which chain accumulator entry i feeds (entries i and i ^ 2 belong to the
  // thread's two rows).
  __device__ __forceinline__ static constexpr int chain(int i) {
    return kChains == 1 ? 0 : (i & 1) | ((i >> 1) & 2);
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

  __device__ __forceinline__ static void consume(int wg, const KernelArgs& a, uint8_t* smem, Barriers& bars) {
    const int tid = threadIdx.x & 127;  // thread within the warpgroup
    const int warp = tid / 32;
    const int lane = tid & 31;
    const int quad_row = lane / 4;  // row within the warp's 16 rows (and +8)
    const int quad_col = (lane % 4) * 2;
    const uint32_t q_smem = smem_addr(smem + Cfg::kQOffset);
    const uint32_t k_smem = smem_addr(smem + Cfg::kKOffset);
    const uint32_t v_smem = smem_addr(smem + Cfg::kVOffset);
    uint8_t* o_stage = smem + Cfg::kOOffset;
    Elem* const o_base = static_cast<Elem*>(a.o);
    const float sl2 = a.score_scale_log2;

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
      float o[kDV / 2];
#pragma unroll
      for (int i = 0; i < kDV / 2; ++i) o[i] = 0.f;
      RowState st;
      st.r0 = tile.m_block * kBlockM;
      st.my_row0 = st.r0 + wg * 64 + warp * 16 + quad_row;
      st.quad_col = quad_col;
      st.diag = tile.k_len - tile.q_len;
      st.k_len = tile.k_len;
      st.row_max[0] = st.row_max[1] = -INFINITY;
      st.row_sum[0] = st.row_sum[1] = 0.f;
      const int r0 = st.r0;
      const int my_row0 = st.my_row0;
      const bool any_key = tile.n_begin < tile.n_end;

      if (any_key) {
        float sc[kBlockN / 2];
        uint32_t p[kBlockN / 16][4];
        float rescale[2];
        mbar_wait(smem_addr(&bars.q_full), q_phase);
        // Key blocks run last first. S_n = Q K_n^T is issued together with
        // O += P_{n+1} V_{n+1} when S, P and O fit in registers together
        // (kOverlap), so block n's softmax runs while that PV executes;
        // otherwise each block's GEMMs and softmax run in sequence and only
        // the other warpgroup fills the gaps.
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
          if (!Cfg::kOReusesQ && n == tile.n_begin) mbar_arrive(smem_addr(&bars.q_empty));
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
        if constexpr (kOverlap) {
          int n = tile.n_end - 1;
          qk(n);
          wgmma_wait<0>();
          qk_done(n);
          softmax_block(sc, n, a, st, rescale);
          to_p(sc, p);
          // O takes block n+1's rescale while QK^T of block n runs, just
          // before the PV that accumulates into it.
          for (--n; n >= tile.n_begin; --n) {
            qk(n);
            rescale_o(o, rescale);
            pv();
            wgmma_wait<1>();
            qk_done(n);
            softmax_block(sc, n, a, st, rescale);
            wgmma_wait<0>();
            pv_done();
            to_p(sc, p);
          }
          rescale_o(o, rescale);
          pv();
          wgmma_wait<0>();
          pv_done();
        } else {
          for (int n = tile.n_end - 1; n >= tile.n_begin; --n) {
            qk(n);
            wgmma_wait<0>();
            qk_done(n);
            softmax_block(sc, n, a, st, rescale);
            rescale_o(o, rescale);
            to_p(sc, p);
            pv();
            wgmma_wait<0>();
            pv_done();
          }
        }
      }

      // ---- epilogue: normalise, stage O in shared memory, write rows < q_len
      float lse[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        st.row_sum[r] += __shfl_xor_sync(0xffffffffu, st.row_sum[r], 1);
        st.row_sum[r] += __shfl_xor_sync(0xffffffffu, st.row_sum[r], 2);
        const bool seen = st.row_sum[r] > 0.f;
        lse[r] = seen ? (st.row_max[r] * sl2 + __log2f(st.row_sum[r])) * 0.6931471805599453f : -INFINITY;
        st.row_sum[r] = seen ? 1.f / st.row_sum[r] : 0.f;
      }
#pragma unroll
      for (int j = 0; j < kDV / 8; ++j) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int row = wg * 64 + warp * 16 + quad_row + r * 8;
          const uint32_t v = pack(o[4 * j + 2 * r] * st.row_sum[r], o[4 * j + 2 * r + 1] * st.row_sum[r]);
          *reinterpret_cast<uint32_t*>(o_stage + o_stage_offset(row, 8 * j + quad_col)) = v;
        }
      }
      named_barrier_sync(1 + wg, 128);
      const int units_per_row = a.head_dim_v / 8;  // 16-byte units
      const int64_t head_off = int64_t(tile.b) * a.o_batch_stride + int64_t(tile.h) * a.o_head_stride;
      for (int u = tid; u < 64 * units_per_row; u += 128) {
        const int row = u / units_per_row;
        const int col = (u % units_per_row) * 8;
        const int q_row = r0 + wg * 64 + row;
        if (q_row < tile.q_len) {
          const uint4 v = *reinterpret_cast<const uint4*>(o_stage + o_stage_offset(wg * 64 + row, col));
          *reinterpret_cast<uint4*>(o_base + head_off + int64_t(tile.q_start + q_row) * a.o_row_stride + col) = v;
        }
      }
      if (a.lse != nullptr && (lane & 3) == 0) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int q_row = my_row0 + r * 8;
          if (q_row < tile.q_len)
            a.lse[int64_t(tile.b) * a.lse_batch_stride + int64_t(tile.h) * a.lse_head_stride + tile.q_start + q_row] =
                lse[r];
        }
      }
      named_barrier_sync(1 + wg, 128);  // staging reads done before the next tile rewrites it
      if (any_key) {
        if constexpr (Cfg::kOReusesQ) {
          fence_proxy_async();  // our generic writes precede the next Q TMA into this space
          mbar_arrive(smem_addr(&bars.q_empty));
        }
        q_phase ^= 1;
      }
    }
  }
};

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    fwd_kernel(const __grid_constant__ CUtensorMap tmap_q, const __grid_constant__ CUtensorMap tmap_k,
               const __grid_constant__ CUtensorMap tmap_v, const KernelArgs args) {
  using K = Kernel<Cfg>;
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

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    regs_lower<K::kProducerRegs>();
    if (threadIdx.x < 32) K::produce(&tmap_q, &tmap_k, &tmap_v, args, smem, bars);
  } else {
    regs_raise<K::kConsumerRegs>();
    K::consume(wg - 1, args, smem, bars);
  }
}

}  // namespace vflash::hopper
