// `vflash doctor`: one model of the report (device, binary contents, decisions
// for representative calls and their backward, a per-capability portability
// table), rendered as text or as JSON.
#include "doctor.hpp"

#include <algorithm>
#include <cstdio>

#include "dispatch.hpp"
#include "registry.hpp"
#include "vflash/vflash.h"

namespace vflash {
namespace {

// Dispatch reads cu_seqlens / lse only to tell varlen from dense and whether
// LSE is wanted; these stand in for the caller's pointers.
const int32_t kMarkerCuSeqlens[1] = {0};
float kMarkerLse[1];

RepresentativeCall varlen_call(std::string name, std::string description, DType dtype, int batch, int max_seqlen,
                               int heads_q, int heads_k, int d, int ordinal) {
  RepresentativeCall c{std::move(name), std::move(description), {}};
  FwdParams& p = c.params;
  p.dtype = dtype;
  p.cu_seqlens_q = p.cu_seqlens_k = kMarkerCuSeqlens;
  p.batch = batch;
  p.max_seqlen_q = p.max_seqlen_k = max_seqlen;
  p.total_q = p.total_k = int64_t(batch) * max_seqlen;
  p.heads_q = heads_q;
  p.heads_k = heads_k;
  p.head_dim = p.head_dim_v = d;
  p.device = ordinal;
  return c;
}

struct CallDecision {
  RepresentativeCall call;
  Decision decision;
};

struct KernelProbe {
  const KernelInfo* kernel;
  LoadProbe probe;
};

struct PortabilityRow {
  arch::Capability cc;
  std::vector<const KernelInfo*> choice;  // per representative call; null: none
};

struct Report {
  DeviceInfo device;
  std::optional<std::string> forced;
  std::vector<KernelProbe> probes;  // only for a real device
  std::vector<CallDecision> calls;
  std::vector<CallDecision> backward_calls;  // the backward of each varlen call
  std::vector<PortabilityRow> portability;
};

Report build_report() {
  Report r;
  r.device = query_device(-1);
  r.forced = forced_kernel();
  if (r.device.present && !r.device.pretended) {
    for (const KernelInfo& k : cuda_kernels()) r.probes.push_back({&k, probe_kernel(k, r.device.ordinal)});
    for (const KernelInfo& k : cuda_backward_kernels()) r.probes.push_back({&k, probe_kernel(k, r.device.ordinal)});
  }
  const auto calls = representative_calls(r.device.ordinal < 0 ? 0 : r.device.ordinal);
  // Every decision of the report under the one forcing it shows.
  for (const auto& call : calls) r.calls.push_back({call, select_kernel(call.params, r.device, r.forced)});
  for (const auto& call : calls) {
    if (!call.params.is_varlen()) continue;  // the backward is varlen only
    BwdParams backward;
    backward.fwd = call.params;
    backward.fwd.lse = kMarkerLse;  // the backward always reads the forward's lse
    r.backward_calls.push_back({call, select_backward_kernel(backward, r.device, r.forced)});
  }
  for (const auto cc : arch::known_capabilities()) {
    DeviceInfo as_if;
    as_if.present = as_if.pretended = true;
    as_if.ordinal = 0;
    as_if.cc = cc;
    PortabilityRow row{cc, {}};
    for (const auto& call : calls) row.choice.push_back(select_kernel(call.params, as_if, r.forced).kernel);
    r.portability.push_back(std::move(row));
  }
  return r;
}

std::string capability_or_none(const DeviceInfo& d) { return d.present ? arch::to_string(d.cc) : ""; }

}  // namespace

std::vector<RepresentativeCall> representative_calls(int ordinal) {
  std::vector<RepresentativeCall> calls;
  calls.push_back(varlen_call("vit_d72_bf16_varlen",
                              "Qwen3-VL / SigLIP-so400m encoder: 8 images up to 4096 tokens packed, 16 heads, d72, bf16",
                              DType::bf16, 8, 4096, 16, 16, 72, ordinal));
  calls.push_back(varlen_call("vit_d80_window64_bf16",
                              "Qwen2.5-VL windowed layer: 344 windows of 64 tokens, 16 heads, d80, bf16", DType::bf16,
                              344, 64, 16, 16, 80, ordinal));
  auto gqa = varlen_call("llm_gqa_d128_causal_bf16",
                         "LLM prefill: 32 query / 8 KV heads, d128, causal, LSE, bf16", DType::bf16, 4, 8192, 32, 8,
                         128, ordinal);
  gqa.params.causal = true;
  gqa.params.window_right = 0;
  gqa.params.lse = kMarkerLse;
  calls.push_back(gqa);
  auto local = varlen_call("llm_sliding_window_d128_bf16",
                           "LLM prefill with a causal sliding window of 4096 keys, GQA 32/8, d128, bf16", DType::bf16,
                           4, 16384, 32, 8, 128, ordinal);
  local.params.causal = true;
  local.params.window_left = 4095;
  local.params.window_right = 0;
  calls.push_back(local);
  RepresentativeCall dense{"dense_d256_fp16", "dense (2, 2048, 8, 256) tensors, fp16", {}};
  dense.params.dtype = DType::fp16;
  dense.params.batch = 2;
  dense.params.seqlen_q = dense.params.seqlen_k = dense.params.max_seqlen_q = dense.params.max_seqlen_k = 2048;
  dense.params.heads_q = dense.params.heads_k = 8;
  dense.params.head_dim = dense.params.head_dim_v = 256;
  dense.params.device = ordinal;
  calls.push_back(dense);
  auto softcap = varlen_call("d40_softcap_bf16", "varlen, 12 heads, d40, logit softcap 30, bf16", DType::bf16, 16,
                             512, 12, 12, 40, ordinal);
  softcap.params.softcap = 30.f;
  calls.push_back(softcap);
  return calls;
}

std::string json_quote(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string doctor_report_text() {
  const Report r = build_report();
  std::string s = "vflash " + std::string(vflash_version()) + " doctor\n\n";
  const DeviceInfo& d = r.device;
  if (d.present) {
    s += "Device " + std::to_string(d.ordinal) + ": " + d.name + ", compute capability " + arch::to_string(d.cc) +
         ", " + arch::family_name(d.cc) + (d.pretended ? " [pretended: no CUDA call made]" : "") + "\n";
  } else {
    s += "Device: no CUDA device (" + d.absent_reason + "); host tensors run on the CPU reference\n";
  }
  s += "Forced kernel: " + r.forced.value_or("none");
  if (r.forced)
    if (const std::string why = unknown_kernel(*r.forced); !why.empty())
      s += " -- " + why + ": every CUDA call fails until VFLASH_FORCE_KERNEL names one";
  s += "\n\n";

  s += "This binary holds:\n";
  if (kernel_families().empty()) s += "  no CUDA kernel (only the CPU reference)\n";
  for (const KernelFamily& f : kernel_families()) {
    s += "  family " + std::string(f.name) + ": targets " + f.targets + "\n";
    for (const KernelInfo& k : f.kernels)
      s += "    " + std::string(k.name) + " (rank " + std::to_string(k.rank) + "): " + k.description + "\n";
    for (const KernelInfo& k : f.backward_kernels)
      s += "    " + std::string(k.name) + " (backward, rank " + std::to_string(k.rank) + "): " + k.description + "\n";
  }
  for (const KernelProbe& p : r.probes)
    s += "  on device " + std::to_string(d.ordinal) + ", " + p.kernel->name + " " + p.probe.detail + "\n";

  const auto describe_calls = [&](const std::vector<CallDecision>& calls) {
    for (const CallDecision& c : calls) {
      s += "  " + c.call.name + ": " + c.call.description + "\n";
      if (c.decision.kernel)
        s += "    -> " + std::string(c.decision.kernel->name) + " (" + c.decision.loadable_target + ")\n";
      else
        s += "    -> no kernel" + std::string(d.present ? "" : " (no CUDA device, see above: CUDA tensors would fail; host tensors use the CPU reference)") + "\n";
      // Without a device, the kernels turned down for that alone go on one line:
      // the reason is the device line's.
      std::string need_device;
      for (const CandidateVerdict& v : c.decision.verdicts) {
        if (!d.present && v.reason == kNoDeviceReason) {
          need_device += (need_device.empty() ? "" : ", ") + std::string(v.kernel->name);
          continue;
        }
        s += "       " + std::string(v.accepted ? "+ " : "- ") + v.kernel->name + ": " + v.reason + "\n";
      }
      if (!need_device.empty()) s += "       would serve it on a GPU: " + need_device + "\n";
    }
  };
  s += "\nRepresentative calls on this device:\n";
  describe_calls(r.calls);
  s += "\nTheir backward (varlen calls), on this device:\n";
  describe_calls(r.backward_calls);

  s += "\nKernel each call would get on each capability (selection from this binary's targets):\n";
  for (const PortabilityRow& row : r.portability) {
    // Calls grouped by the kernel they get, in call order.
    std::vector<std::pair<std::string, std::string>> groups;
    for (size_t i = 0; i < row.choice.size(); ++i) {
      const std::string kernel = row.choice[i] ? row.choice[i]->name : "none";
      auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& x) { return x.first == kernel; });
      if (g == groups.end()) g = groups.insert(groups.end(), {kernel, ""});
      g->second += (g->second.empty() ? "" : ", ") + r.calls[i].call.name;
    }
    s += "  " + arch::family_name(row.cc) + ":";
    for (size_t i = 0; i < groups.size(); ++i)
      s += (i ? "; " : " ") + groups[i].first + (groups.size() == 1 ? " for every call" : " for " + groups[i].second);
    s += "\n";
  }
  return s;
}

