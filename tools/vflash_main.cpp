// The `vflash` command line: doctor, a demo attention call, and bench.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "bench.hpp"
#include "dispatch.hpp"
#include "doctor.hpp"
#include "dtype.hpp"
#include "reference/reference.hpp"
#include "validate.hpp"
#include "vflash/vflash.hpp"

namespace {

constexpr const char* kUsage =
    "usage: vflash <command> [options]\n"
    "\n"
    "commands:\n"
    "  doctor [--json]        device, kernels and targets in this binary, and which kernel\n"
    "                         representative calls would run (and why the others would not)\n"
    "  demo                   a small varlen attention call (GQA, d72, bf16): on the GPU when one\n"
    "                         is present, otherwise on the CPU reference; checked against the\n"
    "                         float64 reference\n"
    "  bench <workloads.json> time the workloads of a JSON file (see tools/bench.cpp)\n"
    "  --version              the library's version\n"
    "  --help                 this text\n"
    "\n"
    "environment: VFLASH_FORCE_KERNEL=<name> forces a kernel; VFLASH_PRETEND_CC=<cc> makes dispatch\n"
    "decide as if the device had capability <cc> (e.g. 10.3).\n";

// Demo call: sequences of awkward lengths (empty, one token, tile edges) with
// grouped-query heads and the vision head dim 72.
constexpr int kSeqLens[] = {0, 1, 63, 64, 65, 197};
constexpr int kHeadsQ = 8, kHeadsK = 2, kHeadDim = 72;
constexpr double kBf16Tolerance = 1e-2;  // relative to max |reference|

struct DemoData {
  std::vector<int32_t> cu_seqlens{0};
  int32_t max_seqlen = 0;
  int64_t total = 0;
  std::vector<uint16_t> q, k, v;
};

DemoData make_demo_data(uint64_t seed) {
  DemoData d;
  for (int len : kSeqLens) {
    d.cu_seqlens.push_back(d.cu_seqlens.back() + len);
    d.max_seqlen = std::max(d.max_seqlen, len);
  }
  d.total = d.cu_seqlens.back();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  auto fill = [&](std::vector<uint16_t>& x, int heads) {
    x.resize(size_t(d.total) * heads * kHeadDim);
    for (auto& e : x) e = vflash::float_to_bf16(dist(rng));
  };
  fill(d.q, kHeadsQ);
  fill(d.k, kHeadsK);
  fill(d.v, kHeadsK);
  return d;
}

// Argument block over the given buffers (all on `device`).
vflash::VarlenArgs demo_args(const DemoData& d, int device, void* q, void* k, void* v, void* out, void* cu) {
  const int64_t batch1 = int64_t(d.cu_seqlens.size());
  vflash::VarlenArgs a;
  a.q = vflash::make_tensor(q, VFLASH_DTYPE_BF16, device, {d.total, kHeadsQ, kHeadDim});
  a.k = vflash::make_tensor(k, VFLASH_DTYPE_BF16, device, {d.total, kHeadsK, kHeadDim});
  a.v = vflash::make_tensor(v, VFLASH_DTYPE_BF16, device, {d.total, kHeadsK, kHeadDim});
  a.out = vflash::make_tensor(out, VFLASH_DTYPE_BF16, device, {d.total, kHeadsQ, kHeadDim});
  a.cu_seqlens_q = a.cu_seqlens_k = vflash::make_tensor(cu, VFLASH_DTYPE_INT32, device, {batch1});
  a.cu_seqlens_q_host = a.cu_seqlens_k_host = d.cu_seqlens.data();
  a.max_seqlen_q = a.max_seqlen_k = d.max_seqlen;
  return a;
}

// Max |out - ref| relative to max |ref|; NaN anywhere yields NaN.
double relative_error(const std::vector<uint16_t>& out, const std::vector<double>& ref) {
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double got = vflash::bf16_to_float(out[i]);
    if (std::isnan(got)) return NAN;
    max_err = std::max(max_err, std::abs(got - ref[i]));
    max_ref = std::max(max_ref, std::abs(ref[i]));
  }
  return max_ref > 0 ? max_err / max_ref : max_err;
}

