// Host side of one Hopper kernel instantiation: builds the TMA tensor maps
// for the call (no allocation, no synchronisation) and launches the
// persistent grid on the caller's stream.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "fwd_kernel.cuh"
#include "kernels/common/score_constants.hpp"
#include "per_device.hpp"
#include "tensor_map.hpp"

namespace vflash::hopper {

template <class Cfg>
const void* kernel_symbol() {
  return reinterpret_cast<const void*>(&fwd_kernel<Cfg, false, false, false>);
}

template <class Cfg, bool kPacked, bool kRowBounds, bool kSoftcap>
int launch_grid(int64_t tiles, int device, const CUtensorMap& tq, const CUtensorMap& tk, const CUtensorMap& tv,
                const KernelArgs& a, cudaStream_t stream) {
  // The kernel's shared-memory attribute and the SM count, set up once per
  // device (the call's device is current).
  static PerDevice sm_count;
  int sms = 0;
  if (int e = sm_count.get(device, &sms,
                           [](int dev, int* value) {
                             cudaError_t err =
                                 cudaFuncSetAttribute(fwd_kernel<Cfg, kPacked, kRowBounds, kSoftcap>,
                                                      cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
                             if (err == cudaSuccess)
                               err = cudaDeviceGetAttribute(value, cudaDevAttrMultiProcessorCount, dev);
                             return int(err);
                           });
      e != cudaSuccess)
    return e;
  // CTAs past the real tile count exit at once.
  const int grid = int(std::max<int64_t>(1, std::min<int64_t>(tiles, sms)));
  fwd_kernel<Cfg, kPacked, kRowBounds, kSoftcap><<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(tq, tk, tv, a);
  return cudaGetLastError();
}

// One launch of fwd_kernel<Cfg, kPacked, kRowBounds, kSoftcap> for the call.
template <class Cfg, bool kPacked>
int launch_tiles(const FwdParams& p) {
  const bool dense = !p.is_varlen();
  const int64_t q_rows = dense ? p.seqlen_q : p.total_q;
  const int64_t k_rows = dense ? p.seqlen_k : p.total_k;
  if (q_rows == 0 || p.batch == 0) return cudaSuccess;  // nothing to compute

  const CUtensorMapDataType type =
      Cfg::kDType == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const int batches = dense ? p.batch : 1;
  const int heads_per_kv = p.heads_q / p.heads_k;
  const int64_t max_q = dense ? p.seqlen_q : p.max_seqlen_q;
  const int pack = kPacked ? stacked_heads(heads_per_kv, Cfg::kBlockM) : 1;
  CUtensorMap tq, tk, tv;
  int err = encode_head_tensor(&tq, type, p.q, p.head_dim, p.heads_q, q_rows, batches, p.q_head_stride,
                               p.q_row_stride, p.q_batch_stride, Cfg::kQkChunk, pack, Cfg::kBlockM / pack);
  if (err == cudaSuccess)
    err = encode_head_tensor(&tk, type, p.k, p.head_dim, p.heads_k, std::max<int64_t>(k_rows, 1), batches,
                             p.k_head_stride, p.k_row_stride, p.k_batch_stride, Cfg::kQkChunk, 1, Cfg::kBlockN);
  if (err == cudaSuccess)
    err = encode_head_tensor(&tv, type, p.v, p.head_dim_v, p.heads_k, std::max<int64_t>(k_rows, 1), batches,
                             p.v_head_stride, p.v_row_stride, p.v_batch_stride, Cfg::kVChunk, 1, Cfg::kBlockN);
  if (err != cudaSuccess) return err;
  // The epilogue writes 16-byte pieces of O rows.
  if (reinterpret_cast<uintptr_t>(p.o) % 16 != 0 || p.o_row_stride % 8 != 0 || p.o_head_stride % 8 != 0 ||
      p.o_batch_stride % 8 != 0)
    return cudaErrorInvalidValue;

  KernelArgs a{};
  a.o = p.o;
  a.lse = p.lse;
  a.o_batch_stride = p.o_batch_stride;
  a.o_row_stride = p.o_row_stride;
  a.o_head_stride = p.o_head_stride;
  a.lse_batch_stride = p.lse_batch_stride;
  a.lse_head_stride = p.lse_head_stride;
  a.cu_seqlens_q = p.cu_seqlens_q;
  a.cu_seqlens_k = p.cu_seqlens_k;
  a.seqlen_q = p.seqlen_q;
  a.seqlen_k = p.seqlen_k;
  a.batch = p.batch;
  a.heads_q = p.heads_q;
  a.heads_per_kv = heads_per_kv;
  a.pack = pack;
  a.warpgroup_key_ranges = kPacked && 64 / pack >= max_q;
  a.head_dim_v = p.head_dim_v;
  a.window_left = p.window_left;
  a.window_right = p.window_right;
  const kernels::ScoreConstants score = kernels::score_constants(p);
  a.score_scale_log2 = score.exp2_scale;
  a.softcap_in = score.softcap_in;
  a.softcap_out = score.softcap_out;

  // With causal or windowed masks the query blocks of a head differ in cost:
  // heads whose K/V fit in about half the L2 then interleave their tiles, so
  // the longest go first while the tiles running at once share K/V in L2 (a
  // group holds whole KV heads). Unmasked, every block costs the same and one
  // head at a time keeps the fewest K/V bytes live.
  constexpr int64_t kL2Budget = 24 << 20;
  const int64_t max_k = dense ? p.seqlen_k : p.max_seqlen_k;
  const int64_t kv_head_bytes = std::max<int64_t>(1, max_k * (p.head_dim + p.head_dim_v) * 2);
  const bool uneven = p.window_left >= 0 || p.window_right >= 0;
  const int64_t kv_heads = uneven ? std::clamp<int64_t>(kL2Budget / kv_head_bytes, 1, p.heads_k) : 1;
  a.head_group = int(kv_heads * a.heads_per_kv);
  // Tiles of unequal cost (masks, or varlen) are handed out dynamically from
  // a counter in the caller's workspace (workspace_bytes in hopper_kernels.cu);
  // equal dense tiles go round-robin, which is faster for them
  // (docs/tuning.md).
  a.tile_counter = nullptr;
  if (uneven || !dense) {
    a.tile_counter = static_cast<int*>(p.workspace);
    if (int e = cudaMemsetAsync(a.tile_counter, 0, sizeof(int), static_cast<cudaStream_t>(p.stream)); e != cudaSuccess)
      return e;
  }

  int device = p.device;
  if (device < 0 && cudaGetDevice(&device) != cudaSuccess) return cudaErrorInvalidDevice;
  const auto stream = static_cast<cudaStream_t>(p.stream);
  // Upper bounds of the tile count.
  const int64_t tokens = Cfg::kBlockM / pack;
  const int64_t tiles = kPacked ? (q_rows + tokens - 1) / tokens * (p.heads_q / pack)
                                : int64_t(p.batch) * p.heads_q * ((max_q + Cfg::kBlockM - 1) / Cfg::kBlockM);
  // Unpacked tiles with a causal mask or a window take the kernel that
  // carries the per-row mask (packed tiles mask by row ranges either way).
  const bool softcap = p.softcap > 0.f;
  if constexpr (!kPacked) {
    if (uneven)
      return softcap ? launch_grid<Cfg, false, true, true>(tiles, device, tq, tk, tv, a, stream)
                     : launch_grid<Cfg, false, true, false>(tiles, device, tq, tk, tv, a, stream);
  }
  return softcap ? launch_grid<Cfg, kPacked, false, true>(tiles, device, tq, tk, tv, a, stream)
                 : launch_grid<Cfg, kPacked, false, false>(tiles, device, tq, tk, tv, a, stream);
}

// Packed tiles run with short key blocks (PackedConfig): their sequences'
// keys rarely fill a long one.
template <class Cfg>
int launch_fwd(const FwdParams& p) {
  if (packs_sequences(p, Cfg::kBlockM)) return launch_tiles<PackedConfig<Cfg>, true>(p);
  return launch_tiles<Cfg, false>(p);
}

}  // namespace vflash::hopper
