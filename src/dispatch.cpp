// Dispatch: a selection over the kernel table. Capability questions go to
// arch.hpp; this file never compares capability numbers itself.
#include "dispatch.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>

namespace vflash {
namespace {

// Forced kernel and pretended capability: read once from the environment at
// first use; the setters override.
struct Overrides {
  std::mutex mutex;
  std::optional<std::string> forced;
  std::optional<arch::Capability> pretended;
};

Overrides& overrides() {
  static Overrides* o = [] {
    auto* fresh = new Overrides;  // never destroyed: usable from static destructors
    if (const char* name = std::getenv("VFLASH_FORCE_KERNEL"); name && *name) {
      // Kept although unknown: running default dispatch instead would let a
      // typo pass for a test of the named kernel. Every CUDA call then fails
      // with this message (api.cpp); say it at start-up too.
      fresh->forced = name;
      if (const std::string why = unknown_kernel(name); !why.empty())
        std::fprintf(stderr, "vflash: VFLASH_FORCE_KERNEL='%s' names no kernel: %s; CUDA calls will fail\n", name,
                     why.c_str());
    }
    if (const char* cc = std::getenv("VFLASH_PRETEND_CC"); cc && *cc) {
      fresh->pretended = arch::parse_capability(cc);
      if (!fresh->pretended)
        std::fprintf(stderr, "vflash: VFLASH_PRETEND_CC='%s' is not a capability (e.g. 10.3); ignored\n", cc);
    }
    return fresh;
  }();
  return *o;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::fp16: return "fp16";
    case DType::bf16: return "bf16";
    case DType::fp32: return "fp32";
  }
  return "unknown";
}

bool in_steps(int x, int lo, int hi, int step) { return x >= lo && x <= hi && step > 0 && (x - lo) % step == 0; }

bool serves_head_dims(const KernelInfo& k, int d, int dv) {
  return std::any_of(k.head_dims.begin(), k.head_dims.end(), [&](const HeadDimRule& r) {
    return in_steps(d, r.d_min, r.d_max, r.d_step) && in_steps(dv, r.dv_min, r.dv_max, r.dv_step) &&
           (!r.same_dv || d == dv);
  });
}

std::string describe_head_dims(const KernelInfo& k) {
  std::string s;
  for (const HeadDimRule& r : k.head_dims) {
    if (!s.empty()) s += "; ";
    s += "d " + std::to_string(r.d_min) + ".." + std::to_string(r.d_max) + " step " + std::to_string(r.d_step);
    if (r.same_dv)
      s += " with d_v = d";
    else
      s += ", d_v " + std::to_string(r.dv_min) + ".." + std::to_string(r.dv_max) + " step " + std::to_string(r.dv_step);
  }
  return s.empty() ? "none" : s;
}

// What lifts kernel k's efficiency floor, for the explanation of a call below it.
std::string floor_exemption(const KernelInfo& k) {
  if (k.packs_varlen_up_to_seqlen_k == 0) return "";
  return " (varlen calls with max_seqlen_k <= " + std::to_string(k.packs_varlen_up_to_seqlen_k) +
         " are exempt: they pack sequences into tiles)";
}

std::string feature_names(uint32_t mask) {
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {kCausal, "causal"}, {kWindow, "window"}, {kSoftcap, "softcap"}, {kGqa, "GQA/MQA"},
      {kLse, "LSE"},       {kDense, "dense"},   {kVarlen, "varlen"},   {kDeterministic, "deterministic"}};
  std::string s;
  for (auto [bit, name] : kNames)
    if (mask & bit) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}

// Why `k` cannot serve the call on `device` from its declared data alone;
// empty when it can. Sets `target` to the code that would load.
std::string static_rejection(const KernelInfo& k, const FwdParams& p, uint32_t features, const DeviceInfo& device,
                             const std::optional<std::string>& forced, std::string& target) {
  if (forced && *forced != k.name) return "not the forced kernel '" + *forced + "'";
  if (!(k.dtypes & dtype_bit(p.dtype))) return std::string("does not support dtype ") + dtype_name(p.dtype);
  if (!serves_head_dims(k, p.head_dim, p.head_dim_v))
    return "does not serve head dim " + std::to_string(p.head_dim) + " / d_v " + std::to_string(p.head_dim_v) +
           " (serves " + describe_head_dims(k) + ")";
  if (const uint32_t missing = features & ~k.features; missing)
    return "does not support " + feature_names(missing);
  // The device's absent_reason says why; callers report it once per device,
  // not once per kernel.
  if (!device.present) return std::string(kNoDeviceReason);
  const auto targets = arch::parse_target_list(k.targets ? k.targets : "");
  const auto chosen = arch::preferred_target(targets, device.cc);
  if (!chosen)
    return "none of its targets (" + std::string(k.targets ? k.targets : "none") + ") runs on " +
           arch::family_name(device.cc);
  target = arch::to_string(*chosen);
  return {};
}

}  // namespace

