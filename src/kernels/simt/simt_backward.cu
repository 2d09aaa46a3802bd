// Portable SIMT attention backward: plain CUDA cores, fp32 math, for every
// capability the SIMT forward runs on. Four steps on the call's stream:
//
//  1. row_dot_kernel: D = rowsum(dout * out) per (query row, head) into the
//     workspace; zeroes the fp32 dq sums (non-deterministic mode).
//  2. dkdv_kernel: one block per (key block of kBlockKeys keys, KV head,
//     sequence). K and V of the block are staged in shared memory as fp32;
//     for each query head of the KV head's group and each query row whose
//     visible keys meet the block, the block recomputes the row's scores and
//     probabilities P = exp(s - lse) and accumulates, in registers,
//         dV_j += P_j dO,   dK_j += dS_j q,   dS_j = P_j (dO.v_j - D) ds_j/d(q.k_j),
//     so dK and dV sum over the group without atomics. Non-deterministic
//     mode also adds dQ += sum_j dS_j k_j to the fp32 sums with atomics.
//  3. dq: dq_store_kernel converts the fp32 sums to the dtype; in
//     deterministic mode dq_kernel instead computes each query row's dQ in a
//     block per (query block, head, sequence) looping over the keys in order,
//     so results are bit-identical run to run.
//  4. zero_rows_past_end_kernel: rows past cu_seqlens_k[batch] of dk and dv
//     (and of dq in deterministic mode) get zero gradient.
//
// Eight consecutive lanes share one key (dkdv_kernel) or one query row
// (dq_kernel); lane l owns the columns l, l + 8, l + 16, ... of the head dims.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/common/visible_keys.cuh"
#include "kernels/simt/simt_backward.hpp"

namespace vflash {
namespace {

constexpr int kThreads = 128;
constexpr int kLanes = 8;                       // lanes per key / per query row
constexpr int kBlockKeys = kThreads / kLanes;   // keys per dkdv_kernel work item and per staged tile
constexpr int kBlockRows = kThreads / kLanes;   // query rows per dq_kernel work item
constexpr int kElementwiseThreads = 256;

template <typename T>
struct Element;
template <>
struct Element<__half> {
  static __device__ float to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
  static __device__ uint16_t from_float(float f) { return __half_as_ushort(__float2half_rn(f)); }
};
template <>
struct Element<__nv_bfloat16> {
  static __device__ float to_float(uint16_t bits) { return __bfloat162float(__ushort_as_bfloat16(bits)); }
  static __device__ uint16_t from_float(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
};

struct Sequence {
  int64_t q_start, k_start;  // first packed row of the sequence in q and k
  int len_q, len_k;
};

__device__ Sequence sequence_of(const FwdParams& p, int b) {
  return {p.cu_seqlens_q[b], p.cu_seqlens_k[b], p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b],
          p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b]};
}

__device__ kernels::KeySpan keys_of_row(const FwdParams& p, const Sequence& s, int row) {
  return kernels::visible_keys(row, s.len_q, s.len_k, p.window_left, p.window_right);
}

// Rows whose visible keys meet [key_begin, key_end): [first, last). Both ends
// of a row's key span grow with the row, so each bound is a binary search.
struct RowSpan {
  int first, last;
};
__device__ RowSpan rows_seeing(const FwdParams& p, const Sequence& s, int key_begin, int key_end) {
  int lo = 0, hi = s.len_q;  // first row whose span ends past key_begin
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (keys_of_row(p, s, mid).end > key_begin) hi = mid; else lo = mid + 1;
  }
  const int first = lo;
  hi = s.len_q;  // first row whose span begins at or past key_end
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (keys_of_row(p, s, mid).begin >= key_end) hi = mid; else lo = mid + 1;
  }
  return {first, lo};
}

// The score s of a dot product q.k and its derivative ds/d(q.k): s = scale *
// q.k, or with softcap s = softcap * tanh(scale * q.k / softcap).
struct Score {
  float value, slope;
};
__device__ Score score_of(float dot, float scale, float softcap) {
  if (softcap > 0.f) {
    const float t = tanhf(dot * (scale / softcap));
    return {softcap * t, scale * (1.f - t * t)};
  }
  return {dot * scale, scale};
}

