// CPU reference attention: the oracle of every test and the backend when the
// tensors are on the host. float64 accumulation.
#pragma once

#include <span>

#include "params.hpp"

namespace vflash {

// Attention of params' host inputs in float64. `out` holds one row of d_v values
// per (query row, head) in (row, head, d_v) order, where row = seq_start(b) + r
// for varlen and b * seqlen_q + r for dense; `lse` is (heads_q, rows), -inf for
// rows that see no key. Either span may be empty to skip it.
void reference_attention(const FwdParams& params, std::span<double> out, std::span<double> lse);

// Backend entry: computes into params.o (params.dtype) and params.lse (fp32).
void cpu_forward(const FwdParams& params);

}  // namespace vflash
