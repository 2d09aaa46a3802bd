// Registry entry of the warp-level tensor-core kernel family: what it serves,
// and the switch from a call's (dtype, head dims) to its instantiation.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <span>

#include "kernels/mma/mma_schedule.cuh"
#include "registry.hpp"

namespace vflash::mma {

template <class Elem, int kBucket>
int launch_fwd(const FwdParams& p);

namespace {

constexpr int kGeneratedBuckets[] = {
#define VFLASH_MMA_INSTANCE(tag, elem, bucket) bucket,
#include "kernels/mma/mma_instances.inc"
#undef VFLASH_MMA_INSTANCE
};

// instances.py emits every bucket for every dtype, fp16 first.
constexpr bool generated_matches_buckets() {
  constexpr int n = sizeof(kBuckets) / sizeof(kBuckets[0]);
  if (sizeof(kGeneratedBuckets) / sizeof(int) != 2 * n) return false;
  for (int i = 0; i < 2 * n; ++i)
    if (kGeneratedBuckets[i] != kBuckets[i % n]) return false;
  return true;
}
static_assert(generated_matches_buckets(), "mma_instances.inc does not cover kBuckets");

int launch(const FwdParams& p) {
  const int bucket = bucket_for(p.head_dim, p.head_dim_v);
  const bool bf16 = p.dtype == DType::bf16;
#define VFLASH_MMA_INSTANCE(tag, elem, b) \
  if (bucket == b && bf16 == (DType::tag == DType::bf16)) return launch_fwd<elem, b>(p);
#include "kernels/mma/mma_instances.inc"
#undef VFLASH_MMA_INSTANCE
  return cudaErrorInvalidValue;  // dispatch only sends dims and dtypes listed below
}

size_t workspace_bytes(const FwdParams& p) {
  return tile_list_bytes_any_shape(p, bucket_for(p.head_dim, p.head_dim_v));
}

const void* probe_symbol() { return tile_list_symbol(); }

constexpr HeadDimRule kHeadDims[] = {{8, 256, 8, 8, 256, 8, false}};

const KernelInfo kKernels[] = {{
    .name = "mma",
    .description = "warp tensor-core (mma.sync m16n8k16, ldmatrix, cp.async) varlen forward, "
                   "persistent longest-first tiles; compute capability 8.0+",
    .rank = 50,
    .targets = nullptr,
    .dtypes = dtype_bit(DType::fp16) | dtype_bit(DType::bf16),
    .features = kAllFeatures,
    .head_dims = kHeadDims,
    .launch = launch,
    .workspace_bytes = workspace_bytes,
    .probe_symbol = probe_symbol,
}};

}  // namespace
}  // namespace vflash::mma

namespace vflash {
std::span<const KernelInfo> mma_kernels() { return mma::kKernels; }
}  // namespace vflash