// dS of one visible (row, key): P (dP - D) ds/d(q.k); 0 for a row without keys.
struct Gradient {
  float prob, dscore;
};
__device__ Gradient gradient_of(float qk, float dout_v, float lse, float row_dot, float scale, float softcap) {
  if (lse == -INFINITY) return {0.f, 0.f};
  const Score s = score_of(qk, scale, softcap);
  const float prob = expf(s.value - lse);
  return {prob, prob * (dout_v - row_dot) * s.slope};
}

// Sum over the kLanes lanes sharing a key or a row (all lanes of the warp call it).
__device__ float lane_group_sum(float x) {
#pragma unroll
  for (int offset = kLanes / 2; offset >= 1; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset, kLanes);
  return x;
}

// Stages rows [0, rows) of a (row, dim) 16-bit tensor slice as fp32 with row
// stride dim + 1; rows past valid_rows become zeros.
template <typename T>
__device__ void stage_rows(float* dst, const uint16_t* src, int64_t row_stride, int rows, int valid_rows, int dim) {
  for (int idx = threadIdx.x; idx < rows * dim; idx += kThreads) {
    const int r = idx / dim, c = idx - r * dim;
    dst[r * (dim + 1) + c] = r < valid_rows ? Element<T>::to_float(src[r * row_stride + c]) : 0.f;
  }
}

template <typename T>
__global__ void row_dot_kernel(const BwdParams b, float* row_dot, float* dq_accum) {
  const FwdParams& p = b.fwd;
  const auto* dout = static_cast<const uint16_t*>(b.dout);
  const auto* out = static_cast<const uint16_t*>(p.o);
  const int64_t count = p.total_q * p.heads_q;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < count;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = idx / p.heads_q;
    const int h = int(idx - row * p.heads_q);
    const uint16_t* g = dout + row * b.dout_row_stride + h * b.dout_head_stride;
    const uint16_t* o = out + row * p.o_row_stride + h * p.o_head_stride;
    float sum = 0.f;
    for (int c = 0; c < p.head_dim_v; ++c) sum = fmaf(Element<T>::to_float(g[c]), Element<T>::to_float(o[c]), sum);
    row_dot[h * p.total_q + row] = sum;
    if (dq_accum != nullptr)
      for (int c = 0; c < p.head_dim; ++c) dq_accum[idx * p.head_dim + c] = 0.f;
  }
}

