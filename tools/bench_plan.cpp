// `vflash bench`, stage 2 (plan): the command line and the list of cases.
#include "bench_plan.hpp"

#include <cstdlib>
#include <stdexcept>

namespace vflash::bench {

void print_usage(FILE* to) {
  std::fprintf(to,
               "usage: vflash bench <workloads.json> [--kernel NAME | --all-kernels] [--list] [--json OUT]\n"
               "                    [--budget-ms MS]\n"
               "  Times each workload (bf16, random inputs) with CUDA events: median ms, TFLOP/s at the\n"
               "  true head dim, %% of a bf16 cuBLAS matmul measured in the same run.\n"
               "  --kernel NAME   force this kernel (default: the one dispatch picks)\n"
               "  --all-kernels   run every kernel of this build that serves each workload\n"
               "  --list          print the parsed workloads and their FLOPs; needs no GPU\n"
               "  --json OUT      also write the results as JSON\n"
               "  --budget-ms MS  GPU time to spend timing each case (default 300; 10 to 200 runs)\n"
               "  Exit codes: 0 ok, 1 bad arguments or a failed run, 2 no CUDA GPU.\n");
}

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--kernel") {
      o.kernel = value();
    } else if (arg == "--all-kernels") {
      o.all_kernels = true;
    } else if (arg == "--list") {
      o.list = true;
    } else if (arg == "--json") {
      o.json_out = value();
    } else if (arg == "--budget-ms") {
      const std::string text = value();
      char* end = nullptr;
      o.budget_ms = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !(o.budget_ms > 0))
        throw std::runtime_error("--budget-ms needs a positive number, got " + text);
    } else if (arg == "-h" || arg == "--help") {
      return std::nullopt;
    } else if (!arg.empty() && arg[0] == '-') {
      throw std::runtime_error("unknown option " + arg);
    } else if (o.file.empty()) {
      o.file = arg;
    } else {
      throw std::runtime_error("more than one workload file given");
    }
  }
  if (o.file.empty()) throw std::runtime_error("no workload file given");
  if (o.kernel && o.all_kernels) throw std::runtime_error("--kernel and --all-kernels exclude each other");
  return o;
}

std::vector<Case> plan_cases(const std::vector<Workload>& workloads, const Options& options,
                             std::span<const KernelInfo> kernels) {
  std::vector<Case> cases;
  for (const Workload& w : workloads) {
    if (options.all_kernels) {
      for (const KernelInfo& k : kernels) cases.push_back({&w, std::string(k.name), true});
    } else {
      cases.push_back({&w, options.kernel, false});
    }
  }
  return cases;
}

}  // namespace vflash::bench
