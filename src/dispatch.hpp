// Dispatch: choose the best registered kernel valid for the device and the call.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "arch.hpp"
#include "params.hpp"
#include "registry.hpp"

namespace vflash {

struct DeviceInfo {
  bool present = false;      // a CUDA device is usable (or a capability is pretended)
  int ordinal = -1;
  std::string name;          // "NVIDIA H100 80GB HBM3", or "(pretended)" / "(none)"
  arch::Capability cc;
  bool pretended = false;    // cc comes from vflash_pretend_capability / VFLASH_PRETEND_CC
  std::string absent_reason; // why present is false, e.g. the CUDA error string
};

// The verdict of every kernel when the device is absent; DeviceInfo's
// absent_reason says why, once.
inline constexpr std::string_view kNoDeviceReason = "no CUDA device";

struct CandidateVerdict {
  const KernelInfo* kernel = nullptr;
  bool accepted = false;
  std::string reason;  // why accepted / rejected, in words
};

struct Decision {
  const KernelInfo* kernel = nullptr;  // null: nothing can serve the call
  std::string loadable_target;         // the target whose code would run, e.g. "sm_90a"
  std::vector<CandidateVerdict> verdicts;  // every registered kernel, best rank first
};

// Device `ordinal` (honours a pretended capability). Never throws.
DeviceInfo query_device(int ordinal);

// Pure selection over the registry: no CUDA calls when device.pretended.
// Otherwise also confirms with cudaFuncGetAttributes that the binary holds code
// loadable on the device, falling to the next candidate when not. `forced`
// restricts it to one kernel: a caller that also keys a cache on the forcing
// reads forced_kernel() once and passes that value, so the key and the
// decision cannot disagree when another thread changes the forcing.
Decision select_kernel(const FwdParams& params, const DeviceInfo& device,
                       const std::optional<std::string>& forced);
// As above under the forcing of the moment (one read of forced_kernel()).
Decision select_kernel(const FwdParams& params, const DeviceInfo& device);
// The same selection over any kernel table (tests use synthetic tables).
Decision select_kernel_from(std::span<const KernelInfo> kernels, const FwdParams& params,
                            const DeviceInfo& device, const std::optional<std::string>& forced);
Decision select_kernel_from(std::span<const KernelInfo> kernels, const FwdParams& params,
                            const DeviceInfo& device);
// Backward selection: the same rules over the backward kernels (Pass::backward),
// with the backward call's features (deterministic included). A forced name
// restricts the pass of the kernel it names: forcing a forward kernel leaves
// the backward to dispatch, and the reverse.
Decision select_backward_kernel(const BwdParams& params, const DeviceInfo& device,
                                const std::optional<std::string>& forced);
Decision select_backward_kernel_from(std::span<const KernelInfo> kernels, const BwdParams& params,
                                     const DeviceInfo& device, const std::optional<std::string>& forced);
// One line saying why a decision without a kernel has none (for error messages).
std::string describe_rejections(const Decision& decision);

// Whether the binary holds code for `kernel` loadable on device `ordinal`
// (cudaFuncGetAttributes on its probe symbol; cached per symbol and device).
struct LoadProbe {
  bool loadable = false;
  std::string detail;  // "sm_90 machine code (binaryVersion 90, ptxVersion 80)" or the CUDA error
};
LoadProbe probe_kernel(const KernelInfo& kernel, int ordinal);

// Test / diagnosis overrides (also read once from VFLASH_FORCE_KERNEL and
// VFLASH_PRETEND_CC). Empty optional clears.
void set_forced_kernel(std::optional<std::string> name);
void set_pretended_capability(std::optional<arch::Capability> cc);
std::optional<std::string> forced_kernel();
std::optional<arch::Capability> pretended_capability();

// Empty when `name` is a kernel of `kernels`; otherwise why not, naming the
// kernels there are ("no kernel named 'x' in this build (kernels: a, b)").
std::string unknown_kernel(std::string_view name, std::span<const KernelInfo> kernels);
std::string unknown_kernel(std::string_view name);  // over this build's forward and backward kernels

}  // namespace vflash
