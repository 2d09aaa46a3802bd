// `vflash bench`, stage 4 (report).
#include "bench_report.hpp"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace vflash::bench {

void Report::header(const RunInfo& info) {
  info_ = info;
  std::printf("vflash bench: %s (cc %s), L2 %d MiB, vflash %s\n", info.device.c_str(), info.cc.c_str(), info.l2_mib,
              info.version.c_str());
  std::printf("bf16 matmul 8192^3 (cuBLAS): %.1f TFLOP/s\n\n", info.matmul_tflops);
  std::printf("%-32s %-22s %10s %9s %9s\n", "workload", "kernel", "median ms", "TFLOP/s", "% matmul");
  std::fflush(stdout);
}

void Report::start(const Row& row) {
  std::printf("%-32s %-22s ", row.workload.c_str(), row.kernel.c_str());
  std::fflush(stdout);
  started_ = true;
}

void Report::finish(const Row& row) {
  if (!started_) std::printf("%-32s %-22s ", row.workload.c_str(), row.kernel.c_str());
  if (row.ok)
    std::printf("%10.3f %9.1f %8.1f%%\n", row.ms, row.tflops, row.percent);
  else
    std::printf("%s\n", row.note.c_str());
  std::fflush(stdout);
  started_ = false;
  rows_.push_back(row);
}

void Report::write_json(const std::string& path) const {
  nlohmann::json rows = nlohmann::json::array();
  for (const Row& r : rows_) {
    if (r.ok)
      rows.push_back({{"case", r.workload}, {"kernel", r.kernel}, {"ms", r.ms}, {"tflops", r.tflops},
                      {"pct_matmul", r.percent}});
    else
      rows.push_back({{"case", r.workload}, {"kernel", r.kernel}, {"error", r.note}});
  }
  const nlohmann::json doc = {
      {"device", info_.device}, {"cc", info_.cc}, {"matmul_tflops", info_.matmul_tflops}, {"rows", rows}};
  std::ofstream out(path);
  // Replace invalid UTF-8 (a device or error text) rather than throw.
  out << doc.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  if (!out) throw std::runtime_error(path + ": cannot write");
}

}  // namespace vflash::bench
