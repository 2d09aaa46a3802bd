// `vflash bench`, stage 1 (parse): the workload file.
//
// Schema (bench/workloads.json):
//   {"dense":  [{"name", "batch", "seqlen", "heads", "head_dim", "causal"?}, ...],
//    "varlen": [{"name", "seqlens", "heads_q", "heads_k", "head_dim", "causal"?}, ...]}
// "seqlens" is an array of lengths or a string "NxL" (N sequences of length L).
// Other top-level members (e.g. "_doc") are ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vflash::bench {

struct Workload {
  std::string name;
  bool dense = false;
  int batch = 0, seqlen = 0;  // dense
  std::vector<int> seqlens;   // varlen (dense: batch copies of seqlen)
  int heads_q = 0, heads_k = 0, head_dim = 0;
  bool causal = false;

  double flops() const;  // bench_core.hpp's convention
  int64_t total() const;
  int max_seqlen() const;
  std::string describe() const;  // one line for --list
};

// Reads and checks a workload file. Throws std::runtime_error naming the file
// and the place ("varlen[2].seqlens: ...", "JSON line 3, column 7: ...").
std::vector<Workload> read_workloads(const std::string& file);

}  // namespace vflash::bench
