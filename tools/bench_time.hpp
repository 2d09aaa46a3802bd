// `vflash bench`, stage 3 (time): the inputs of a workload on the GPU, the
// library call to time, and the cuBLAS matmul that serves as the yardstick.
// The timing itself is bench_core.hpp's.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_core.hpp"
#include "bench_workloads.hpp"
#include "dispatch.hpp"
#include "vflash/vflash.hpp"

namespace vflash::bench {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Random bf16 values in [-2, 2), generated once and copied out in slices.
class RandomBf16 {
 public:
  explicit RandomBf16(size_t count);
  // Copies `count` values starting at `offset` (wrapping) to device memory.
  void fill(void* dst, size_t count, size_t offset) const;

 private:
  std::vector<uint16_t> values_;
};

// Inputs, output and the argument block of one workload on the GPU.
class Problem {
 public:
  Problem(const Workload& w, const RandomBf16& random, int device, cudaStream_t stream);

  // The kernel dispatch picks for this call under the current forcing, or
  // nullopt with the reasons in `why`.
  std::optional<std::string> kernel(const DeviceInfo& device, std::string& why) const;
  // Sizes and attaches the workspace (outside the timed region).
  void prepare();
  void launch() const;

 private:
  const Workload& w_;
  DeviceBuffer q_, k_, v_, out_, cu_;
  std::unique_ptr<DeviceBuffer> workspace_;
  DenseArgs dense_;
  VarlenArgs varlen_;
};

// bf16 GEMM 8192^3 with fp32 accumulation through cuBLAS, timed like the
// workloads: the tensor-core throughput this GPU reaches, in TFLOP/s.
double matmul_peak_tflops(const L2Flush& flush, cudaStream_t stream, const RandomBf16& random,
                          const TimingPolicy& policy);

// Values RandomBf16 must hold to fill the workloads' inputs and the matmul's
// operands without repeating too soon.
size_t random_pool_size(const std::vector<Workload>& workloads);

}  // namespace vflash::bench
