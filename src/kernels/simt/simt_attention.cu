// Portable SIMT attention forward: the last fallback of dispatch. Plain CUDA
// cores, fp32 math, no tensor cores, no async copies, so it runs on every
// capability from 7.5 on (and anywhere else through the compute_75 PTX).
//
// One block of kThreads threads owns a tile of kBlockM query rows of one
// (sequence, query head). Four consecutive lanes share a query row: each keeps
// a quarter of the row's scores of the current key tile and a quarter of its
// output accumulator. Key/value tiles of kBlockN rows are staged in shared
// memory; the online softmax is the one every kernel runs
// (kernels/common/online_softmax.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <span>

#include "kernels/common/online_softmax.cuh"
#include "kernels/common/score_constants.hpp"
#include "kernels/common/visible_keys.cuh"
#include "registry.hpp"

namespace vflash {
namespace {

constexpr int kThreads = 128;
constexpr int kLanesPerRow = 4;
constexpr int kBlockM = kThreads / kLanesPerRow;  // query rows per tile
constexpr int kBlockN = 32;                        // keys per tile
constexpr int kScoresPerLane = kBlockN / kLanesPerRow;
// A thread's row: kScoresPerLane scores of each key tile, the row over
// kLanesPerRow lanes; O rescaled only when a reference of the warp moved.
using RowSoftmax = kernels::OnlineSoftmax<1, kScoresPerLane, kLanesPerRow, false, true>;

// Shared-memory rows hold d/2 words (two 16-bit elements each) plus one word
// of padding: d is a multiple of 8, so the padded stride is odd and lanes
// reading the same column of different rows hit different banks.
__host__ __device__ constexpr int padded_words(int dim) { return dim / 2 + 1; }

template <typename T>
struct Element;
template <>
struct Element<__half> {
  static __device__ float2 to_float2(uint32_t w) { return __half22float2(*reinterpret_cast<__half2*>(&w)); }
  static __device__ uint16_t from_float(float f) { return __half_as_ushort(__float2half_rn(f)); }
};
template <>
struct Element<__nv_bfloat16> {
  static __device__ float2 to_float2(uint32_t w) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&w));
  }
  static __device__ uint16_t from_float(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
};

// Copy `rows` rows of `dim` 16-bit elements (row r at src + r * row_stride) into
// shared memory with the padded stride; rows past `valid_rows` become zeros.
// Validation guarantees 16-byte aligned rows (pointer and strides), and d is a
// multiple of 8, so rows are read as 16-byte chunks.
__device__ void stage_rows(uint32_t* dst, const uint16_t* src, int64_t row_stride, int rows, int valid_rows,
                           int dim) {
  const int chunks_per_row = dim / 8;
  for (int idx = threadIdx.x; idx < rows * chunks_per_row; idx += kThreads) {
    const int r = idx / chunks_per_row;
    const int chunk = idx - r * chunks_per_row;
    const uint4 data = r < valid_rows ? *reinterpret_cast<const uint4*>(src + r * row_stride + 8 * chunk)
                                      : make_uint4(0, 0, 0, 0);
    uint32_t* out = dst + r * padded_words(dim) + 4 * chunk;
    out[0] = data.x;
    out[1] = data.y;
    out[2] = data.z;
    out[3] = data.w;
  }
}

struct SequenceView {
  int64_t q_start, k_start;  // first row of the sequence in the packed/dense row index
  int len_q, len_k;
};

__device__ SequenceView sequence_view(const FwdParams& p, int b) {
  SequenceView s;
  if (p.cu_seqlens_q != nullptr) {
    s.q_start = p.cu_seqlens_q[b];
    s.k_start = p.cu_seqlens_k[b];
    s.len_q = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
    s.len_k = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
  } else {
    s.q_start = 0;
    s.k_start = 0;
    s.len_q = p.seqlen_q;
    s.len_k = p.seqlen_k;
  }
  return s;
}

// Keys visible to query row r (bottom-right aligned; causal is already folded
// into window_right by validation).
__device__ kernels::KeySpan row_keys_of(const FwdParams& p, const SequenceView& s, int r) {
  return kernels::visible_keys(r, s.len_q, s.len_k, p.window_left, p.window_right);
}

