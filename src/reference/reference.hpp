// CPU reference attention, forward and backward: the oracle of every test and
// the backend when the tensors are on the host. float64 accumulation.
#pragma once

#include <span>

#include "params.hpp"

namespace vflash {

// Attention of params' host inputs in float64. `out` holds one row of d_v values
// per (query row, head) in (row, head, d_v) order, where row = seq_start(b) + r
// for varlen and b * seqlen_q + r for dense; `lse` is (heads_q, rows), -inf for
// rows that see no key. Either span may be empty to skip it.
//
// Precision::probabilities_rounded rounds each softmax weight to params.dtype
// before it multiplies V, as kernels feed P to 16-bit tensor cores (the sum
// stays exact): a low-precision reference whose error against the exact one
// tells tests how far a correct kernel may be off. The weights are rounded as
// 2^(x - max - rounding_offset_log2) (x, max in log2 units): a kernel whose
// running maximum differs from the row's (a lagged maximum, the order of key
// blocks) rounds them at another scale, with an error as likely, so tests take
// the largest error over a few offsets in [0, 1).
enum class Precision { exact, probabilities_rounded };
void reference_attention(const FwdParams& params, std::span<double> out, std::span<double> lse,
                         Precision precision = Precision::exact, double rounding_offset_log2 = 0.0);

// Backend entry: computes into params.o (params.dtype) and params.lse (fp32).
void cpu_forward(const FwdParams& params);

// Gradients of the varlen attention of params' host inputs in float64, for the
// upstream gradient params.dout: the softmax is recomputed from q and k in
// float64 (params.fwd.o and params.fwd.lse are not read), so this is the exact
// gradient of the forward above. dq is (total_q, heads_q, d), dk (total_k,
// heads_k, d), dv (total_k, heads_k, d_v), packed in (row, head, dim) order;
// rows past the last sequence and rows of queries that see no key get zeros.
void reference_attention_backward(const BwdParams& params, std::span<double> dq, std::span<double> dk,
                                  std::span<double> dv);

// Backend entry: the gradients above stored into params.dq / dk / dv (params.fwd.dtype).
void cpu_backward(const BwdParams& params);

// Testing the worker pool. Each call starts up to `threads` - 1 threads besides
// the caller's (0: one per hardware thread). `before_start(i)`, when set, runs
// before extra thread i (1-based) starts; throwing std::system_error from it
// acts as the failed start std::thread reports when the system has no thread
// to give. A failed start never fails the call: the threads that did start and
// the calling thread take every chunk.
struct ReferencePoolHooks {
  unsigned threads = 0;
  void (*before_start)(unsigned index) = nullptr;
};
void set_reference_pool_hooks(const ReferencePoolHooks& hooks);

}  // namespace vflash
