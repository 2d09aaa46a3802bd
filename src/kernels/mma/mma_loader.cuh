// Loads of the mma kernel: one tile's Q, K and V from global into shared
// memory by cp.async (zero-filled past the rows and head dims the call has).
#pragma once

#include <cuda_runtime.h>

#include <bit>
#include <cstdint>

#include "kernels/mma/mma_ptx.cuh"
#include "kernels/mma/mma_tile.cuh"
#include "params.hpp"

namespace vflash::mma {

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
template <class T, int kRows, bool kStacked = false>
__device__ __forceinline__ void copy_tile(uint32_t s_base, const typename T::Element* g, int64_t row_stride,
                                          int rows_valid, int chunks_data, int stacked = 1,
                                          int64_t head_stride = 0) {
  using Elem = typename T::Element;
  constexpr int kPitch = T::kPitch, kChunks = T::kChunks, kThreads = T::kThreads;
  constexpr uint32_t kRowBytes = T::kRowBytes;
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

// The Q, K and V loads of a tile T (FwdTile) into the kernel's buffers: Q at
// sQ, stage i of K and V at sK / sV + i * kKVBytes.
template <class T>
struct Loader {
  using View = TileView<typename T::Element, T::kBlockM>;
  const FwdParams& p;
  const FwdArgs& args;
  uint32_t sQ, sK, sV;
  int q_chunks, v_chunks;  // 16-byte chunks of the call's d and d_v (the rest reads zero)

  __device__ __forceinline__ void q(const View& view) const {
    if (args.stacked_heads > 1)
      copy_tile<T, T::kBlockM, true>(sQ, view.q(p), p.q_row_stride, view.rows_valid, q_chunks, args.stacked_heads,
                                     p.q_head_stride);
    else
      copy_tile<T, T::kBlockM>(sQ, view.q(p), p.q_row_stride, view.rows_valid, q_chunks);
  }
  // K or V of key block nb of a tile into a stage.
  __device__ __forceinline__ void k(const View& view, int nb, int stage) const {
    const int n0 = nb * T::kKeys;
    copy_tile<T, T::kKeys>(sK + stage * T::kKVBytes, view.k(p) + n0 * p.k_row_stride, p.k_row_stride,
                           view.g.seqlen_k - n0, q_chunks);
  }
  __device__ __forceinline__ void v(const View& view, int nb, int stage) const {
    const int n0 = nb * T::kKeys;
    copy_tile<T, T::kKeys>(sV + stage * T::kKVBytes, view.v(p) + n0 * p.v_row_stride, p.v_row_stride,
                           view.g.seqlen_k - n0, v_chunks);
  }
  // What a tile's first block needs before its top barrier: K and V, or with
  // one stage K only (its V loads at that barrier).
  __device__ __forceinline__ void first(const View& view, int stage) const {
    if (view.g.nb_end == view.g.nb_first) return;
    k(view, view.g.nb_end - 1, stage);
    if constexpr (T::kStages == 2) v(view, view.g.nb_end - 1, stage);
  }
};

// The loads that overlap a tile's key blocks, in the kernel's pipeline
// (mma_fwd.cuh): this tile's next block, and at its last block the next
// tile's Q and first block. has_next(): whether there is a next tile (read
// after the barrier that publishes it); next_view(): its view.
template <class T, class HasNext, class NextView>
struct BlockLoads {
  using View = TileView<typename T::Element, T::kBlockM>;
  Loader<T> load;  // by value: held by reference, the loop's code grew (ptxas)
  View cur;
  HasNext has_next;
  NextView next_view;

  // A tile without visible keys: the next tile's Q and first block, at once.
  __device__ __forceinline__ void keyless(int stage) const {
    cp_async_wait<0>();
    __syncthreads();
    if (has_next()) {
      const View nxt = next_view();
      load.q(nxt);
      load.first(nxt, stage);
    }
    cp_async_commit();
  }
  // At block nb's top barrier. Two stages: the next block (at the tile's
  // last block, the next tile's first) into the other stage. One stage: this
  // block's V.
  __device__ __forceinline__ void at_top(int nb, int nb_first, int stage) const {
    if constexpr (T::kStages == 2) {
      if (nb > nb_first) {
        load.k(cur, nb - 1, stage ^ 1);
        load.v(cur, nb - 1, stage ^ 1);
      } else if (has_next()) {
        load.first(next_view(), stage ^ 1);
      }
    } else {
      load.v(cur, nb, 0);
    }
    cp_async_commit();
  }
  // Every warp is done with Q at a tile's last block: the next tile's Q may load.
  __device__ __forceinline__ void next_q() const {
    __syncthreads();
    if (has_next()) load.q(next_view());
    cp_async_commit();
  }
  // One stage, after Q*K^T: V of this block lands; every warp is done with K
  // (and at a tile's last block with Q), which take the next block's.
  __device__ __forceinline__ void next_k(int nb, int nb_first) const {
    cp_async_wait<0>();
    __syncthreads();
    if (nb > nb_first) {
      load.k(cur, nb - 1, 0);
    } else if (has_next()) {
      const View nxt = next_view();
      load.q(nxt);
      load.first(nxt, 0);
    }
    cp_async_commit();
  }
};

template <class T, class HasNext, class NextView>
__device__ __forceinline__ BlockLoads<T, HasNext, NextView> block_loads(
    const Loader<T>& load, const TileView<typename T::Element, T::kBlockM>& cur, HasNext has_next,
    NextView next_view) {
  return {load, cur, has_next, next_view};
}

}  // namespace vflash::mma
