// GPU backward suite: each case runs the forward and then the backward
// through the public C++ API on device tensors, with fresh random inputs, and
// compares dq, dk, dv against the float64 CPU reference backward. Gradients
// and the workspace are poisoned (NaN) before each run; NaN never passes;
// rows past the last sequence must come back as zeros and stride padding must
// stay poisoned. Deterministic mode must give bit-identical results over
// repeated runs.
//
// The suite validates the backward kernel dispatch picks, or the one forced
// with VFLASH_FORCE_KERNEL=<backward kernel>; cases it does not serve report
// SKIPPED with dispatch's reason. Without a CUDA device every case skips.
// VFLASH_BWD_RANDOM_CASES sets the number of random cases (default 40);
// VFLASH_TEST_SEED replays a seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.hpp"
#include "reference/reference.hpp"
#include "registry.hpp"
#include "test_util.hpp"
#include "validate.hpp"
#include "vflash/vflash.hpp"

namespace vflash {
namespace {

using gputest::CudaStream;
using gputest::DeviceBuffer;

struct BwdCase {
  std::string name;
  DType dtype = DType::bf16;
  int d = 64, dv = 64;
  int heads_q = 2, heads_k = 2;
  std::vector<std::pair<int, int>> seqs;  // (len_q, len_k)
  int extra_q = 0, extra_k = 0;           // rows past the last sequence
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.f;
  bool padded_strides = false;
  bool deterministic = false;
};

void PrintTo(const BwdCase& c, std::ostream* os) { *os << c.name; }

// (rows, heads, dim) storage with optional padding (multiples of 8 elements).
struct Layout {
  int64_t rows;
  int heads, dim;
  int64_t head_stride, row_stride;
  Layout(int64_t rows_, int heads_, int dim_, bool padded) : rows(rows_), heads(heads_), dim(dim_) {
    head_stride = dim + (padded ? 8 : 0);
    row_stride = heads * head_stride + (padded ? 16 : 0);
  }
  size_t elements() const { return size_t(std::max<int64_t>(rows, 1) * row_stride); }
  int64_t offset(int64_t row, int h) const { return row * row_stride + h * head_stride; }
  Tensor tensor(void* data, vflash_dtype dtype, int device) const {
    return testutil::strided_tensor(data, dtype, device, rows, heads, dim, row_stride, head_stride);
  }
};

// Tolerance of a gradient element: a fraction of the larger of its row's
// largest |reference| and a quarter of the tensor's (rows whose gradient
// nearly cancels are held to the tensor's scale).
double gradient_tolerance(DType t) { return t == DType::fp16 ? 1e-2 : 5e-2; }

::testing::AssertionResult compare_gradient(const char* what, DType dtype, const std::vector<uint16_t>& got,
                                            const Layout& l, const std::vector<double>& ref, int64_t checked_rows) {
  double tensor_max = 0;
  for (double r : ref) tensor_max = std::fmax(tensor_max, std::fabs(r));
  const double rel = gradient_tolerance(dtype);
  int64_t bad = 0;
  double worst = 0;
  std::ostringstream first;
  for (int64_t row = 0; row < checked_rows; ++row)
    for (int h = 0; h < l.heads; ++h) {
      const double* r = &ref[size_t((row * l.heads + h) * l.dim)];
      double row_max = 0;
      for (int c = 0; c < l.dim; ++c) row_max = std::fmax(row_max, std::fabs(r[c]));
      const double bound = rel * std::fmax(row_max, 0.25 * tensor_max) + 1e-5;
      for (int c = 0; c < l.dim; ++c) {
        const double g = gputest::element_to_float(dtype, got[size_t(l.offset(row, h) + c)]);
        const double err = std::fabs(g - r[c]);
        if (!(err <= bound)) {  // NaN compares false
          if (bad < 8)
            first << "\n  " << what << " row " << row << " head " << h << " col " << c << ": got " << g << ", ref "
                  << r[c] << ", |err| " << err << " > bound " << bound;
          ++bad;
        }
        if (std::isfinite(err)) worst = std::fmax(worst, err / bound);
      }
    }
  if (bad == 0) return ::testing::AssertionSuccess() << what << ": worst error / bound " << worst;
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << checked_rows * l.heads * l.dim
                                       << " elements out of tolerance" << first.str();
}

// Elements outside rows [0, rows) x heads x dim (stride padding) that do not hold the poison.
int64_t stray_writes(const std::vector<uint16_t>& got, const Layout& l) {
  return gputest::stray_writes(got, l.rows, l.heads, l.dim, [&](int64_t row, int h) { return l.offset(row, h); });
}

struct Gradients {
  std::vector<uint16_t> dq, dk, dv;
  std::string kernel;
};

// One problem on the device: inputs uploaded once, the backward run on demand.
class DeviceProblem {
 public:
  DeviceProblem(const BwdCase& c, std::mt19937_64& rng) : c_(c) {
    std::vector<std::pair<int, int>> seqs = c.seqs;
    std::shuffle(seqs.begin(), seqs.end(), rng);
    for (auto [lq, lk] : seqs) {
      cu_q_.push_back(cu_q_.back() + lq);
      cu_k_.push_back(cu_k_.back() + lk);
      max_q_ = std::max(max_q_, lq);
      max_k_ = std::max(max_k_, lk);
    }
    batch_ = int(seqs.size());
    total_q_ = cu_q_.back() + c.extra_q;
    total_k_ = cu_k_.back() + c.extra_k;
    lq_ = Layout(total_q_, c.heads_q, c.d, c.padded_strides);
    lk_ = Layout(total_k_, c.heads_k, c.d, c.padded_strides);
    lv_ = Layout(total_k_, c.heads_k, c.dv, c.padded_strides);
    lo_ = Layout(total_q_, c.heads_q, c.dv, c.padded_strides);
    q_ = gputest::random_elements(c.dtype, lq_.elements(), 1.f, rng);
    k_ = gputest::random_elements(c.dtype, lk_.elements(), 1.f, rng);
    v_ = gputest::random_elements(c.dtype, lv_.elements(), 1.f, rng);
    dout_ = gputest::random_elements(c.dtype, lo_.elements(), 1.f, rng);
  }

