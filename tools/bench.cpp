// `vflash bench <workloads.json>`: times each workload of a JSON file
// (bench/workloads.json's schema) on the GPU with random bf16 inputs. Per
// workload and kernel it prints the median time of many runs, TFLOP/s at the
// true head dim and the share of a bf16 matmul measured with cuBLAS on the same
// GPU in the same run. Four stages, one file each:
//   parse  (bench_workloads.cpp)  the workload file,
//   plan   (bench_plan.cpp)       the command line and the cases it asks for,
//   time   (bench_time.cpp)       inputs on the GPU, timed by bench_core.hpp,
//   report (bench_report.cpp)     the table and the JSON file.
#include "bench.hpp"

#include <cuda_runtime.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench_core.hpp"
#include "bench_plan.hpp"
#include "bench_report.hpp"
#include "bench_time.hpp"
#include "bench_workloads.hpp"
#include "dispatch.hpp"
#include "registry.hpp"
#include "vflash/vflash.hpp"

namespace vflash::cli {

using namespace vflash::bench;

namespace {

int run(const Options& options, const std::vector<Workload>& workloads) {
  int ordinal = 0;
  cuda_check(cudaGetDevice(&ordinal), "cudaGetDevice");
  const DeviceInfo device = query_device(ordinal);
  if (!device.present) {
    std::fprintf(stderr, "vflash bench: no usable CUDA GPU (%s)\n", device.absent_reason.c_str());
    return 2;
  }
  cudaStream_t stream;
  cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  const L2Flush flush(ordinal);
  const TimingPolicy policy{.budget_ms = options.budget_ms};
  const RandomBf16 random(random_pool_size(workloads));

  Report report;
  const double peak = matmul_peak_tflops(flush, stream, random, policy);
  report.header({.device = device.name,
                 .cc = arch::to_string(device.cc),
                 .version = vflash_version(),
                 .l2_mib = int(flush.l2_bytes() >> 20),
                 .matmul_tflops = peak});

  bool failed = false;
  // Times case `c` into `row`; throws what the library or CUDA threw.
  const auto time_case = [&](const Case& c, Problem& problem, Row& row) {
    if (c.forcing) set_forced_kernel(*c.forcing);
    std::string why;
    const auto name = problem.kernel(device, why);
    if (!name) {
      row.kernel = c.forcing.value_or("(none)");
      row.note = "skipped: " + why;
      if (!c.skip_if_unserved) failed = true;
      return;
    }
    row.kernel = *name;
    report.start(row);
    problem.prepare();
    row.ms = median_ms([&] { problem.launch(); }, flush, stream, policy);
    row.tflops = tflops(c.workload->flops(), row.ms);
    row.percent = 100.0 * row.tflops / peak;
    row.ok = true;
  };

  std::unique_ptr<Problem> problem;  // inputs of the current workload, shared by its cases
  const Workload* problem_of = nullptr;
  for (const Case& c : plan_cases(workloads, options, cuda_kernels())) {
    if (problem_of != c.workload) {
      problem.reset();
      problem = std::make_unique<Problem>(*c.workload, random, ordinal, stream);
      problem_of = c.workload;
    }
    Row row;
    row.workload = c.workload->name;
    try {
      time_case(c, *problem, row);
    } catch (const std::exception& e) {
      if (row.kernel.empty()) row.kernel = c.forcing.value_or("(dispatch)");
      row.note = std::string("failed: ") + e.what();
      failed = true;
      // A CUDA error that poisons the context ends the run: later rows would only repeat it.
      if (cudaDeviceSynchronize() != cudaSuccess) {
        report.finish(row);
        throw;
      }
    }
    if (c.forcing) set_forced_kernel(std::nullopt);
    report.finish(row);
  }
  cudaStreamDestroy(stream);
  if (options.json_out) report.write_json(*options.json_out);
  return failed ? 1 : 0;
}

}  // namespace

int run_bench(int argc, char** argv) {
  Options options;
  std::vector<Workload> workloads;
  try {
    const auto parsed = parse_options(argc, argv);
    if (!parsed) {
      print_usage(stdout);
      return 0;
    }
    options = *parsed;
    workloads = read_workloads(options.file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vflash bench: %s\n", e.what());
    print_usage(stderr);
    return 1;
  }

  if (options.list) {
    for (const Workload& w : workloads)
      std::printf("%-32s %-64s %10.1f GFLOP\n", w.name.c_str(), w.describe().c_str(), w.flops() / 1e9);
    return 0;
  }

  int device_count = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&device_count); err != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "vflash bench: no usable CUDA GPU (%s); the benchmark needs one (--list works without)\n",
                 err != cudaSuccess ? cudaGetErrorString(err) : "no device found");
    return 2;
  }
  try {
    return run(options, workloads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vflash bench: %s\n", e.what());
    return 1;
  }
}

}  // namespace vflash::cli
