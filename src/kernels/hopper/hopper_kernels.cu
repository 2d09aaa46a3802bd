// Registry entry of the Hopper (sm_90a) kernel family: one kernel, "hopper",
// whose launch picks the generated instantiation for the call's head dims and
// dtype (instances.inc, from src/kernels/hopper/instances.py).
#include <array>
#include <span>

#include "config.cuh"
#include "registry.hpp"

namespace vflash::hopper {
namespace {

struct Instance {
  int qk_dim, v_dim;
  DType dtype;
  int (*launch)(const FwdParams&);
  const void* (*symbol)();
};

constexpr Instance kInstances[] = {
#define VFLASH_HOPPER_INSTANCE(D, DV, BN, ST, WG, QB, DT)                   \
  {D, DV, DType::DT, &launch_fwd<Config<D, DV, BN, ST, WG, QB, DType::DT>>, \
   &kernel_symbol<Config<D, DV, BN, ST, WG, QB, DType::DT>>},
#include "instances.inc"
#undef VFLASH_HOPPER_INSTANCE
};

// Head dims as computed: 72 runs its QK^T reduction as 80 (zero-filled by
// TMA) and its PV as N = 96, whose V rows load in 64 B boxes rather than the
// 32 B boxes an N of 80 would need (docs/tuning.md).
int computed_qk_dim(int d) { return d == 72 ? 80 : d; }
int computed_v_dim(int d) { return d == 72 ? 96 : d; }

const Instance* find_instance(const FwdParams& p) {
  for (const Instance& in : kInstances)
    if (in.qk_dim == computed_qk_dim(p.head_dim) && in.v_dim == computed_v_dim(p.head_dim_v) && in.dtype == p.dtype)
      return &in;
  return nullptr;
}

int launch(const FwdParams& p) {
  const Instance* in = find_instance(p);
  return in ? in->launch(p) : int(cudaErrorInvalidValue);
}

const void* probe() { return kInstances[0].symbol(); }

// The persistent kernel's tile counter (fwd_launch.cuh).
size_t workspace_bytes(const FwdParams&) { return 16; }

constexpr HeadDimRule kHeadDims[] = {
    {64, 64, 8, 64, 64, 8, true},     {72, 80, 8, 72, 80, 8, true},    {96, 96, 8, 96, 96, 8, true},
    {128, 128, 8, 128, 128, 8, true}, {192, 192, 8, 128, 128, 8, false}, {192, 192, 8, 192, 192, 8, true},
    {256, 256, 8, 256, 256, 8, true},
};

const KernelInfo kKernels[] = {{
    .name = "hopper",
    .description = "sm_90a warp-specialised TMA + wgmma forward (persistent, producer/consumer warpgroups)",
    .rank = 100,
    .targets = nullptr,
    .dtypes = dtype_bit(DType::fp16) | dtype_bit(DType::bf16),
    .features = kCausal | kWindow | kSoftcap | kGqa | kLse | kDense | kVarlen,
    .head_dims = kHeadDims,
    .launch = &launch,
    .workspace_bytes = &workspace_bytes,
    .probe_symbol = &probe,
    // 128- and 192-row query tiles of one sequence each: dense calls with
    // fewer query rows leave most of a tile idle.
    .min_efficient_seqlen_q = 128,
    // Short varlen sequences are packed into tiles (packs_sequences).
    .packs_varlen_up_to_seqlen_k = kPackedMaxSeqlenK,
}};

}  // namespace
}  // namespace vflash::hopper

namespace vflash {
std::span<const KernelInfo> hopper_kernels() { return vflash::hopper::kKernels; }
}  // namespace vflash