#define CUDA_OR_FAIL(call)                                                                           \
  do {                                                                                               \
    if (const cudaError_t err_ = (call); err_ != cudaSuccess) {                                      \
      std::fprintf(stderr, "vflash demo: %s failed: %s\n", #call, cudaGetErrorString(err_));         \
      return false;                                                                                  \
    }                                                                                                \
  } while (0)

// Runs the demo call on CUDA device 0 into `out`; prints the kernel used.
bool run_on_gpu(DemoData& d, std::vector<uint16_t>& out) {
  const size_t q_bytes = d.q.size() * 2, kv_bytes = d.k.size() * 2;
  const size_t cu_bytes = d.cu_seqlens.size() * sizeof(int32_t);
  void *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr, *cu = nullptr, *ws = nullptr;
  struct Free {
    void** ptrs[6];
    ~Free() {
      for (void** p : ptrs) cudaFree(*p);
    }
  } free_all{{&q, &k, &v, &o, &cu, &ws}};
  CUDA_OR_FAIL(cudaMalloc(&q, q_bytes));
  CUDA_OR_FAIL(cudaMalloc(&k, kv_bytes));
  CUDA_OR_FAIL(cudaMalloc(&v, kv_bytes));
  CUDA_OR_FAIL(cudaMalloc(&o, q_bytes));
  CUDA_OR_FAIL(cudaMalloc(&cu, cu_bytes));
  CUDA_OR_FAIL(cudaMemcpy(q, d.q.data(), q_bytes, cudaMemcpyHostToDevice));
  CUDA_OR_FAIL(cudaMemcpy(k, d.k.data(), kv_bytes, cudaMemcpyHostToDevice));
  CUDA_OR_FAIL(cudaMemcpy(v, d.v.data(), kv_bytes, cudaMemcpyHostToDevice));
  CUDA_OR_FAIL(cudaMemcpy(cu, d.cu_seqlens.data(), cu_bytes, cudaMemcpyHostToDevice));
  CUDA_OR_FAIL(cudaMemset(o, 0xff, q_bytes));  // NaN poison: unwritten rows cannot pass
  vflash::VarlenArgs args = demo_args(d, 0, q, k, v, o, cu);
  args.workspace_bytes = vflash::varlen_workspace_size(args);
  if (args.workspace_bytes) CUDA_OR_FAIL(cudaMalloc(&ws, args.workspace_bytes));
  args.workspace = ws;
  std::printf("kernel: %s\n", vflash::varlen_kernel_name(args).c_str());
  vflash::varlen_fwd(args);
  CUDA_OR_FAIL(cudaDeviceSynchronize());
  out.resize(d.q.size());
  CUDA_OR_FAIL(cudaMemcpy(out.data(), o, q_bytes, cudaMemcpyDeviceToHost));
  return true;
}

int demo() {
  const uint64_t seed = std::random_device{}();
  DemoData d = make_demo_data(seed);
  std::printf("vflash demo: varlen attention, %zu sequences (lengths", std::size(kSeqLens));
  for (int len : kSeqLens) std::printf(" %d", len);
  std::printf("), %d query / %d KV heads, d%d, bf16, seed %llu\n", kHeadsQ, kHeadsK, kHeadDim,
              static_cast<unsigned long long>(seed));

  std::vector<uint16_t> host_out(d.q.size(), 0xffff);
  const vflash::VarlenArgs host_args =
      demo_args(d, VFLASH_DEVICE_CPU, d.q.data(), d.k.data(), d.v.data(), host_out.data(), d.cu_seqlens.data());
  std::vector<double> ref(d.q.size());
  vflash::reference_attention(vflash::validate_varlen(host_args), ref, {});

  std::vector<uint16_t> out;
  const vflash::DeviceInfo device = vflash::query_device(0);
  if (device.present && !device.pretended) {
    std::printf("running on the GPU: %s (compute capability %s)\n", device.name.c_str(),
                vflash::arch::to_string(device.cc).c_str());
    if (!run_on_gpu(d, out)) return 1;
  } else {
    std::printf("running on the CPU reference (%s)\n",
                device.pretended ? "capability pretended: no real GPU is used" : ("no CUDA device: " + device.absent_reason).c_str());
    std::printf("kernel: %s\n", vflash::varlen_kernel_name(host_args).c_str());
    vflash::varlen_fwd(host_args);
    out = host_out;
  }
  const double err = relative_error(out, ref);
  const bool pass = err <= kBf16Tolerance;  // false for NaN
  std::printf("max error vs float64 reference: %.3e (relative to max |ref|; tolerance %.0e): %s\n", err,
              kBf16Tolerance, pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}

// A usage error: names what was wrong, then the usage, on stderr; exit code 2.
int usage_error(const std::string& what) {
  std::fprintf(stderr, "vflash: %s\n\n%s", what.c_str(), kUsage);
  return 2;
}

// "unknown option '--x'" or "unexpected argument 'x'", after `context`.
std::string unexpected(const std::string& context, const std::string& arg) {
  return context + (arg.starts_with("-") ? "unknown option '" : "unexpected argument '") + arg + "'";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "doctor") {
      bool json = false;
      for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") != 0) return usage_error(unexpected("doctor: ", argv[i]));
        if (json) return usage_error("doctor: option '--json' given twice");
        json = true;
      }
      std::fputs((json ? vflash::doctor_report_json() : vflash::doctor_report_text()).c_str(), stdout);
      return 0;
    }
    if (command == "demo") {
      if (argc > 2) return usage_error(unexpected("demo: ", argv[2]));
      return demo();
    }
    if (command == "bench") return vflash::cli::run_bench(argc - 1, argv + 1);
    if (command == "--help" || command == "-h" || command == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (command == "--version" || command == "version") {
      std::printf("vflash %s\n", vflash_version());
      return 0;
    }
  } catch (const vflash::Error& e) {
    std::fprintf(stderr, "vflash %s: %s (%s)\n", command.c_str(), e.what(),
                 vflash_status_string(static_cast<vflash_status>(e.status())));
    return 1;
  }
  if (command.empty()) return usage_error("no command given");
  return usage_error(command.starts_with("-") ? unexpected("", command) : "unknown command '" + command + "'");
}
