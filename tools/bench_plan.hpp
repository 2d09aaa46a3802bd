// `vflash bench`, stage 2 (plan): the command line, and the cases it asks for
// (workload x kernel forcing), in the order they are timed.
#pragma once

#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench_workloads.hpp"
#include "registry.hpp"

namespace vflash::bench {

struct Options {
  std::string file;
  std::optional<std::string> kernel;
  bool all_kernels = false;
  bool list = false;
  std::optional<std::string> json_out;
  double budget_ms = 300;
};

void print_usage(FILE* to);

// The options of argv[1..] (argv[0] is the subcommand); nullopt for --help.
// Throws std::runtime_error for bad arguments.
std::optional<Options> parse_options(int argc, char** argv);

struct Case {
  const Workload* workload;
  // The kernel forced for this case; nullopt leaves dispatch (and
  // VFLASH_FORCE_KERNEL) alone.
  std::optional<std::string> forcing;
  // Forcing every kernel in turn: a kernel that does not serve the workload is
  // skipped, not failed.
  bool skip_if_unserved = false;
};

// Every workload, with the kernel --kernel names, or with each of `kernels`
// in turn for --all-kernels, or with dispatch's choice.
std::vector<Case> plan_cases(const std::vector<Workload>& workloads, const Options& options,
                             std::span<const KernelInfo> kernels);

}  // namespace vflash::bench