// kDimMax bounds d and d_v: each lane owns kDimMax / kLanes columns of each.
template <typename T, int kDimMax>
__global__ void __launch_bounds__(kThreads, 1) dkdv_kernel(const BwdParams b, const float* row_dot, float* dq_accum,
                                                        int64_t tiles_per_head, int64_t total_tiles) {
  constexpr int kSlice = kDimMax / kLanes;
  extern __shared__ float smem[];
  const FwdParams& p = b.fwd;
  const int d = p.head_dim, dv = p.head_dim_v;
  float* k_tile = smem;                             // kBlockKeys x (d + 1)
  float* v_tile = k_tile + kBlockKeys * (d + 1);    // kBlockKeys x (dv + 1)
  float* q_row = v_tile + kBlockKeys * (dv + 1);    // d
  float* dout_row = q_row + d;                      // dv
  float* dscores = dout_row + dv;                   // kBlockKeys

  const int key_in_tile = threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  const int group = p.heads_q / p.heads_k;
  const auto* q = static_cast<const uint16_t*>(p.q);
  const auto* k = static_cast<const uint16_t*>(p.k);
  const auto* v = static_cast<const uint16_t*>(p.v);
  const auto* dout = static_cast<const uint16_t*>(b.dout);
  auto* dk = static_cast<uint16_t*>(b.dk);
  auto* dv_out = static_cast<uint16_t*>(b.dv);

  // Grid-stride over (key block, KV head, sequence): no grid dimension limit applies.
  for (int64_t work = blockIdx.x; work < total_tiles; work += gridDim.x) {
    const int tile = int(work % tiles_per_head);
    const int hk = int((work / tiles_per_head) % p.heads_k);
    const int bi = int(work / (tiles_per_head * p.heads_k));
    const Sequence s = sequence_of(p, bi);
    const int key0 = tile * kBlockKeys;
    if (key0 >= s.len_k) continue;  // block-uniform: no barrier is skipped by part of the block
    const int keys_here = min(kBlockKeys, s.len_k - key0);
    const int key = key0 + key_in_tile;

    __syncthreads();  // the previous work item's tiles are consumed
    stage_rows<T>(k_tile, k + (s.k_start + key0) * p.k_row_stride + hk * p.k_head_stride, p.k_row_stride,
                  kBlockKeys, keys_here, d);
    stage_rows<T>(v_tile, v + (s.k_start + key0) * p.v_row_stride + hk * p.v_head_stride, p.v_row_stride,
                  kBlockKeys, keys_here, dv);

    float dk_acc[kSlice], dv_acc[kSlice];
#pragma unroll
    for (int m = 0; m < kSlice; ++m) dk_acc[m] = dv_acc[m] = 0.f;

    const RowSpan rows = rows_seeing(p, s, key0, key0 + keys_here);
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
      for (int r = rows.first; r < rows.last; ++r) {
        const int64_t row = s.q_start + r;
        __syncthreads();  // the previous row's q, dout and scores are consumed (and the tiles staged)
        for (int c = threadIdx.x; c < d; c += kThreads)
          q_row[c] = Element<T>::to_float(q[row * p.q_row_stride + h * p.q_head_stride + c]);
        for (int c = threadIdx.x; c < dv; c += kThreads)
          dout_row[c] = Element<T>::to_float(dout[row * b.dout_row_stride + h * b.dout_head_stride + c]);
        __syncthreads();

        float qk = 0.f, dout_v = 0.f;
#pragma unroll
        for (int m = 0; m < kSlice; ++m) {
          const int c = lane + kLanes * m;
          if (c < d) qk = fmaf(q_row[c], k_tile[key_in_tile * (d + 1) + c], qk);
          if (c < dv) dout_v = fmaf(dout_row[c], v_tile[key_in_tile * (dv + 1) + c], dout_v);
        }
        qk = lane_group_sum(qk);
        dout_v = lane_group_sum(dout_v);
        const kernels::KeySpan span = keys_of_row(p, s, r);
        Gradient g{0.f, 0.f};
        if (key_in_tile < keys_here && key >= span.begin && key < span.end)
          g = gradient_of(qk, dout_v, p.lse[h * p.lse_head_stride + row], row_dot[h * p.total_q + row],
                          p.softmax_scale, p.softcap);
#pragma unroll
        for (int m = 0; m < kSlice; ++m) {
          const int c = lane + kLanes * m;
          if (c < dv) dv_acc[m] = fmaf(g.prob, dout_row[c], dv_acc[m]);
          if (c < d) dk_acc[m] = fmaf(g.dscore, q_row[c], dk_acc[m]);
        }
        if (dq_accum != nullptr) {  // uniform: the mode is the call's
          if (lane == 0) dscores[key_in_tile] = g.dscore;
          __syncthreads();
          float* acc = dq_accum + (row * p.heads_q + h) * d;
          for (int c = threadIdx.x; c < d; c += kThreads) {
            float sum = 0.f;
            for (int j = 0; j < keys_here; ++j) sum = fmaf(dscores[j], k_tile[j * (d + 1) + c], sum);
            atomicAdd(acc + c, sum);
          }
        }
      }
    }

    if (key_in_tile < keys_here) {
      uint16_t* dk_row = dk + (s.k_start + key) * b.dk_row_stride + hk * b.dk_head_stride;
      uint16_t* dv_row = dv_out + (s.k_start + key) * b.dv_row_stride + hk * b.dv_head_stride;
#pragma unroll
      for (int m = 0; m < kSlice; ++m) {
        const int c = lane + kLanes * m;
        if (c < d) dk_row[c] = Element<T>::from_float(dk_acc[m]);
        if (c < dv) dv_row[c] = Element<T>::from_float(dv_acc[m]);
      }
    }
  }
}

