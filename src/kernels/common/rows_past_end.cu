// Rows of a varlen output past cu_seqlens_q[batch] belong to no sequence; on
// request (FwdParams::zero_rows_past_end) they are written as rows that see no
// key: out 0, lse -inf. The first such row is read on the device, so the call
// never waits for the host; without such rows the kernel only reads it.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/common/rows_past_end.hpp"

namespace vflash::kernels {
namespace {

struct Rows {
  const int32_t* cu_seqlens_q;
  int32_t batch, heads, units;  // units: 16-byte pieces of a row of d_v 16-bit values
  int64_t total_q, row_stride, head_stride;  // out, in elements
  uint16_t* out;
  float* lse;
  int64_t lse_head_stride;
};

__global__ void zero_rows_past_end_kernel(Rows r) {
  const int64_t first = r.cu_seqlens_q[r.batch];
  const int64_t count = (r.total_q - first) * r.heads * r.units;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const int u = int(i % r.units);
    const int64_t row_head = i / r.units;
    const int h = int(row_head % r.heads);
    const int64_t row = first + row_head / r.heads;
    *reinterpret_cast<uint4*>(r.out + row * r.row_stride + h * r.head_stride + u * 8) = make_uint4(0, 0, 0, 0);
    if (r.lse != nullptr && u == 0) r.lse[h * r.lse_head_stride + row] = -INFINITY;
  }
}

}  // namespace

int zero_rows_past_end(const FwdParams& p) {
  if (!p.is_varlen() || !p.zero_rows_past_end || p.total_q == 0) return cudaSuccess;
  const Rows r{p.cu_seqlens_q, p.batch, p.heads_q, p.head_dim_v / 8, p.total_q, p.o_row_stride, p.o_head_stride,
               static_cast<uint16_t*>(p.o), p.lse, p.lse_head_stride};
  // Usually no row qualifies: a small grid that strides over the rare large fill.
  constexpr int kThreads = 256;
  const int64_t most = p.total_q * p.heads_q * r.units;
  const int blocks = int(most / kThreads + 1 < 256 ? most / kThreads + 1 : 256);
  zero_rows_past_end_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(r);
  return cudaGetLastError();
}

}  // namespace vflash::kernels
