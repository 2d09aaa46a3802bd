// Kernel registry: every kernel variant declares, as data, what it needs and
// what it serves. Dispatch (dispatch.hpp) is a selection over this table and
// `vflash doctor` reports from the same table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "arch.hpp"
#include "params.hpp"

namespace vflash {

// Features a call may use; a kernel lists those it supports.
enum Feature : uint32_t {
  kCausal = 1u << 0,
  kWindow = 1u << 1,
  kSoftcap = 1u << 2,
  kGqa = 1u << 3,        // heads_q != heads_k
  kLse = 1u << 4,
  kDense = 1u << 5,      // batch-strided (batch, seqlen, heads, d) layout
  kVarlen = 1u << 6,     // cu_seqlens layout
  kAllFeatures = (1u << 7) - 1,  // every feature of a forward call
  kDeterministic = 1u << 7,      // backward: bit-identical results run to run
};

// The pass a kernel computes. Dispatch of a call considers only kernels of its pass.
enum class Pass : uint8_t { forward, backward };

inline constexpr uint32_t dtype_bit(DType t) { return 1u << static_cast<unsigned>(t); }

// Head dims served: d in [d_min, d_max] stepping d_step, and d_v likewise;
// same_dv requires d_v == d.
struct HeadDimRule {
  int d_min, d_max, d_step;
  int dv_min, dv_max, dv_step;
  bool same_dv;
};

struct KernelInfo {
  const char* name;
  const char* description;
  int rank;  // higher is preferred among valid candidates
  // Targets this kernel was compiled for, as the build emitted them
  // (semicolon-separated, e.g. "sm_80;sm_90;compute_80"). Kernel families leave
  // it null; the registry fills it from the generated build list.
  const char* targets;
  uint32_t dtypes;    // dtype_bit mask
  uint32_t features;  // Feature mask
  std::span<const HeadDimRule> head_dims;
  // Launch on params.stream; returns a cudaError_t as int (0 = success).
  int (*launch)(const FwdParams& params);
  // Device workspace bytes for the call (may be null: none needed).
  size_t (*workspace_bytes)(const FwdParams& params);
  // A __global__ function of this kernel; cudaFuncGetAttributes on it tells
  // whether the binary holds code loadable on the current device. Null for CPU.
  const void* (*probe_symbol)();
  // Measured efficiency floor: for calls whose max_seqlen_q is below it, any
  // valid kernel without such a floor is preferred whatever the ranks (e.g. a
  // 128-row-tile kernel on single-token dense queries). 0: none.
  int32_t min_efficient_seqlen_q = 0;
  // Varlen calls whose max_seqlen_k is at most this pack several short
  // sequences into each tile, so the floor does not apply to them. 0: never.
  int32_t packs_varlen_up_to_seqlen_k = 0;
  // Backward kernels: pass = backward, launch and workspace_bytes null, and these instead.
  Pass pass = Pass::forward;
  int (*launch_backward)(const BwdParams& params) = nullptr;
  size_t (*backward_workspace_bytes)(const BwdParams& params) = nullptr;
};

// Whether kernel k is below its efficiency floor for the call.
inline bool below_efficiency_floor(const KernelInfo& k, const FwdParams& p) {
  const bool packed = p.is_varlen() && p.max_seqlen_k <= k.packs_varlen_up_to_seqlen_k;
  return !packed && p.max_seqlen_q < k.min_efficient_seqlen_q;
}

// The forward CUDA kernels of this build (targets filled in), in no particular order.
std::span<const KernelInfo> cuda_kernels();
// The backward CUDA kernels of this build (targets filled in).
std::span<const KernelInfo> cuda_backward_kernels();

// The kernel families of this build, as the generated list names them (for
// `vflash doctor`: what the binary holds).
struct KernelFamily {
  const char* name;     // "simt", "mma", "hopper"
  const char* targets;  // "sm_80;sm_90;compute_80"
  std::span<const KernelInfo> kernels;  // forward; targets not filled in; see cuda_kernels()
  std::span<const KernelInfo> backward_kernels;  // see cuda_backward_kernels()
};
std::span<const KernelFamily> kernel_families();

// Each kernel family (one object library, one list of targets, see
// cmake/targets.cmake) defines `std::span<const KernelInfo> <family>_kernels();`
// and is listed in the generated vflash_kernels.inc as VFLASH_KERNEL(family, "targets").
// A family with a source named *_backward.cu also defines
// `std::span<const KernelInfo> <family>_backward_kernels();`, listed in the
// generated vflash_backward_kernels.inc as VFLASH_BACKWARD_KERNELS(family).

// The features a call uses.
uint32_t features_of(const FwdParams& params);
// The features a backward call uses: its forward's, and kDeterministic when asked.
uint32_t features_of(const BwdParams& params);

}  // namespace vflash