std::string doctor_report_json() {
  const Report r = build_report();
  const DeviceInfo& d = r.device;
  auto q = [](std::string_view t) { return json_quote(t); };
  auto kernel_or_null = [&](const KernelInfo* k) { return k ? q(k->name) : std::string("null"); };

  std::string s = "{\n  \"version\": " + q(vflash_version()) + ",\n";
  s += "  \"device\": {\"present\": " + std::string(d.present ? "true" : "false") +
       ", \"pretended\": " + (d.pretended ? "true" : "false") + ", \"ordinal\": " + std::to_string(d.ordinal) +
       ", \"name\": " + q(d.name) + ", \"capability\": " + (d.present ? q(capability_or_none(d)) : "null") +
       ", \"family\": " + (d.present ? q(arch::family_name(d.cc)) : "null") +
       ", \"absent_reason\": " + (d.present ? "null" : q(d.absent_reason)) + "},\n";
  s += "  \"forced_kernel\": " + (r.forced ? q(*r.forced) : "null") + ",\n";
  const std::string forced_error = r.forced ? unknown_kernel(*r.forced) : "";
  s += "  \"forced_kernel_error\": " + (forced_error.empty() ? "null" : q(forced_error)) + ",\n";

  s += "  \"families\": [";
  bool first = true;
  for (const KernelFamily& f : kernel_families()) {
    s += std::string(first ? "\n" : ",\n") + "    {\"name\": " + q(f.name) + ", \"targets\": [";
    first = false;
    bool first_target = true;
    for (const auto& t : arch::parse_target_list(f.targets)) {
      s += (first_target ? "" : ", ") + q(arch::to_string(t));
      first_target = false;
    }
    s += "], \"kernels\": [";
    bool first_kernel = true;
    for (const KernelInfo& k : f.kernels) {
      s += std::string(first_kernel ? "" : ", ") + "{\"name\": " + q(k.name) + ", \"rank\": " +
           std::to_string(k.rank) + ", \"description\": " + q(k.description) + "}";
      first_kernel = false;
    }
    s += "], \"backward_kernels\": [";
    first_kernel = true;
    for (const KernelInfo& k : f.backward_kernels) {
      s += std::string(first_kernel ? "" : ", ") + "{\"name\": " + q(k.name) + ", \"rank\": " +
           std::to_string(k.rank) + ", \"description\": " + q(k.description) + "}";
      first_kernel = false;
    }
    s += "]}";
  }
  s += first ? "],\n" : "\n  ],\n";

  s += "  \"load_probes\": [";
  for (size_t i = 0; i < r.probes.size(); ++i)
    s += std::string(i ? ", " : "") + "{\"kernel\": " + q(r.probes[i].kernel->name) + ", \"loadable\": " +
         (r.probes[i].probe.loadable ? "true" : "false") + ", \"detail\": " + q(r.probes[i].probe.detail) + "}";
  s += "],\n";

  const auto calls_json = [&](const char* key, const std::vector<CallDecision>& calls) {
    s += std::string("  \"") + key + "\": [";
    for (size_t i = 0; i < calls.size(); ++i) {
      const CallDecision& c = calls[i];
      s += std::string(i ? ",\n" : "\n") + "    {\"name\": " + q(c.call.name) + ", \"description\": " +
           q(c.call.description) + ", \"kernel\": " + kernel_or_null(c.decision.kernel) + ", \"target\": " +
           (c.decision.kernel ? q(c.decision.loadable_target) : "null") + ", \"verdicts\": [";
      for (size_t j = 0; j < c.decision.verdicts.size(); ++j) {
        const CandidateVerdict& v = c.decision.verdicts[j];
        s += std::string(j ? ", " : "") + "{\"kernel\": " + q(v.kernel->name) + ", \"accepted\": " +
             (v.accepted ? "true" : "false") + ", \"reason\": " + q(v.reason) + "}";
      }
      s += "]}";
    }
    s += calls.empty() ? "],\n" : "\n  ],\n";
  };
  calls_json("calls", r.calls);
  calls_json("backward_calls", r.backward_calls);

  s += "  \"portability\": [";
  for (size_t i = 0; i < r.portability.size(); ++i) {
    const PortabilityRow& row = r.portability[i];
    s += std::string(i ? ",\n" : "\n") + "    {\"capability\": " + q(arch::to_string(row.cc)) +
         ", \"family\": " + q(arch::family_name(row.cc)) + ", \"kernels\": {";
    for (size_t j = 0; j < row.choice.size(); ++j)
      s += std::string(j ? ", " : "") + q(r.calls[j].call.name) + ": " + kernel_or_null(row.choice[j]);
    s += "}}";
  }
  s += "\n  ]\n}\n";
  return s;
}

}  // namespace vflash