void set_forced_kernel(std::optional<std::string> name) {
  Overrides& o = overrides();
  std::lock_guard lock(o.mutex);
  o.forced = std::move(name);
}

void set_pretended_capability(std::optional<arch::Capability> cc) {
  Overrides& o = overrides();
  std::lock_guard lock(o.mutex);
  o.pretended = cc;
}

std::optional<std::string> forced_kernel() {
  Overrides& o = overrides();
  std::lock_guard lock(o.mutex);
  return o.forced;
}

std::optional<arch::Capability> pretended_capability() {
  Overrides& o = overrides();
  std::lock_guard lock(o.mutex);
  return o.pretended;
}

DeviceInfo query_device(int ordinal) {
  DeviceInfo info;
  info.ordinal = ordinal;
  if (const auto cc = pretended_capability()) {
    info.ordinal = ordinal < 0 ? 0 : ordinal;  // "the current device": the default one
    info.present = true;
    info.pretended = true;
    info.cc = *cc;
    info.name = "(pretended)";
    return info;
  }
  info.name = "(none)";
  int count = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess) {
    cudaGetLastError();  // not the caller's error: do not leave it behind
    // Without a GPU the runtime reports a missing or too old driver; say both.
    info.absent_reason = std::string(err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice
                                         ? "no usable CUDA driver or GPU: "
                                         : "") +
                         cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
    return info;
  }
  if (count == 0) {
    info.absent_reason = "no CUDA-capable device is detected";
    return info;
  }
  if (ordinal < 0 && cudaGetDevice(&info.ordinal) != cudaSuccess) info.ordinal = 0;
  if (info.ordinal >= count) {
    info.absent_reason = "device ordinal " + std::to_string(info.ordinal) + " out of range (" +
                         std::to_string(count) + " device(s))";
    return info;
  }
  // Properties do not change while the process lives: query each device once.
  static std::mutex mutex;
  static std::map<int, DeviceInfo> cache;
  std::lock_guard lock(mutex);
  if (auto it = cache.find(info.ordinal); it != cache.end()) return it->second;
  cudaDeviceProp prop{};
  if (const cudaError_t err = cudaGetDeviceProperties(&prop, info.ordinal); err != cudaSuccess) {
    cudaGetLastError();
    info.absent_reason = cudaGetErrorString(err);
    return info;
  }
  info.present = true;
  info.name = prop.name;
  info.cc = {prop.major, prop.minor};
  cache.emplace(info.ordinal, info);
  return info;
}

LoadProbe probe_kernel(const KernelInfo& kernel, int ordinal) {
  if (!kernel.probe_symbol) return {false, "kernel declares no probe symbol"};
  const void* symbol = kernel.probe_symbol();
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, LoadProbe> cache;
  std::lock_guard lock(mutex);
  if (auto it = cache.find({symbol, ordinal}); it != cache.end()) return it->second;

  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  LoadProbe probe;
  cudaError_t err = previous == ordinal ? cudaSuccess : cudaSetDevice(ordinal);
  cudaFuncAttributes attr{};
  if (err == cudaSuccess) err = cudaFuncGetAttributes(&attr, symbol);
  if (err == cudaSuccess) {
    probe.loadable = true;
    probe.detail = "loads (binaryVersion " + std::to_string(attr.binaryVersion) + ", ptxVersion " +
                   std::to_string(attr.ptxVersion) + ")";
  } else {
    cudaGetLastError();  // a failed probe is an answer, not an error to leave behind
    probe.detail = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  }
  if (previous >= 0 && previous != ordinal) cudaSetDevice(previous);
  cache.emplace(std::make_pair(symbol, ordinal), probe);
  return probe;
}

std::string unknown_kernel(std::string_view name, std::span<const KernelInfo> kernels) {
  std::string known;
  for (const KernelInfo& k : kernels) {
    if (name == k.name) return {};
    known += (known.empty() ? "" : ", ") + std::string(k.name);
  }
  return "no kernel named '" + std::string(name) + "' in this build (kernels: " + (known.empty() ? "none" : known) +
         ")";
}

std::string unknown_kernel(std::string_view name) {
  std::vector<KernelInfo> every(cuda_kernels().begin(), cuda_kernels().end());
  every.insert(every.end(), cuda_backward_kernels().begin(), cuda_backward_kernels().end());
  return unknown_kernel(name, every);
}

