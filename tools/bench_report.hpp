// `vflash bench`, stage 4 (report): the table on stdout, as the cases run, and
// the JSON file of --json.
#pragma once

#include <string>
#include <vector>

namespace vflash::bench {

struct Row {
  std::string workload, kernel;
  std::string note;  // "skipped: ..." or "failed: ..." when !ok
  double ms = 0, tflops = 0, percent = 0;
  bool ok = false;
};

struct RunInfo {
  std::string device, cc, version;
  int l2_mib = 0;
  double matmul_tflops = 0;
};

class Report {
 public:
  void header(const RunInfo& info);
  // Prints the row's workload and kernel before it is timed, so that a kernel
  // that never returns is identified.
  void start(const Row& row);
  // Prints the rest of the row (all of it if start() was not called) and keeps it.
  void finish(const Row& row);
  // The rows as JSON: {"device", "cc", "matmul_tflops", "rows": [{"case", "kernel",
  // "ms", "tflops", "pct_matmul"} or {"case", "kernel", "error"}]}.
  void write_json(const std::string& path) const;

 private:
  RunInfo info_;
  std::vector<Row> rows_;
  bool started_ = false;
};

}  // namespace vflash::bench
