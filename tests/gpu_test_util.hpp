// Helpers shared by the GPU tests: device detection, checked CUDA calls, RAII
// device memory and streams, fresh seeds and random 16-bit inputs, NaN poisoning
// and tolerance-checked comparison against the float64 CPU reference.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dtype.hpp"
#include "params.hpp"
#include "vflash/vflash.h"

namespace vflash::gputest {

// Throws (GoogleTest reports the exception as a failure) on any CUDA error.
inline void check_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  if (err != cudaSuccess) {
    std::ostringstream msg;
    msg << file << ":" << line << ": " << expr << " failed: " << cudaGetErrorName(err) << " ("
        << cudaGetErrorString(err) << ")";
    throw std::runtime_error(msg.str());
  }
}
#define VFLASH_CHECK_CUDA(expr) ::vflash::gputest::check_cuda((expr), #expr, __FILE__, __LINE__)

// True when at least one CUDA device is usable; GPU tests GTEST_SKIP() otherwise.
inline bool cuda_device_present() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" / "no driver" error
    return false;
  }
  return count > 0;
}

// Owned device allocation (never zero-sized, so even empty tensors get a valid pointer).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    VFLASH_CHECK_CUDA(cudaMalloc(&ptr_, bytes ? bytes : 16));
  }
  template <class T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    upload(host);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(o.bytes_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);  // no throwing from a destructor; leaks show in memcheck
  }

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

  // upload() and poison() are complete when they return: the legacy default
  // stream they use does not order work on non-blocking streams.
  template <class T>
  void upload(const std::vector<T>& host) {
    if (host.size() * sizeof(T) != bytes_) throw std::logic_error("DeviceBuffer::upload: size mismatch");
    VFLASH_CHECK_CUDA(cudaMemcpy(ptr_, host.data(), bytes_, cudaMemcpyHostToDevice));
    VFLASH_CHECK_CUDA(cudaDeviceSynchronize());
  }
  template <class T>
  std::vector<T> download() const {
    std::vector<T> host(bytes_ / sizeof(T));
    VFLASH_CHECK_CUDA(cudaMemcpy(host.data(), ptr_, host.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // All bytes 0xFF: NaN as fp16 (0xFFFF), bf16 (0xFFFF) and fp32 (0xFFFFFFFF),
  // so anything a kernel fails to write is caught.
  void poison() {
    VFLASH_CHECK_CUDA(cudaMemset(ptr_, 0xFF, bytes_ ? bytes_ : 16));
    VFLASH_CHECK_CUDA(cudaDeviceSynchronize());
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline constexpr uint16_t kPoison16 = 0xFFFFu;

class CudaStream {
 public:
  CudaStream() { VFLASH_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }
  void synchronize() const {
    VFLASH_CHECK_CUDA(cudaStreamSynchronize(stream_));
    VFLASH_CHECK_CUDA(cudaGetLastError());
  }

 private:
  cudaStream_t stream_ = nullptr;
};

// A new seed every run (printed by the tests on failure, so a failure can be replayed
// with VFLASH_TEST_SEED=<seed>).
inline uint64_t fresh_seed() {
  if (const char* fixed = std::getenv("VFLASH_TEST_SEED")) return std::strtoull(fixed, nullptr, 10);
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

// How a failure names its seed and how to replay it.
inline std::string replay_hint(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (replay with VFLASH_TEST_SEED=" + std::to_string(seed) + ")";
}

// Runs `run(rng)` on a generator from a fresh seed, recorded as the test's
// "seed" property and named in every failure.
template <class Run>
void run_with_fresh_seed(Run&& run) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(replay_hint(seed));
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 rng(seed);
  run(rng);
}

// One fresh seed per test process, the base of the random cases.
inline uint64_t process_seed() {
  static const uint64_t base = fresh_seed();
  return base;
}

// Random case `index`: it draws from process_seed() + index, so a failing case
// replays alone with VFLASH_TEST_SEED and --gtest_filter. `draw(rng)` makes
// the case (with a name), `run(case, rng)` runs it on the same generator.
template <class Draw, class Run>
void run_random_case(int index, Draw&& draw, Run&& run) {
  const uint64_t base = process_seed();
  std::mt19937_64 rng(base + uint64_t(index));
  const auto c = draw(rng);
  SCOPED_TRACE("case " + c.name + ", " + replay_hint(base));
  ::testing::Test::RecordProperty("case", c.name);
  run(c, rng);
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::fp16: return "fp16";
    case DType::bf16: return "bf16";
    case DType::fp32: return "fp32";
  }
  return "?";
}

// The C ABI dtype of a 16-bit element type.
inline vflash_dtype api_dtype(DType t) { return t == DType::fp16 ? VFLASH_DTYPE_FP16 : VFLASH_DTYPE_BF16; }

inline float element_to_float(DType t, uint16_t bits) {
  return t == DType::fp16 ? fp16_to_float(bits) : bf16_to_float(bits);
}
inline uint16_t float_to_element(DType t, float f) {
  return t == DType::fp16 ? float_to_fp16(f) : float_to_bf16(f);
}

// n values uniform in [-amplitude, amplitude], rounded to the 16-bit dtype.
inline std::vector<uint16_t> random_elements(DType t, size_t n, float amplitude, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  std::vector<uint16_t> out(n);
  for (auto& x : out) x = float_to_element(t, dist(rng));
  return out;
}

// Relative output tolerance (of the row's largest |reference| value): the
// storage precision of the output plus what a kernel loses rounding P.
inline double output_tolerance(DType t) { return t == DType::fp16 ? 2e-3 : 1e-2; }
// Absolute (plus a small relative part) tolerance on the natural-log LSE.
inline double lse_tolerance(double ref) { return 2e-3 + 2e-4 * std::fabs(ref); }

// Compares a kernel's output against the reference, element by element:
// |got - ref| <= rel * max|ref row| (+1e-6). `got(row, head, c)` returns the
// kernel's value as float (NaN never passes). `ref` is (rows, heads, dv).
template <class Got>
::testing::AssertionResult compare_output(Got&& got, std::span<const double> ref, int64_t rows, int heads, int dv,
                                          double rel) {
  int64_t bad = 0;
  double worst_ratio = 0;
  std::ostringstream first;
  for (int64_t row = 0; row < rows; ++row) {
    for (int h = 0; h < heads; ++h) {
      const double* r = &ref[size_t((row * heads + h) * dv)];
      double scale = 0;
      for (int c = 0; c < dv; ++c) scale = std::fmax(scale, std::fabs(r[c]));
      const double bound = rel * scale + 1e-6;
      for (int c = 0; c < dv; ++c) {
        const double g = got(row, h, c);
        const double err = std::fabs(g - r[c]);
        if (!(err <= bound)) {  // NaN compares false
          if (bad < 8) {
            first << "\n  row " << row << " head " << h << " col " << c << ": got " << g << ", ref " << r[c]
                  << ", |err| " << err << " > bound " << bound;
          }
          ++bad;
        }
        if (std::isfinite(err)) worst_ratio = std::fmax(worst_ratio, err / bound);
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "worst error / bound " << worst_ratio;
  return ::testing::AssertionFailure() << bad << " of " << rows * heads * dv << " output elements out of tolerance"
                                       << " (rel " << rel << " of the row's max |ref|)" << first.str();
}

// The largest |got - ref| over all elements, each divided by its row's
// max |ref| (rows of zeros: by 1); NaN counts as infinite.
template <class Got>
double max_relative_error(Got&& got, std::span<const double> ref, int64_t rows, int heads, int dv) {
  double worst = 0;
  for (int64_t row = 0; row < rows; ++row)
    for (int h = 0; h < heads; ++h) {
      const double* r = &ref[size_t((row * heads + h) * dv)];
      double scale = 0;
      for (int c = 0; c < dv; ++c) scale = std::fmax(scale, std::fabs(r[c]));
      if (scale == 0) scale = 1;
      for (int c = 0; c < dv; ++c) {
        const double err = std::fabs(double(got(row, h, c)) - r[c]) / scale;
        worst = std::isnan(err) ? INFINITY : std::fmax(worst, err);
      }
    }
  return worst;
}

// LSE check: `got(row, head)`; `ref` is (heads, rows). -inf (row sees no key)
// must be reproduced exactly.
template <class Got>
::testing::AssertionResult compare_lse(Got&& got, std::span<const double> ref, int64_t rows, int heads) {
  int64_t bad = 0;
  std::ostringstream first;
  for (int h = 0; h < heads; ++h) {
    for (int64_t row = 0; row < rows; ++row) {
      const double r = ref[size_t(h * rows + row)];
      const double g = got(row, h);
      const bool ok = std::isinf(r) ? (std::isinf(g) && g < 0) : std::fabs(g - r) <= lse_tolerance(r);
      if (!ok) {
        if (bad < 8) first << "\n  lse row " << row << " head " << h << ": got " << g << ", ref " << r;
        ++bad;
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << rows * heads << " LSE values out of tolerance"
                                       << first.str();
}

// Elements of `got` that lie outside rows [0, rows) x heads x dim and do not
// hold the poison: stride padding a kernel wrote. (row, h) starts at offset(row, h).
template <class Offset>
int64_t stray_writes(const std::vector<uint16_t>& got, int64_t rows, int heads, int dim, Offset&& offset) {
  std::vector<bool> logical(got.size(), false);
  for (int64_t row = 0; row < rows; ++row)
    for (int h = 0; h < heads; ++h) std::fill_n(logical.begin() + offset(row, h), dim, true);
  int64_t stray = 0;
  for (size_t i = 0; i < got.size(); ++i) stray += !logical[i] && got[i] != kPoison16;
  return stray;
}

// The kernel the suite is asked to validate (VFLASH_FORCE_KERNEL, read by dispatch).
inline std::optional<std::string> forced_kernel_env() {
  const char* name = std::getenv("VFLASH_FORCE_KERNEL");
  if (name == nullptr || *name == '\0') return std::nullopt;
  return std::string(name);
}

}  // namespace vflash::gputest
