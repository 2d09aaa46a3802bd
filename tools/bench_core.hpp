// The benchmark core shared by `vflash bench` (tools/bench*.cpp) and the kernel
// micro-benchmark bench/mma_bench.cu: one timing policy and one FLOP count.
//
// Timing: a few warm-up runs give an estimate of one run, then as many runs as
// fill the time budget (within [min_runs, max_runs]) are queued on the stream,
// each preceded by a memset of a buffer twice the L2's size so that no input
// stays cached, each bracketed by CUDA events. The result is the median of the
// per-run times in milliseconds.
//
// FLOPs: 4 * Sq * Sk * H * D per sequence at the true head dim (Q*K^T and P*V),
// counting only the query/key pairs the mask keeps: s (s + 1) / 2 of them for a
// causal sequence with Sq == Sk.
//
// Header-only, host code only: it compiles under g++ and nvcc alike.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace vflash::bench {

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// FLOPs of attention over sequences with equal query and key lengths.
inline double attention_flops(const std::vector<int>& seqlens, int heads_q, int head_dim, bool causal) {
  double pairs = 0;
  for (const int s : seqlens) pairs += causal ? 0.5 * double(s) * (double(s) + 1) : double(s) * double(s);
  return 4.0 * pairs * double(heads_q) * double(head_dim);
}

// TFLOP/s of `flops` done in `ms` milliseconds.
inline double tflops(double flops, double ms) { return flops / ms / 1e9; }

struct TimingPolicy {
  double budget_ms = 300;  // GPU time to spend on the timed runs of one case
  int warmup_runs = 3;
  int min_runs = 10;
  int max_runs = 200;
};

// A device buffer at least twice the L2's size; writing it evicts every line.
class L2Flush {
 public:
  explicit L2Flush(int device) {
    int l2_bytes = 0;
    cuda_check(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device), "cudaDeviceGetAttribute(L2)");
    l2_bytes_ = size_t(l2_bytes);
    bytes_ = std::max<size_t>(2 * l2_bytes_, size_t(64) << 20);
    cuda_check(cudaMalloc(&ptr_, bytes_), "cudaMalloc(L2 flush buffer)");
  }
  ~L2Flush() { cudaFree(ptr_); }
  L2Flush(const L2Flush&) = delete;
  L2Flush& operator=(const L2Flush&) = delete;

  void enqueue(cudaStream_t stream, int run) const {
    cuda_check(cudaMemsetAsync(ptr_, run & 0xff, bytes_, stream), "cudaMemsetAsync(L2 flush)");
  }
  size_t l2_bytes() const { return l2_bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  size_t l2_bytes_ = 0;
};

// Events of `count` runs, destroyed with the object.
class EventPairs {
 public:
  explicit EventPairs(size_t count) : start_(count), stop_(count) {
    for (size_t i = 0; i < count; ++i) {
      cuda_check(cudaEventCreate(&start_[i]), "cudaEventCreate");
      cuda_check(cudaEventCreate(&stop_[i]), "cudaEventCreate");
    }
  }
  ~EventPairs() {
    for (size_t i = 0; i < start_.size(); ++i) {
      cudaEventDestroy(start_[i]);
      cudaEventDestroy(stop_[i]);
    }
  }
  EventPairs(const EventPairs&) = delete;
  EventPairs& operator=(const EventPairs&) = delete;

  size_t size() const { return start_.size(); }
  cudaEvent_t start(size_t i) const { return start_[i]; }
  cudaEvent_t stop(size_t i) const { return stop_[i]; }
  // Milliseconds of every run; the stream must have been synchronised.
  std::vector<float> elapsed_ms() const {
    std::vector<float> ms(size());
    for (size_t i = 0; i < size(); ++i) cuda_check(cudaEventElapsedTime(&ms[i], start_[i], stop_[i]), "cudaEventElapsedTime");
    return ms;
  }

 private:
  std::vector<cudaEvent_t> start_, stop_;
};

// Median milliseconds of `launch()` (which enqueues its work on `stream`) under
// `policy`, the L2 flushed before every run.
template <typename Launch>
double median_ms(Launch&& launch, const L2Flush& flush, cudaStream_t stream, const TimingPolicy& policy = {}) {
  const auto enqueue = [&](const EventPairs& events) {
    for (size_t i = 0; i < events.size(); ++i) {
      flush.enqueue(stream, int(i));
      cuda_check(cudaEventRecord(events.start(i), stream), "cudaEventRecord");
      launch();
      cuda_check(cudaEventRecord(events.stop(i), stream), "cudaEventRecord");
    }
    cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return events.elapsed_ms();
  };
  const std::vector<float> warmup = enqueue(EventPairs(size_t(std::max(policy.warmup_runs, 1))));
  const double one_run_ms = std::max(double(warmup.back()), 1e-3);
  const int runs = std::clamp(int(policy.budget_ms / one_run_ms), policy.min_runs, policy.max_runs);
  std::vector<float> ms = enqueue(EventPairs(size_t(runs)));
  std::nth_element(ms.begin(), ms.begin() + runs / 2, ms.end());
  return ms[size_t(runs / 2)];
}

}  // namespace vflash::bench
