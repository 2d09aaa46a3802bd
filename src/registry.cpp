// The kernel table of this build, assembled from the generated list of kernel
// families (build/generated/vflash_kernels.inc): each family's kernels get the
// targets that family was compiled for.
#include "registry.hpp"

#include <vector>

namespace vflash {

#define VFLASH_KERNEL(family, targets) std::span<const KernelInfo> family##_kernels();
#include "vflash_kernels.inc"
#undef VFLASH_KERNEL

std::span<const KernelFamily> kernel_families() {
  static const std::vector<KernelFamily> families = {
#define VFLASH_KERNEL(family, targets_) KernelFamily{.name = #family, .targets = targets_, .kernels = family##_kernels()},
#include "vflash_kernels.inc"
#undef VFLASH_KERNEL
  };
  return families;
}

std::span<const KernelInfo> cuda_kernels() {
  // Function-local static: built once, thread-safe (C++11 magic statics).
  static const std::vector<KernelInfo> table = [] {
    std::vector<KernelInfo> kernels;
    for (const KernelFamily& family : kernel_families()) {
      for (KernelInfo k : family.kernels) {
        k.targets = family.targets;
        kernels.push_back(k);
      }
    }
    return kernels;
  }();
  return table;
}

uint32_t features_of(const FwdParams& p) {
  uint32_t f = p.is_varlen() ? kVarlen : kDense;
  if (p.causal) f |= kCausal;
  // Causal resolves to window_right = 0; only a bound beyond that is a window.
  if (p.window_left >= 0 || (!p.causal && p.window_right >= 0)) f |= kWindow;
  if (p.softcap > 0.f) f |= kSoftcap;
  if (p.heads_q != p.heads_k) f |= kGqa;
  if (p.lse != nullptr) f |= kLse;
  return f;
}

}  // namespace vflash