  // Forward (out, lse) on the device, as a caller of the backward has them.
  void forward(const CudaStream& stream) {
    dq_in_ = DeviceBuffer(q_);
    dk_in_ = DeviceBuffer(k_);
    dv_in_ = DeviceBuffer(v_);
    ddout_ = DeviceBuffer(dout_);
    dcu_q_ = DeviceBuffer(cu_q_);
    dcu_k_ = DeviceBuffer(cu_k_);
    dout_fwd_ = DeviceBuffer(lo_.elements() * sizeof(uint16_t));
    dlse_ = DeviceBuffer(size_t(c_.heads_q) * std::max<int64_t>(total_q_, 1) * sizeof(float));
    dout_fwd_.poison();
    dlse_.poison();
    VarlenArgs a;
    const vflash_dtype dt = gputest::api_dtype(c_.dtype);
    a.q = lq_.tensor(dq_in_.data(), dt, 0);
    a.k = lk_.tensor(dk_in_.data(), dt, 0);
    a.v = lv_.tensor(dv_in_.data(), dt, 0);
    a.out = lo_.tensor(dout_fwd_.data(), dt, 0);
    a.lse = make_tensor(dlse_.data(), VFLASH_DTYPE_FP32, 0, {c_.heads_q, total_q_});
    set_common(a, 0);
    a.stream = stream.get();
    a.zero_rows_past_end = 1;
    DeviceBuffer workspace(varlen_workspace_size(a));
    a.workspace = workspace.data();
    a.workspace_bytes = workspace.bytes();
    varlen_fwd(a);
    stream.synchronize();
    out_ = dout_fwd_.download<uint16_t>();
    lse_ = dlse_.download<float>();
  }