// Deterministic dq: one block per (query block, head, sequence); each row's
// dq sums its keys in key order.
template <typename T, int kDimMax>
__global__ void __launch_bounds__(kThreads, 1) dq_kernel(const BwdParams b, const float* row_dot, int64_t tiles_per_head,
                                                      int64_t total_tiles) {
  constexpr int kSlice = kDimMax / kLanes;
  extern __shared__ float smem[];
  const FwdParams& p = b.fwd;
  const int d = p.head_dim, dv = p.head_dim_v;
  float* k_tile = smem;                           // kBlockKeys x (d + 1)
  float* v_tile = k_tile + kBlockKeys * (d + 1);  // kBlockKeys x (dv + 1)

  const int row_in_tile = threadIdx.x / kLanes;
  const int lane = threadIdx.x % kLanes;
  const int group = p.heads_q / p.heads_k;
  const auto* q = static_cast<const uint16_t*>(p.q);
  const auto* k = static_cast<const uint16_t*>(p.k);
  const auto* v = static_cast<const uint16_t*>(p.v);
  const auto* dout = static_cast<const uint16_t*>(b.dout);
  auto* dq = static_cast<uint16_t*>(b.dq);

  for (int64_t work = blockIdx.x; work < total_tiles; work += gridDim.x) {
    const int tile = int(work % tiles_per_head);
    const int h = int((work / tiles_per_head) % p.heads_q);
    const int bi = int(work / (tiles_per_head * p.heads_q));
    const Sequence s = sequence_of(p, bi);
    const int row0 = tile * kBlockRows;
    if (row0 >= s.len_q) continue;  // block-uniform
    const int rows_here = min(kBlockRows, s.len_q - row0);
    const int hk = h / group;
    const int r = row0 + row_in_tile;
    const bool has_row = r < s.len_q;
    const int64_t row = s.q_start + r;

    float q_reg[kSlice], dout_reg[kSlice], dq_acc[kSlice];
#pragma unroll
    for (int m = 0; m < kSlice; ++m) {
      const int c = lane + kLanes * m;
      q_reg[m] = has_row && c < d ? Element<T>::to_float(q[row * p.q_row_stride + h * p.q_head_stride + c]) : 0.f;
      dout_reg[m] =
          has_row && c < dv ? Element<T>::to_float(dout[row * b.dout_row_stride + h * b.dout_head_stride + c]) : 0.f;
      dq_acc[m] = 0.f;
    }
    const float lse = has_row ? p.lse[h * p.lse_head_stride + row] : -INFINITY;
    const float dot = has_row ? row_dot[h * p.total_q + row] : 0.f;
    const kernels::KeySpan span = has_row ? keys_of_row(p, s, r) : kernels::KeySpan{0, 0};
    const kernels::KeySpan tile_keys =
        kernels::visible_keys(row0, row0 + rows_here - 1, s.len_q, s.len_k, p.window_left, p.window_right);

    for (int key0 = tile_keys.begin; key0 < tile_keys.end; key0 += kBlockKeys) {
      const int keys_here = min(kBlockKeys, s.len_k - key0);
      __syncthreads();  // the previous key tile (or work item) is consumed
      stage_rows<T>(k_tile, k + (s.k_start + key0) * p.k_row_stride + hk * p.k_head_stride, p.k_row_stride,
                    kBlockKeys, keys_here, d);
      stage_rows<T>(v_tile, v + (s.k_start + key0) * p.v_row_stride + hk * p.v_head_stride, p.v_row_stride,
                    kBlockKeys, keys_here, dv);
      __syncthreads();
      for (int j = 0; j < keys_here; ++j) {
        float qk = 0.f, dout_v = 0.f;
#pragma unroll
        for (int m = 0; m < kSlice; ++m) {
          const int c = lane + kLanes * m;
          if (c < d) qk = fmaf(q_reg[m], k_tile[j * (d + 1) + c], qk);
          if (c < dv) dout_v = fmaf(dout_reg[m], v_tile[j * (dv + 1) + c], dout_v);
        }
        qk = lane_group_sum(qk);
        dout_v = lane_group_sum(dout_v);
        const int key = key0 + j;
        if (key < span.begin || key >= span.end) continue;  // after the shuffles: every lane took part
        const float dscore = gradient_of(qk, dout_v, lse, dot, p.softmax_scale, p.softcap).dscore;
#pragma unroll
        for (int m = 0; m < kSlice; ++m) {
          const int c = lane + kLanes * m;
          if (c < d) dq_acc[m] = fmaf(dscore, k_tile[j * (d + 1) + c], dq_acc[m]);
        }
      }
    }
    if (has_row) {
      uint16_t* dq_row = dq + row * b.dq_row_stride + h * b.dq_head_stride;
#pragma unroll
      for (int m = 0; m < kSlice; ++m) {
        const int c = lane + kLanes * m;
        if (c < d) dq_row[c] = Element<T>::from_float(dq_acc[m]);
      }
    }
  }
}

