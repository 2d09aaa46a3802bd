// The kernel table of this build, assembled from the generated list of kernel
// families (build/generated/vflash_kernels.inc): each family's kernels get the
// targets that family was compiled for.
#include "registry.hpp"

#include <vector>

namespace vflash {

#define VFLASH_KERNEL(family, targets) std::span<const KernelInfo> family##_kernels();
#include "vflash_kernels.inc"
#undef VFLASH_KERNEL
#define VFLASH_BACKWARD_KERNELS(family) std::span<const KernelInfo> family##_backward_kernels();
#include "vflash_backward_kernels.inc"
#undef VFLASH_BACKWARD_KERNELS

namespace {

// The backward kernels of the family named `name` (none when it has no *_backward.cu).
std::span<const KernelInfo> backward_kernels_of(std::string_view name) {
#define VFLASH_BACKWARD_KERNELS(family) \
  if (name == #family) return family##_backward_kernels();
#include "vflash_backward_kernels.inc"
#undef VFLASH_BACKWARD_KERNELS
  (void)name;
  return {};
}

// Every kernel of `pass` of every family, with its family's targets.
std::vector<KernelInfo> table_of(Pass pass) {
  std::vector<KernelInfo> kernels;
  for (const KernelFamily& family : kernel_families()) {
    for (KernelInfo k : pass == Pass::forward ? family.kernels : family.backward_kernels) {
      k.targets = family.targets;
      kernels.push_back(k);
    }
  }
  return kernels;
}

}  // namespace

std::span<const KernelFamily> kernel_families() {
  static const std::vector<KernelFamily> families = {
#define VFLASH_KERNEL(family, targets_)                                                  \
  KernelFamily{.name = #family, .targets = targets_, .kernels = family##_kernels(), \
               .backward_kernels = backward_kernels_of(#family)},
#include "vflash_kernels.inc"
#undef VFLASH_KERNEL
  };
  return families;
}

std::span<const KernelInfo> cuda_kernels() {
  // Function-local static: built once, thread-safe (C++11 magic statics).
  static const std::vector<KernelInfo> table = table_of(Pass::forward);
  return table;
}

std::span<const KernelInfo> cuda_backward_kernels() {
  static const std::vector<KernelInfo> table = table_of(Pass::backward);
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

uint32_t features_of(const BwdParams& p) { return features_of(p.fwd) | (p.deterministic ? kDeterministic : 0u); }

}  // namespace vflash