// kDvMax bounds head_dim_v: each lane accumulates kDvMax / kLanesPerRow outputs.
template <typename T, int kDvMax>
__global__ void __launch_bounds__(kThreads, 1) simt_attention_kernel(const FwdParams p,
                                                                  const kernels::ScoreConstants sc,
                                                                  int64_t tiles_per_head, int64_t total_tiles) {
  extern __shared__ uint32_t smem_words[];
  const int d = p.head_dim;
  const int dv = p.head_dim_v;
  uint32_t* q_smem = smem_words;
  uint32_t* k_smem = q_smem + kBlockM * padded_words(d);
  uint32_t* v_smem = k_smem + kBlockN * padded_words(d);

  const int row_in_tile = threadIdx.x / kLanesPerRow;
  const int lane_in_row = threadIdx.x % kLanesPerRow;
  const unsigned lane = threadIdx.x % 32;
  const unsigned row_leader = lane & ~unsigned(kLanesPerRow - 1);
  constexpr int kAccPerLane = kDvMax / kLanesPerRow;
  const auto* q_base = static_cast<const uint16_t*>(p.q);
  const auto* k_base = static_cast<const uint16_t*>(p.k);
  const auto* v_base = static_cast<const uint16_t*>(p.v);
  auto* o_base = static_cast<uint16_t*>(p.o);
  const int group = p.heads_q / p.heads_k;

  // Grid-stride over (query tile, head, sequence), so no grid dimension limit applies.
  for (int64_t work = blockIdx.x; work < total_tiles; work += gridDim.x) {
    const int tile = int(work % tiles_per_head);
    const int h = int((work / tiles_per_head) % p.heads_q);
    const int b = int(work / (tiles_per_head * p.heads_q));
    const SequenceView s = sequence_view(p, b);
    const int row0 = tile * kBlockM;
    if (row0 >= s.len_q) continue;  // block-uniform: no barrier is skipped by part of the block
    const int rows_here = min(kBlockM, s.len_q - row0);
    const int hk = h / group;

    // This lane's row (rows past the sequence see no key) and the key range
    // any row of the tile sees: both bounds grow with the row index.
    const int r = row0 + row_in_tile;
    kernels::KeySpan row_keys = row_keys_of(p, s, r);
    if (r >= s.len_q) row_keys.end = row_keys.begin;
    const int tile_lo = row_keys_of(p, s, row0).begin;
    const int tile_hi = row_keys_of(p, s, row0 + rows_here - 1).end - 1;

    const uint16_t* q_rows = q_base + b * p.q_batch_stride + (s.q_start + row0) * p.q_row_stride + h * p.q_head_stride;
    const uint16_t* k_rows = k_base + b * p.k_batch_stride + s.k_start * p.k_row_stride + hk * p.k_head_stride;
    const uint16_t* v_rows = v_base + b * p.v_batch_stride + s.k_start * p.v_row_stride + hk * p.v_head_stride;
    stage_rows(q_smem, q_rows, p.q_row_stride, kBlockM, rows_here, d);

    float acc[kAccPerLane];
#pragma unroll
    for (int i = 0; i < kAccPerLane; ++i) acc[i] = 0.f;
    RowSoftmax softmax;
    softmax.reset();

    for (int key0 = tile_lo; key0 <= tile_hi; key0 += kBlockN) {
      const int keys_here = min(kBlockN, s.len_k - key0);
      __syncthreads();  // previous tile's K/V (and on entry the previous work item) fully consumed
      stage_rows(k_smem, k_rows + key0 * p.k_row_stride, p.k_row_stride, kBlockN,
                 keys_here, d);
      stage_rows(v_smem, v_rows + key0 * p.v_row_stride, p.v_row_stride, kBlockN,
                 keys_here, dv);
      __syncthreads();

      // Scores of keys key0 + lane_in_row + kLanesPerRow * m.
      float score[kScoresPerLane];
#pragma unroll
      for (int m = 0; m < kScoresPerLane; ++m) score[m] = 0.f;
      const uint32_t* q_row = q_smem + row_in_tile * padded_words(d);
      for (int w = 0; w < d / 2; ++w) {
        const float2 qf = Element<T>::to_float2(q_row[w]);
#pragma unroll
        for (int m = 0; m < kScoresPerLane; ++m) {
          const float2 kf = Element<T>::to_float2(k_smem[(lane_in_row + kLanesPerRow * m) * padded_words(d) + w]);
          score[m] = fmaf(qf.x, kf.x, fmaf(qf.y, kf.y, score[m]));
        }
      }
#pragma unroll
      for (int m = 0; m < kScoresPerLane; ++m) {
        const int key = key0 + lane_in_row + kLanesPerRow * m;
        if (sc.has_softcap()) score[m] = sc.capped(score[m]);
        if (key < row_keys.begin || key >= row_keys.end) score[m] = -INFINITY;
      }
      // The block's scores become their p; every lane of the warp runs this (block-uniform loop).
      const auto value = [&score](int i) -> float& { return score[i]; };
      bool moved = false;
      const float corr[1] = {softmax.exponentiate(0, softmax.block_max(0, value), sc.exp2_scale, value, moved)};
      softmax.settle(moved, corr, [&] {
#pragma unroll
        for (int i = 0; i < kAccPerLane; ++i) acc[i] *= corr[0];
      });

      // acc[2i], acc[2i+1] hold output columns 2 * (lane_in_row + kLanesPerRow * i) + {0, 1}.
#pragma unroll
      for (int m = 0; m < kScoresPerLane; ++m) {
#pragma unroll
        for (int src = 0; src < kLanesPerRow; ++src) {
          const float prob = __shfl_sync(0xffffffffu, score[m], row_leader + src);
          const uint32_t* v_row = v_smem + (src + kLanesPerRow * m) * padded_words(dv);
#pragma unroll
          for (int i = 0; i < kAccPerLane / 2; ++i) {
            const int w = lane_in_row + kLanesPerRow * i;
            if (2 * w < dv) {
              const float2 vf = Element<T>::to_float2(v_row[w]);
              acc[2 * i] = fmaf(prob, vf.x, acc[2 * i]);
              acc[2 * i + 1] = fmaf(prob, vf.y, acc[2 * i + 1]);
            }
          }
        }
      }
    }

    const float row_sum = softmax.total(0);
    if (r < s.len_q) {
      // A row that sees no key: zeros and lse = -inf.
      const float inv_sum = RowSoftmax::normaliser(row_sum);
      uint16_t* o_row = o_base + b * p.o_batch_stride + (s.q_start + r) * p.o_row_stride + h * p.o_head_stride;
#pragma unroll
      for (int i = 0; i < kAccPerLane / 2; ++i) {
        const int w = lane_in_row + kLanesPerRow * i;
        if (2 * w < dv) {
          o_row[2 * w] = Element<T>::from_float(acc[2 * i] * inv_sum);
          o_row[2 * w + 1] = Element<T>::from_float(acc[2 * i + 1] * inv_sum);
        }
      }
      if (p.lse != nullptr && lane_in_row == 0) {
        p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + s.q_start + r] =
            softmax.lse(0, row_sum, sc.exp2_scale);
      }
    }
    __syncthreads();  // q_smem is restaged by the next work item
  }
}