template <typename T>
__global__ void dq_store_kernel(const BwdParams b, const float* dq_accum) {
  const FwdParams& p = b.fwd;
  auto* dq = static_cast<uint16_t*>(b.dq);
  const int64_t per_row = int64_t(p.heads_q) * p.head_dim;
  const int64_t count = p.total_q * per_row;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < count;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = idx / per_row;
    const int64_t rest = idx - row * per_row;
    const int h = int(rest / p.head_dim);
    const int c = int(rest - int64_t(h) * p.head_dim);
    dq[row * b.dq_row_stride + h * b.dq_head_stride + c] = Element<T>::from_float(dq_accum[idx]);
  }
}

// Rows past the last sequence (read from cu_seqlens on the device) get zero
// gradient: dk and dv, and dq when `with_dq`.
__global__ void zero_rows_past_end_kernel(const BwdParams b, bool with_dq) {
  const FwdParams& p = b.fwd;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t k_end = p.cu_seqlens_k[p.batch];
  auto* dk = static_cast<uint16_t*>(b.dk);
  auto* dv = static_cast<uint16_t*>(b.dv);
  for (int64_t idx = first; idx < (p.total_k - k_end) * p.heads_k; idx += stride) {
    const int64_t row = k_end + idx / p.heads_k;
    const int hk = int(idx % p.heads_k);
    for (int c = 0; c < p.head_dim; ++c) dk[row * b.dk_row_stride + hk * b.dk_head_stride + c] = 0;
    for (int c = 0; c < p.head_dim_v; ++c) dv[row * b.dv_row_stride + hk * b.dv_head_stride + c] = 0;
  }
  if (!with_dq) return;
  const int64_t q_end = p.cu_seqlens_q[p.batch];
  auto* dq = static_cast<uint16_t*>(b.dq);
  for (int64_t idx = first; idx < (p.total_q - q_end) * p.heads_q; idx += stride) {
    const int64_t row = q_end + idx / p.heads_q;
    const int h = int(idx % p.heads_q);
    for (int c = 0; c < p.head_dim; ++c) dq[row * b.dq_row_stride + h * b.dq_head_stride + c] = 0;
  }
}

