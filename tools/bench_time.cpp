// `vflash bench`, stage 3 (time): inputs on the GPU and the calls to time.
#include "bench_time.hpp"

#include <cublas_v2.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "dtype.hpp"
#include "validate.hpp"

namespace vflash::bench {

#define VFLASH_CUDA(expr) cuda_check((expr), #expr)

namespace {

void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(status)));
}

constexpr int kMatmulN = 8192;

}  // namespace

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes) VFLASH_CUDA(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

RandomBf16::RandomBf16(size_t count) : values_(count) {
  uint64_t state = 0x9e3779b97f4a7c15ull ^ uint64_t(std::random_device{}());
  for (uint16_t& v : values_) {  // xorshift64*
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const uint64_t bits = state * 0x2545f4914f6cdd1dull;
    v = float_to_bf16(float(double(bits >> 11) * 0x1p-53 * 4.0 - 2.0));
  }
}

void RandomBf16::fill(void* dst, size_t count, size_t offset) const {
  auto* out = static_cast<uint16_t*>(dst);
  size_t done = 0;
  while (done < count) {
    const size_t from = (offset + done) % values_.size();
    const size_t n = std::min(count - done, values_.size() - from);
    VFLASH_CUDA(cudaMemcpy(out + done, values_.data() + from, n * 2, cudaMemcpyHostToDevice));
    done += n;
  }
}

size_t random_pool_size(const std::vector<Workload>& workloads) {
  size_t largest = size_t(kMatmulN) * kMatmulN;
  for (const Workload& w : workloads) largest = std::max(largest, size_t(w.total()) * w.heads_q * w.head_dim);
  return std::min<size_t>(largest, size_t(64) << 20);
}

Problem::Problem(const Workload& w, const RandomBf16& random, int device, cudaStream_t stream)
    : w_(w),
      q_(size_t(w.total()) * w.heads_q * w.head_dim * 2),
      k_(size_t(w.total()) * w.heads_k * w.head_dim * 2),
      v_(k_.bytes()),
      out_(q_.bytes()),
      cu_(w.dense ? 0 : (w.seqlens.size() + 1) * sizeof(int32_t)) {
  random.fill(q_.get(), q_.bytes() / 2, 0);
  random.fill(k_.get(), k_.bytes() / 2, 104729);
  random.fill(v_.get(), v_.bytes() / 2, 1299709);
  const auto tensor = [&](const DeviceBuffer& b, int heads) {
    return w.dense ? make_tensor(b.get(), VFLASH_DTYPE_BF16, device, {w.batch, w.seqlen, heads, w.head_dim})
                   : make_tensor(b.get(), VFLASH_DTYPE_BF16, device, {w.total(), heads, w.head_dim});
  };
  if (w.dense) {
    dense_.q = tensor(q_, w.heads_q);
    dense_.k = tensor(k_, w.heads_k);
    dense_.v = tensor(v_, w.heads_k);
    dense_.out = tensor(out_, w.heads_q);
    dense_.causal = w.causal;
    dense_.stream = stream;
  } else {
    std::vector<int32_t> cu(w.seqlens.size() + 1, 0);
    for (size_t i = 0; i < w.seqlens.size(); ++i) cu[i + 1] = cu[i] + w.seqlens[i];
    VFLASH_CUDA(cudaMemcpy(cu_.get(), cu.data(), cu_.bytes(), cudaMemcpyHostToDevice));
    varlen_.q = tensor(q_, w.heads_q);
    varlen_.k = tensor(k_, w.heads_k);
    varlen_.v = tensor(v_, w.heads_k);
    varlen_.out = tensor(out_, w.heads_q);
    varlen_.cu_seqlens_q = make_tensor(cu_.get(), VFLASH_DTYPE_INT32, device, {int64_t(cu.size())});
    varlen_.cu_seqlens_k = varlen_.cu_seqlens_q;
    varlen_.max_seqlen_q = varlen_.max_seqlen_k = w.max_seqlen();
    varlen_.causal = w.causal;
    varlen_.stream = stream;
  }
}

std::optional<std::string> Problem::kernel(const DeviceInfo& device, std::string& why) const {
  const FwdParams params = w_.dense ? validate_dense(dense_) : validate_varlen(varlen_);
  const Decision decision = select_kernel(params, device);
  if (decision.kernel) return std::string(decision.kernel->name);
  why = describe_rejections(decision);
  return std::nullopt;
}

void Problem::prepare() {
  const size_t bytes = w_.dense ? dense_workspace_size(dense_) : varlen_workspace_size(varlen_);
  workspace_.reset();
  if (bytes) workspace_ = std::make_unique<DeviceBuffer>(bytes);
  void* ptr = workspace_ ? workspace_->get() : nullptr;
  dense_.workspace = varlen_.workspace = ptr;
  dense_.workspace_bytes = varlen_.workspace_bytes = bytes;
}

void Problem::launch() const {
  if (w_.dense) {
    dense_fwd(dense_);
  } else {
    varlen_fwd(varlen_);
  }
}

double matmul_peak_tflops(const L2Flush& flush, cudaStream_t stream, const RandomBf16& random,
                          const TimingPolicy& policy) {
  constexpr int n = kMatmulN;
  const size_t count = size_t(n) * n;
  DeviceBuffer a(count * 2), b(count * 2), c(count * 2);
  random.fill(a.get(), count, 0);
  random.fill(b.get(), count, 7919);
  cublasHandle_t handle;
  cublas_check(cublasCreate(&handle), "cublasCreate");
  struct HandleGuard {
    cublasHandle_t h;
    ~HandleGuard() { cublasDestroy(h); }
  } guard{handle};
  cublas_check(cublasSetStream(handle, stream), "cublasSetStream");
  const float alpha = 1.f, beta = 0.f;
  const double ms = median_ms(
      [&] {
        cublas_check(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.get(), CUDA_R_16BF, n, b.get(),
                                  CUDA_R_16BF, n, &beta, c.get(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx");
      },
      flush, stream, policy);
  return tflops(2.0 * double(n) * n * n, ms);
}

}  // namespace vflash::bench
