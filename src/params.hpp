// Resolved, validated arguments of one attention forward or backward, as
// every backend (CPU reference and CUDA kernels) consumes them. Built only by
// validate.cpp; kernels trust them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vflash {

enum class DType : uint8_t { fp16 = 0, bf16 = 1, fp32 = 2 };

struct FwdParams {
  DType dtype = DType::bf16;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // nullptr: not computed

  // Element strides. Row r of sequence b, head h of tensor X lives at
  // X + b * x_batch_stride + (seq_start(b) + r) * x_row_stride + h * x_head_stride.
  // Varlen calls have batch strides 0 and seq_start(b) = cu_seqlens[b];
  // dense calls have cu_seqlens null and seq_start(b) = 0.
  int64_t q_batch_stride = 0, q_row_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_row_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_row_stride = 0, v_head_stride = 0;
  int64_t o_batch_stride = 0, o_row_stride = 0, o_head_stride = 0;
  // lse of (b, h, r) at lse + b * lse_batch_stride + h * lse_head_stride + seq_start(b) + r.
  int64_t lse_batch_stride = 0, lse_head_stride = 0;

  const int32_t* cu_seqlens_q = nullptr;  // device (or host for the CPU backend); null when dense
  const int32_t* cu_seqlens_k = nullptr;
  int32_t seqlen_q = 0;  // dense: the sequence lengths; varlen: unused (0)
  int32_t seqlen_k = 0;

  int32_t batch = 0;
  int32_t heads_q = 0, heads_k = 0;
  int32_t head_dim = 0, head_dim_v = 0;
  int32_t max_seqlen_q = 0, max_seqlen_k = 0;
  int64_t total_q = 0, total_k = 0;

  float softmax_scale = 0.f;
  bool causal = false;
  // Resolved window; causal sets window_right = 0. Negative = unbounded.
  int32_t window_left = -1, window_right = -1;
  float softcap = 0.f;
  // Varlen: write rows past cu_seqlens_q[batch] as rows without keys (out 0, lse -inf).
  bool zero_rows_past_end = false;

  int device = -1;  // -1: host tensors (CPU reference)
  void* stream = nullptr;  // cudaStream_t
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  bool is_varlen() const { return cu_seqlens_q != nullptr; }
  bool has_window() const { return window_left >= 0 || window_right >= 0; }
};

// One varlen attention backward: the forward's arguments (q, k, v, o = the
// forward's out, lse = its log-sum-exp, both read; masks and shapes) and the
// gradients. Row r of sequence b, head h of tensor X lives at
// X + (cu_seqlens[b] + r) * x_row_stride + h * x_head_stride (varlen only:
// fwd's batch strides are 0). dq is (total_q, heads_q, d), dk (total_k,
// heads_k, d), dv (total_k, heads_k, d_v), dout (total_q, heads_q, d_v), all of
// fwd.dtype. Every row of dq, dk and dv is written: rows past the last
// sequence get zero gradient.
struct BwdParams {
  FwdParams fwd;  // fwd.lse is never null
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  int64_t dout_row_stride = 0, dout_head_stride = 0;
  int64_t dq_row_stride = 0, dq_head_stride = 0;
  int64_t dk_row_stride = 0, dk_head_stride = 0;
  int64_t dv_row_stride = 0, dv_head_stride = 0;
  // Bit-identical results run to run (no floating-point atomics).
  bool deterministic = false;
};

}  // namespace vflash