  Gradients backward(const CudaStream& stream, bool deterministic) {
    const vflash_dtype dt = gputest::api_dtype(c_.dtype);
    DeviceBuffer dq(lq_.elements() * sizeof(uint16_t)), dk(lk_.elements() * sizeof(uint16_t)),
        dv(lv_.elements() * sizeof(uint16_t));
    dq.poison();
    dk.poison();
    dv.poison();
    VarlenBwdArgs a;
    a.q = lq_.tensor(dq_in_.data(), dt, 0);
    a.k = lk_.tensor(dk_in_.data(), dt, 0);
    a.v = lv_.tensor(dv_in_.data(), dt, 0);
    a.out = lo_.tensor(dout_fwd_.data(), dt, 0);
    a.lse = make_tensor(dlse_.data(), VFLASH_DTYPE_FP32, 0, {c_.heads_q, total_q_});
    a.dout = lo_.tensor(ddout_.data(), dt, 0);
    a.dq = lq_.tensor(dq.data(), dt, 0);
    a.dk = lk_.tensor(dk.data(), dt, 0);
    a.dv = lv_.tensor(dv.data(), dt, 0);
    set_common(a, 0);
    a.deterministic = deterministic ? 1 : 0;
    a.stream = stream.get();
    Gradients g;
    g.kernel = varlen_bwd_kernel_name(a);
    // Exactly the size asked for, poisoned as a reused allocation would be.
    const size_t bytes = varlen_bwd_workspace_size(a);
    DeviceBuffer workspace(bytes);
    workspace.poison();
    a.workspace = bytes ? workspace.data() : nullptr;
    a.workspace_bytes = bytes;
    varlen_bwd(a);
    stream.synchronize();
    g.dq = dq.download<uint16_t>();
    g.dk = dk.download<uint16_t>();
    g.dv = dv.download<uint16_t>();
    return g;
  }

  // The float64 reference gradients of the same 16-bit inputs.
  void reference(std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv) {
    const vflash_dtype dt = gputest::api_dtype(c_.dtype);
    auto host = [&](const Layout& l, std::vector<uint16_t>& x) { return l.tensor(x.data(), dt, VFLASH_DEVICE_CPU); };
    std::vector<uint16_t> dq_h(lq_.elements()), dk_h(lk_.elements()), dv_h(lv_.elements());
    VarlenBwdArgs a;
    a.q = host(lq_, q_);
    a.k = host(lk_, k_);
    a.v = host(lv_, v_);
    a.out = host(lo_, out_);
    a.lse = make_tensor(lse_.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {c_.heads_q, total_q_});
    a.dout = host(lo_, dout_);
    a.dq = host(lq_, dq_h);
    a.dk = host(lk_, dk_h);
    a.dv = host(lv_, dv_h);
    set_common(a, VFLASH_DEVICE_CPU);
    dq.assign(size_t(total_q_ * c_.heads_q * c_.d), 0.0);
    dk.assign(size_t(total_k_ * c_.heads_k * c_.d), 0.0);
    dv.assign(size_t(total_k_ * c_.heads_k * c_.dv), 0.0);
    reference_attention_backward(validate_varlen_bwd(a), dq, dk, dv);
  }

  const Layout& q_layout() const { return lq_; }
  const Layout& k_layout() const { return lk_; }
  const Layout& v_layout() const { return lv_; }
  int64_t total_q() const { return total_q_; }
  int64_t total_k() const { return total_k_; }

 private:
  template <class Args>
  void set_common(Args& a, int device) {
    a.cu_seqlens_q = make_tensor(device == VFLASH_DEVICE_CPU ? static_cast<void*>(cu_q_.data()) : dcu_q_.data(),
                                 VFLASH_DTYPE_INT32, device, {batch_ + 1});
    a.cu_seqlens_k = make_tensor(device == VFLASH_DEVICE_CPU ? static_cast<void*>(cu_k_.data()) : dcu_k_.data(),
                                 VFLASH_DTYPE_INT32, device, {batch_ + 1});
    a.max_seqlen_q = max_q_;
    a.max_seqlen_k = max_k_;
    a.causal = c_.causal ? 1 : 0;
    a.window_left = c_.window_left;
    a.window_right = c_.window_right;
    a.softcap = c_.softcap;
  }

