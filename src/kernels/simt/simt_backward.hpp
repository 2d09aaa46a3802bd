// Portable SIMT attention backward (simt_backward.cu): its workspace layout
// and its entries in the kernel table.
#pragma once

#include <cstddef>
#include <span>

#include "params.hpp"
#include "registry.hpp"

namespace vflash {

// Device workspace of the SIMT backward. Parts start at 16-byte aligned offsets:
//   row_dot:  float (heads_q, total_q): D = rowsum(dout * out) per query row and head;
//   dq_accum: float (total_q, heads_q, d): fp32 sums of dq, added to with atomics
//             (absent, 0 bytes, in deterministic mode).
struct SimtBackwardWorkspace {
  size_t row_dot_offset = 0;
  size_t dq_accum_offset = 0;
  size_t bytes = 0;
};
SimtBackwardWorkspace simt_backward_workspace(const BwdParams& params);

// The backward entries of the simt family (registry.hpp: <family>_backward_kernels()).
std::span<const KernelInfo> simt_backward_kernels();

}  // namespace vflash