namespace {

// Selection among the kernels of `pass` in `kernels` for a call of these
// shapes and features. A forced name restricts the pass of the kernel it
// names; forcing a kernel of the other pass leaves this one to dispatch.
Decision select_among(std::span<const KernelInfo> kernels, Pass pass, const FwdParams& params, uint32_t features,
                      const DeviceInfo& device, std::optional<std::string> forced) {
  if (forced) {
    bool names_this_pass = false, names_other_pass = false;
    for (const KernelInfo& k : kernels)
      if (*forced == k.name) (k.pass == pass ? names_this_pass : names_other_pass) = true;
    if (names_other_pass && !names_this_pass) forced.reset();
  }
  // Kernels efficient for this call first, then by rank.
  const auto efficient = [&](const KernelInfo* k) { return !below_efficiency_floor(*k, params); };
  std::vector<const KernelInfo*> order;
  for (const KernelInfo& k : kernels)
    if (k.pass == pass) order.push_back(&k);
  std::stable_sort(order.begin(), order.end(), [&](const KernelInfo* a, const KernelInfo* b) {
    if (efficient(a) != efficient(b)) return efficient(a);
    return a->rank > b->rank;
  });

  Decision decision;
  for (const KernelInfo* k : order) {
    CandidateVerdict verdict{k, false, {}};
    std::string target;
    verdict.reason = static_rejection(*k, params, features, device, forced, target);
    if (verdict.reason.empty()) {
      if (decision.kernel) {
        verdict.reason = "valid, but " + std::string(decision.kernel->name) +
                         (efficient(k) ? " ranks higher"
                                       : " is preferred: max_seqlen_q " + std::to_string(params.max_seqlen_q) +
                                             " is below this kernel's efficiency floor of " +
                                             std::to_string(k->min_efficient_seqlen_q) + floor_exemption(*k));
      } else if (!device.pretended) {
        if (const LoadProbe probe = probe_kernel(*k, device.ordinal); probe.loadable) {
          verdict.accepted = true;
          verdict.reason = "chosen: runs " + target + " code, " + probe.detail;
        } else {
          verdict.reason = "declared " + target + " but the binary holds no loadable code: " + probe.detail;
        }
      } else {
        verdict.accepted = true;
        verdict.reason = "chosen: its " + target + " code runs on " + arch::family_name(device.cc) +
                         " (pretended; not probed)";
      }
      if (verdict.accepted) {
        decision.kernel = k;
        decision.loadable_target = target;
      }
    }
    decision.verdicts.push_back(std::move(verdict));
  }
  return decision;
}

}  // namespace

Decision select_kernel_from(std::span<const KernelInfo> kernels, const FwdParams& params,
                            const DeviceInfo& device) {
  return select_kernel_from(kernels, params, device, forced_kernel());
}

Decision select_kernel_from(std::span<const KernelInfo> kernels, const FwdParams& params,
                            const DeviceInfo& device, const std::optional<std::string>& forced) {
  return select_among(kernels, Pass::forward, params, features_of(params), device, forced);
}

namespace {

// The forcing that applies to `pass` in this build: none when the forced name
// is a kernel of the other pass (forcing restricts only its own pass).
std::optional<std::string> forcing_of(Pass pass, const std::optional<std::string>& forced) {
  if (!forced) return forced;
  for (const KernelInfo& k : pass == Pass::forward ? cuda_backward_kernels() : cuda_kernels())
    if (*forced == k.name) return std::nullopt;
  return forced;
}

}  // namespace

Decision select_kernel(const FwdParams& params, const DeviceInfo& device,
                       const std::optional<std::string>& forced) {
  return select_kernel_from(cuda_kernels(), params, device, forcing_of(Pass::forward, forced));
}

Decision select_kernel(const FwdParams& params, const DeviceInfo& device) {
  return select_kernel(params, device, forced_kernel());
}

Decision select_backward_kernel_from(std::span<const KernelInfo> kernels, const BwdParams& params,
                                     const DeviceInfo& device, const std::optional<std::string>& forced) {
  return select_among(kernels, Pass::backward, params.fwd, features_of(params), device, forced);
}

Decision select_backward_kernel(const BwdParams& params, const DeviceInfo& device,
                                const std::optional<std::string>& forced) {
  return select_backward_kernel_from(cuda_backward_kernels(), params, device, forcing_of(Pass::backward, forced));
}

std::string describe_rejections(const Decision& decision) {
  if (decision.verdicts.empty()) return "this build holds no CUDA kernel for this pass";
  std::string s;
  for (const CandidateVerdict& v : decision.verdicts)
    s += (s.empty() ? "" : "; ") + std::string(v.kernel->name) + ": " + v.reason;
  return s;
}

}  // namespace vflash