constexpr size_t kWorkspaceAlign = 16;
size_t aligned(size_t bytes) { return (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign; }

unsigned grid_for(int64_t items, int64_t per_block) {
  return unsigned(std::clamp<int64_t>((items + per_block - 1) / per_block, 1, INT_MAX));
}

template <typename T, int kDimMax>
int launch_typed(const BwdParams& b) {
  const FwdParams& p = b.fwd;
  const auto stream = static_cast<cudaStream_t>(p.stream);
  const SimtBackwardWorkspace ws = simt_backward_workspace(b);
  auto* base = static_cast<char*>(p.workspace);
  float* row_dot = base != nullptr ? reinterpret_cast<float*>(base + ws.row_dot_offset) : nullptr;
  float* dq_accum = base != nullptr && !b.deterministic ? reinterpret_cast<float*>(base + ws.dq_accum_offset) : nullptr;
  cudaError_t err;

  if (p.total_q > 0) {
    row_dot_kernel<T><<<grid_for(p.total_q * p.heads_q, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(
        b, row_dot, dq_accum);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }

  const int64_t key_tiles = kernels::blocks_of(p.max_seqlen_k, kBlockKeys);
  const int64_t dkdv_work = key_tiles * p.heads_k * p.batch;
  if (dkdv_work > 0) {
    const size_t smem = sizeof(float) * size_t(kBlockKeys * (p.head_dim + 1) + kBlockKeys * (p.head_dim_v + 1) +
                                               p.head_dim + p.head_dim_v + kBlockKeys);
    dkdv_kernel<T, kDimMax><<<grid_for(dkdv_work, 1), kThreads, smem, stream>>>(b, row_dot, dq_accum, key_tiles,
                                                                               dkdv_work);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }

  if (b.deterministic) {
    const int64_t row_tiles = kernels::blocks_of(p.max_seqlen_q, kBlockRows);
    const int64_t dq_work = row_tiles * p.heads_q * p.batch;
    if (dq_work > 0) {
      const size_t smem = sizeof(float) * size_t(kBlockKeys * (p.head_dim + 1) + kBlockKeys * (p.head_dim_v + 1));
      dq_kernel<T, kDimMax><<<grid_for(dq_work, 1), kThreads, smem, stream>>>(b, row_dot, row_tiles, dq_work);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
  } else if (p.total_q > 0) {
    dq_store_kernel<T><<<grid_for(p.total_q * p.heads_q * p.head_dim, kElementwiseThreads), kElementwiseThreads, 0,
                         stream>>>(b, dq_accum);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }

  if (p.total_q > 0 || p.total_k > 0) {
    // Rows past the end are few or none; a small grid strides over them.
    zero_rows_past_end_kernel<<<32, kElementwiseThreads, 0, stream>>>(b, b.deterministic);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename T>
int launch_dtype(const BwdParams& b) {
  const int widest = std::max(b.fwd.head_dim, b.fwd.head_dim_v);
  if (widest <= 64) return launch_typed<T, 64>(b);
  if (widest <= 128) return launch_typed<T, 128>(b);
  return launch_typed<T, 256>(b);
}

int launch(const BwdParams& b) {
  return b.fwd.dtype == DType::fp16 ? launch_dtype<__half>(b) : launch_dtype<__nv_bfloat16>(b);
}

size_t workspace_bytes(const BwdParams& b) { return simt_backward_workspace(b).bytes; }

const void* probe_symbol() { return reinterpret_cast<const void*>(dkdv_kernel<__half, 64>); }

constexpr HeadDimRule kHeadDims[] = {{8, 256, 8, 8, 256, 8, false}};

const KernelInfo kSimtBackwardKernels[] = {{
    .name = "simt_backward",
    .description = "portable SIMT backward: fp32 CUDA-core math, dq by fp32 atomics or (deterministic) by an "
                   "ordered pass, any capability >= 7.5",
    .rank = 0,
    .targets = nullptr,
    .dtypes = dtype_bit(DType::fp16) | dtype_bit(DType::bf16),
    .features = (kAllFeatures & ~kDense) | kDeterministic,
    .head_dims = kHeadDims,
    .launch = nullptr,
    .workspace_bytes = nullptr,
    .probe_symbol = probe_symbol,
    .pass = Pass::backward,
    .launch_backward = launch,
    .backward_workspace_bytes = workspace_bytes,
}};

}  // namespace

SimtBackwardWorkspace simt_backward_workspace(const BwdParams& b) {
  const FwdParams& p = b.fwd;
  SimtBackwardWorkspace ws;
  ws.row_dot_offset = 0;
  ws.dq_accum_offset = aligned(sizeof(float) * size_t(p.total_q) * size_t(p.heads_q));
  const size_t dq_bytes = b.deterministic ? 0 : sizeof(float) * size_t(p.total_q) * size_t(p.heads_q) * size_t(p.head_dim);
  ws.bytes = ws.dq_accum_offset + aligned(dq_bytes);
  return ws;
}

std::span<const KernelInfo> simt_backward_kernels() { return kSimtBackwardKernels; }

}  // namespace vflash
