// The tile-list prepass: one CTA counting-sorts the query blocks
// (sequence, block of query rows) by the number of key blocks they visit, most first, so that the
// persistent main kernel starts the longest tiles first.
#include <cuda_runtime.h>

#include "kernels/mma/mma_schedule.cuh"

namespace vflash::mma {
namespace {

constexpr int kPrepassThreads = 1024;
constexpr int kCostBins = kPrepassThreads;  // costs beyond kCostBins - 1 blocks share the last bin

// Calls visit(query block, bin) for every query block; bin 0 holds the most work.
// A warp per sequence, its lanes over the sequence's query blocks.
template <class Visit>
__device__ void for_each_query_block(const FwdParams& p, int block_m, int block_n, Visit visit) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int b = warp; b < p.batch; b += kPrepassThreads / 32) {
    const SeqExtent e = seq_extent(p, b);
    const int blocks = kernels::blocks_of(e.seqlen_q, block_m);
    for (int mb = lane; mb < blocks; mb += 32) {
      const QueryBlock qb = make_query_block(p, b, e, mb * block_m, block_m, block_n);
      visit(qb, kCostBins - 1 - min(qb.nb_end - qb.nb_first, kCostBins - 1));
    }
  }
}

__global__ void __launch_bounds__(kPrepassThreads)
    build_tile_list(const __grid_constant__ FwdParams p, int block_m, int block_n,
                    TileListHeader* header, QueryBlock* blocks) {
  __shared__ int bins[kCostBins];
  __shared__ int warp_totals[kPrepassThreads / 32];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  bins[tid] = 0;
  __syncthreads();
  for_each_query_block(p, block_m, block_n, [&](const QueryBlock&, int bin) { atomicAdd(&bins[bin], 1); });
  __syncthreads();

  // Exclusive prefix sum of the bins, one bin per thread.
  const int count = bins[tid];
  int incl = count;
  for (int d = 1; d < 32; d *= 2) {
    const int up = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += up;
  }
  if (lane == 31) warp_totals[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int t = warp_totals[lane];
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xffffffffu, t, d);
      if (lane >= d) t += up;
    }
    warp_totals[lane] = t;  // inclusive
  }
  __syncthreads();
  const int offset = incl - count + (warp > 0 ? warp_totals[warp - 1] : 0);
  const int total = warp_totals[kPrepassThreads / 32 - 1];
  bins[tid] = offset;
  __shared__ int uneven;
  if (tid == 0) {
    header->num_blocks = total;
    header->claimed = 0;
    uneven = 0;
  }
  __syncthreads();
  if (count > 0 && count < total) uneven = 1;  // blocks in more than one bin
  __syncthreads();
  if (tid == 0) {
    const TilePolicy policy = tile_policy(p, uneven == 0, total);
    header->round_robin = policy.round_robin;
    header->head_major = policy.head_major;
  }
  for_each_query_block(p, block_m, block_n, [&](const QueryBlock& qb, int bin) {
    blocks[atomicAdd(&bins[bin], 1)] = qb;
  });
}

}  // namespace

int launch_tile_list(const FwdParams& p, int block_m, int block_n, TileListHeader* header,
                     QueryBlock* blocks) {
  build_tile_list<<<1, kPrepassThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(
      p, block_m, block_n, header, blocks);
  return cudaGetLastError();
}

const void* tile_list_symbol() { return reinterpret_cast<const void*>(&build_tile_list); }

int smem_per_block_optin(int device, size_t* bytes) {
  static PerDevice optin;
  int value = 0;
  const int err = optin.get(device, &value, [](int dev, int* v) {
    return int(cudaDeviceGetAttribute(v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  });
  *bytes = size_t(value);
  return err;
}

}  // namespace vflash::mma