  BwdCase c_;
  std::vector<int32_t> cu_q_{0}, cu_k_{0};
  int batch_ = 0, max_q_ = 0, max_k_ = 0;
  int64_t total_q_ = 0, total_k_ = 0;
  Layout lq_{0, 1, 8, false}, lk_{0, 1, 8, false}, lv_{0, 1, 8, false}, lo_{0, 1, 8, false};
  std::vector<uint16_t> q_, k_, v_, dout_, out_;
  std::vector<float> lse_;
  DeviceBuffer dq_in_, dk_in_, dv_in_, ddout_, dcu_q_, dcu_k_, dout_fwd_, dlse_;
};

void run_case(const BwdCase& c, std::mt19937_64& rng) {
  VFLASH_CHECK_CUDA(cudaSetDevice(0));
  DeviceProblem pr(c, rng);
  CudaStream stream;
  pr.forward(stream);
  Gradients g;
  try {
    g = pr.backward(stream, c.deterministic);
  } catch (const Error& e) {
    // Only a forced kernel may decline a case: the SIMT backward serves every valid call.
    if (e.status() == Status::unsupported && gputest::forced_kernel_env())
      GTEST_SKIP() << "not served by the forced kernel " << *gputest::forced_kernel_env() << ": " << e.what();
    throw;
  }
  SCOPED_TRACE("kernel " + g.kernel);
  ::testing::Test::RecordProperty("kernel", g.kernel);
  if (const auto forced = gputest::forced_kernel_env()) {
    bool forced_is_backward = false;
    for (const KernelInfo& k : cuda_backward_kernels()) forced_is_backward |= *forced == k.name;
    if (forced_is_backward) ASSERT_EQ(g.kernel, *forced) << "dispatch did not run the forced kernel";
  }

  std::vector<double> ref_dq, ref_dk, ref_dv;
  pr.reference(ref_dq, ref_dk, ref_dv);
  // Every row is checked: rows past the last sequence against the reference's zeros.
  EXPECT_TRUE(compare_gradient("dq", c.dtype, g.dq, pr.q_layout(), ref_dq, pr.total_q()));
  EXPECT_TRUE(compare_gradient("dk", c.dtype, g.dk, pr.k_layout(), ref_dk, pr.total_k()));
  EXPECT_TRUE(compare_gradient("dv", c.dtype, g.dv, pr.v_layout(), ref_dv, pr.total_k()));
  auto row_is_zero = [&](const std::vector<uint16_t>& x, const Layout& l, int64_t row) {
    for (int h = 0; h < l.heads; ++h)
      for (int i = 0; i < l.dim; ++i)
        if (gputest::element_to_float(c.dtype, x[size_t(l.offset(row, h) + i)]) != 0.f) return false;
    return true;
  };
  for (int64_t row = pr.total_q() - c.extra_q; row < pr.total_q(); ++row)
    EXPECT_TRUE(row_is_zero(g.dq, pr.q_layout(), row)) << "dq row " << row << " past the last sequence";
  for (int64_t row = pr.total_k() - c.extra_k; row < pr.total_k(); ++row) {
    EXPECT_TRUE(row_is_zero(g.dk, pr.k_layout(), row)) << "dk row " << row << " past the last sequence";
    EXPECT_TRUE(row_is_zero(g.dv, pr.v_layout(), row)) << "dv row " << row << " past the last sequence";
  }
  EXPECT_EQ(stray_writes(g.dq, pr.q_layout()), 0) << "dq written outside its logical extent";
  EXPECT_EQ(stray_writes(g.dk, pr.k_layout()), 0) << "dk written outside its logical extent";
  EXPECT_EQ(stray_writes(g.dv, pr.v_layout()), 0) << "dv written outside its logical extent";

  if (c.deterministic) {
    for (int run = 0; run < 2; ++run) {
      const Gradients again = pr.backward(stream, true);
      EXPECT_TRUE(again.dq == g.dq) << "deterministic dq differs on run " << run + 2;
      EXPECT_TRUE(again.dk == g.dk) << "deterministic dk differs on run " << run + 2;
      EXPECT_TRUE(again.dv == g.dv) << "deterministic dv differs on run " << run + 2;
    }
  }
}

std::vector<BwdCase> fixed_cases() {
  std::vector<BwdCase> cases;
  auto add = [&](BwdCase c) {
    cases.push_back(c);
    c.name += "_deterministic";
    c.deterministic = true;
    cases.push_back(c);
  };
  add({.name = "d64_bf16_full", .d = 64, .dv = 64, .heads_q = 4, .heads_k = 4,
       .seqs = {{37, 45}, {0, 12}, {64, 64}, {5, 0}, {1, 1}}});
  add({.name = "gqa4_d128_causal_fp16", .dtype = DType::fp16, .d = 128, .dv = 128, .heads_q = 8, .heads_k = 2,
       .seqs = {{130, 130}, {17, 33}, {0, 0}, {64, 70}}, .causal = true});
  add({.name = "d256_bf16_window", .d = 256, .dv = 256, .seqs = {{200, 180}, {33, 33}}, .window_left = 32,
       .window_right = 8});
  add({.name = "dv_192_128_causal_bf16", .d = 192, .dv = 128, .heads_q = 2, .heads_k = 1,
       .seqs = {{90, 100}, {16, 16}}, .causal = true});
  add({.name = "dv_64_128_fp16", .dtype = DType::fp16, .d = 64, .dv = 128, .seqs = {{50, 40}, {3, 70}}});
  add({.name = "dv_256_64_causal_window_bf16", .d = 256, .dv = 64, .seqs = {{70, 90}}, .causal = true,
       .window_left = 20});
  add({.name = "softcap_d80_causal_bf16", .d = 80, .dv = 80, .heads_q = 3, .heads_k = 3,
       .seqs = {{77, 77}, {12, 30}}, .causal = true, .softcap = 30.f});
  add({.name = "softcap5_d96_fp16", .dtype = DType::fp16, .d = 96, .dv = 96, .seqs = {{40, 50}, {9, 9}},
       .softcap = 5.f});
  add({.name = "mqa6_d128_window_fp16", .dtype = DType::fp16, .d = 128, .dv = 128, .heads_q = 6, .heads_k = 1,
       .seqs = {{100, 100}, {31, 7}}, .window_left = 16, .window_right = 0});
  add({.name = "small_dims_d8_bf16", .d = 8, .dv = 8, .seqs = {{20, 25}, {1, 3}}, .causal = true});
  add({.name = "d40_dv24_fp16", .dtype = DType::fp16, .d = 40, .dv = 24, .heads_q = 4, .heads_k = 2,
       .seqs = {{33, 17}, {8, 40}}});
  add({.name = "padded_strides_d64_fp16_causal", .dtype = DType::fp16, .d = 64, .dv = 64, .heads_q = 4, .heads_k = 2,
       .seqs = {{45, 60}, {20, 20}}, .causal = true, .padded_strides = true});
  add({.name = "rows_past_end_d128_causal_bf16", .d = 128, .dv = 128, .seqs = {{40, 40}, {0, 9}, {17, 5}},
       .extra_q = 5, .extra_k = 3, .causal = true});
  add({.name = "tiny_seqs_d64_causal_fp16", .dtype = DType::fp16, .d = 64, .dv = 64,
       .seqs = {{1, 1}, {2, 3}, {3, 1}, {0, 2}, {1, 0}, {2, 2}, {3, 3}}, .causal = true});
  add({.name = "keyless_rows_window_d64_bf16", .d = 64, .dv = 64, .seqs = {{20, 4}, {6, 0}}, .window_left = 1,
       .window_right = 0});
  return cases;
}

class GpuBackward : public ::testing::TestWithParam<BwdCase> {};

TEST_P(GpuBackward, MatchesCpuReference) {
  if (!gputest::cuda_device_present()) GTEST_SKIP() << "no CUDA device";
  gputest::run_with_fresh_seed([&](std::mt19937_64& rng) { run_case(GetParam(), rng); });
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuBackward, ::testing::ValuesIn(fixed_cases()),
                         [](const auto& info) { return info.param.name; });

// A random case: zero-length sequences anywhere, tile-edge lengths, every
// head-dim pair of the forward suite, MHA / GQA / MQA, masks, softcap, both
// dtypes, padding, rows past the end, either mode.
BwdCase random_case(std::mt19937_64& rng) {
  auto pick = [&](int n) { return int(std::uniform_int_distribution<int>(0, n - 1)(rng)); };
  static constexpr int kLengths[] = {0, 1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200};
  static constexpr int kDims[][2] = {{64, 64}, {72, 72}, {80, 80}, {80, 96}, {96, 96}, {128, 128}, {192, 128},
                                     {192, 192}, {256, 256}, {32, 32}, {64, 128}, {256, 64}, {40, 24}, {8, 8}};
  static constexpr int kHeads[][2] = {{1, 1}, {2, 2}, {4, 1}, {4, 2}, {6, 3}, {8, 8}};
  BwdCase c;
  c.dtype = pick(2) ? DType::fp16 : DType::bf16;
  const auto& dims = kDims[pick(std::size(kDims))];
  c.d = dims[0];
  c.dv = dims[1];
  const auto& heads = kHeads[pick(std::size(kHeads))];
  c.heads_q = heads[0];
  c.heads_k = heads[1];
  for (int b = 1 + pick(5); b > 0; --b)
    c.seqs.push_back({kLengths[pick(std::size(kLengths))], kLengths[pick(std::size(kLengths))]});
  c.extra_q = pick(3) == 0 ? pick(4) : 0;
  c.extra_k = pick(3) == 0 ? pick(4) : 0;
  c.causal = pick(2);
  if (pick(3) == 0) {
    c.window_left = pick(4) == 0 ? -1 : pick(70);
    c.window_right = pick(4) == 0 ? -1 : pick(70);
  }
  if (pick(4) == 0) c.softcap = pick(2) ? 5.f : 30.f;
  c.padded_strides = pick(4) == 0;
  c.deterministic = pick(2);
  std::ostringstream name;
  name << gputest::dtype_name(c.dtype) << " d" << c.d << "/" << c.dv << " heads " << c.heads_q << "/" << c.heads_k
       << (c.causal ? " causal" : "") << " window (" << c.window_left << ", " << c.window_right << ") softcap "
       << c.softcap << (c.padded_strides ? " padded" : "") << (c.deterministic ? " deterministic" : "")
       << " past-end " << c.extra_q << "/" << c.extra_k << " seqs";
  for (auto [lq, lk] : c.seqs) name << " " << lq << "x" << lk;
  c.name = name.str();
  return c;
}

int random_case_count() {
  if (const char* n = std::getenv("VFLASH_BWD_RANDOM_CASES")) return std::max(0, std::atoi(n));
  return 40;
}

class GpuBackwardRandom : public ::testing::TestWithParam<int> {};

TEST_P(GpuBackwardRandom, MatchesCpuReference) {
  if (!gputest::cuda_device_present()) GTEST_SKIP() << "no CUDA device";
  gputest::run_random_case(GetParam(), random_case, run_case);
}

INSTANTIATE_TEST_SUITE_P(Random, GpuBackwardRandom, ::testing::Range(0, std::max(1, random_case_count())));

}  // namespace
}  // namespace vflash