size_t shared_bytes(const FwdParams& p) {
  return sizeof(uint32_t) *
         size_t(kBlockM * padded_words(p.head_dim) + kBlockN * (padded_words(p.head_dim) + padded_words(p.head_dim_v)));
}

template <typename T, int kDvMax>
int launch_typed(const FwdParams& p) {
  const int64_t tiles_per_head = (int64_t(p.max_seqlen_q) + kBlockM - 1) / kBlockM;
  const int64_t total_tiles = tiles_per_head * p.heads_q * p.batch;
  if (total_tiles == 0) return cudaSuccess;
  const size_t smem = shared_bytes(p);
  auto* kernel = simt_attention_kernel<T, kDvMax>;
  // Head dims above 128 need more than the 48 KiB granted without opting in
  // (every target capability offers at least 64 KiB per block).
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  const unsigned blocks = unsigned(std::min<int64_t>(total_tiles, INT_MAX));
  kernel<<<blocks, kThreads, smem, static_cast<cudaStream_t>(p.stream)>>>(p, kernels::score_constants(p),
                                                                         tiles_per_head, total_tiles);
  return cudaGetLastError();
}

template <typename T>
int launch_dtype(const FwdParams& p) {
  if (p.head_dim_v <= 64) return launch_typed<T, 64>(p);
  if (p.head_dim_v <= 128) return launch_typed<T, 128>(p);
  return launch_typed<T, 256>(p);
}

int launch(const FwdParams& p) {
  return p.dtype == DType::fp16 ? launch_dtype<__half>(p) : launch_dtype<__nv_bfloat16>(p);
}

const void* probe_symbol() { return reinterpret_cast<const void*>(simt_attention_kernel<__half, 64>); }

constexpr HeadDimRule kHeadDims[] = {{8, 256, 8, 8, 256, 8, false}};

const KernelInfo kSimtKernels[] = {{
    .name = "simt_reference",
    .description = "portable SIMT fallback: fp32 CUDA-core math, any capability >= 7.5",
    .rank = 0,
    .targets = nullptr,
    .dtypes = dtype_bit(DType::fp16) | dtype_bit(DType::bf16),
    .features = kAllFeatures,
    .head_dims = kHeadDims,
    .launch = launch,
    .workspace_bytes = nullptr,
    .probe_symbol = probe_symbol,
}};

}  // namespace

std::span<const KernelInfo> simt_kernels() { return kSimtKernels; }

}  // namespace vflash
