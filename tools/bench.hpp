// `vflash bench`: times attention workloads from a JSON file on the GPU.
#pragma once

namespace vflash::cli {

// Entry of the `bench` subcommand (called by tools/vflash_main.cpp). argv[0] is
// the subcommand name ("bench"), argv[1..] its arguments:
//   vflash bench <workloads.json> [--kernel NAME | --all-kernels] [--list] [--json OUT] [--budget-ms MS]
// Returns the process exit code: 0 success, 1 bad arguments or file, or a run
// that failed; 2 no usable CUDA GPU.
int run_bench(int argc, char** argv);

}  // namespace vflash::cli
