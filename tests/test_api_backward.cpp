// The backward through the C ABI and the C++ API on host tensors (the CPU
// reference backend): defaults of vflash_varlen_bwd_args_init, the forward's
// out and lse fed to the backward, gradients equal to the float64 reference,
// every row of dq / dk / dv written (rows past the last sequence zero),
// status codes and messages naming the argument; and, under a pretended
// capability, which backward kernel dispatch names for CUDA-shaped arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dispatch.hpp"
#include "dtype.hpp"
#include "reference/reference.hpp"
#include "test_util.hpp"
#include "validate.hpp"
#include "vflash/vflash.h"
#include "vflash/vflash.hpp"

namespace {

// A host varlen problem: an empty sequence, GQA 4 / 2, d 16, d_v 8, two q
// rows and one k row past the last sequence, causal with a window.
struct HostBackward {
  std::vector<int32_t> cu_q{0, 5, 5, 12}, cu_k{0, 6, 9, 16};
  int heads_q = 4, heads_k = 2, d = 16, dv = 8;
  int64_t total_q = 14, total_k = 17;
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv_grad;
  uint64_t seed = std::random_device{}();

  HostBackward() {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist;
    auto random = [&](int64_t rows, int heads, int dim) {
      std::vector<float> x(size_t(rows * heads * dim));
      for (auto& e : x) e = dist(rng);
      return x;
    };
    q = random(total_q, heads_q, d);
    k = random(total_k, heads_k, d);
    v = random(total_k, heads_k, dv);
    dout = random(total_q, heads_q, dv);
    out.assign(size_t(total_q * heads_q * dv), 0.f);
    lse.assign(size_t(heads_q * total_q), 0.f);
    dq.assign(q.size(), std::nanf(""));
    dk.assign(k.size(), std::nanf(""));
    dv_grad.assign(v.size(), std::nanf(""));
  }

  vflash_tensor host(std::vector<float>& x, std::initializer_list<int64_t> shape) {
    return vflash::make_tensor(x.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, shape);
  }
  vflash_tensor cu(std::vector<int32_t>& x) {
    return vflash::make_tensor(x.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, {int64_t(x.size())});
  }

  vflash::VarlenArgs forward_args() {
    vflash::VarlenArgs a;
    a.q = host(q, {total_q, heads_q, d});
    a.k = host(k, {total_k, heads_k, d});
    a.v = host(v, {total_k, heads_k, dv});
    a.out = host(out, {total_q, heads_q, dv});
    a.lse = host(lse, {heads_q, total_q});
    a.cu_seqlens_q = cu(cu_q);
    a.cu_seqlens_k = cu(cu_k);
    a.max_seqlen_q = 7;
    a.max_seqlen_k = 7;
    a.causal = 1;
    a.window_left = 3;
    a.softcap = 2.f;
    return a;
  }

  vflash_varlen_bwd_args backward_args() {
    vflash_varlen_bwd_args a;
    vflash_varlen_bwd_args_init(&a);
    const vflash::VarlenArgs f = forward_args();
    a.q = f.q;
    a.k = f.k;
    a.v = f.v;
    a.out = f.out;
    a.lse = f.lse;
    a.cu_seqlens_q = f.cu_seqlens_q;
    a.cu_seqlens_k = f.cu_seqlens_k;
    a.max_seqlen_q = f.max_seqlen_q;
    a.max_seqlen_k = f.max_seqlen_k;
    a.causal = f.causal;
    a.window_left = f.window_left;
    a.softcap = f.softcap;
    a.dout = host(dout, {total_q, heads_q, dv});
    a.dq = host(dq, {total_q, heads_q, d});
    a.dk = host(dk, {total_k, heads_k, d});
    a.dv = host(dv_grad, {total_k, heads_k, dv});
    return a;
  }
};

TEST(ApiBackward, InitFillsDefaults) {
  vflash_varlen_bwd_args a;
  std::memset(&a, 0x5a, sizeof a);
  vflash_varlen_bwd_args_init(&a);
  EXPECT_EQ(a.struct_size, sizeof a);
  EXPECT_EQ(a.window_left, -1);
  EXPECT_EQ(a.window_right, -1);
  EXPECT_EQ(a.deterministic, 0);
  EXPECT_EQ(a.causal, 0);
  EXPECT_EQ(a.softmax_scale, 0.f);
  EXPECT_EQ(a.workspace, nullptr);
  vflash_varlen_bwd_args_init(nullptr);  // no crash
  const vflash::VarlenBwdArgs cpp;
  EXPECT_EQ(cpp.struct_size, sizeof(vflash_varlen_bwd_args));
}

TEST(ApiBackward, CAbiOnHostTensorsGivesTheReferenceGradients) {
  HostBackward pr;
  SCOPED_TRACE("seed " + std::to_string(pr.seed));
  const vflash::VarlenArgs fwd = pr.forward_args();
  ASSERT_EQ(vflash_varlen_fwd(&fwd), VFLASH_OK) << vflash_last_error();
  vflash_varlen_bwd_args a = pr.backward_args();
  const char* name = nullptr;
  ASSERT_EQ(vflash_varlen_bwd_kernel_name(&a, &name), VFLASH_OK) << vflash_last_error();
  EXPECT_STREQ(name, "cpu_reference");
  size_t bytes = 1;
  ASSERT_EQ(vflash_varlen_bwd_workspace_size(&a, &bytes), VFLASH_OK) << vflash_last_error();
  EXPECT_EQ(bytes, 0u);
  ASSERT_EQ(vflash_varlen_bwd(&a), VFLASH_OK) << vflash_last_error();
  EXPECT_STREQ(vflash_last_error(), "");

  std::vector<double> dq(pr.dq.size()), dk(pr.dk.size()), dv(pr.dv_grad.size());
  vflash::reference_attention_backward(vflash::validate_varlen_bwd(a), dq, dk, dv);
  auto expect_close = [](const char* what, const std::vector<float>& got, const std::vector<double>& want) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::fmax(scale, std::fabs(want[i]));
      const double err = std::fabs(double(got[i]) - want[i]);
      worst = std::isnan(err) ? INFINITY : std::fmax(worst, err);
    }
    EXPECT_GT(scale, 0.0) << what;
    EXPECT_LE(worst, 1e-5 * (1 + scale)) << what;  // fp32 storage of a float64 result
  };
  expect_close("dq", pr.dq, dq);
  expect_close("dk", pr.dk, dk);
  expect_close("dv", pr.dv_grad, dv);
  // Rows past the last sequence: zero gradient, written.
  for (int64_t row = pr.cu_q.back(); row < pr.total_q; ++row)
    for (int i = 0; i < pr.heads_q * pr.d; ++i) EXPECT_EQ(pr.dq[size_t(row * pr.heads_q * pr.d + i)], 0.f);
  for (int i = 0; i < pr.heads_k * pr.d; ++i) EXPECT_EQ(pr.dk[size_t(16 * pr.heads_k * pr.d + i)], 0.f);
  for (int i = 0; i < pr.heads_k * pr.dv; ++i) EXPECT_EQ(pr.dv_grad[size_t(16 * pr.heads_k * pr.dv + i)], 0.f);
}

TEST(ApiBackward, CppApiMatchesTheCAbi) {
  HostBackward pr;
  const vflash::VarlenArgs fwd = pr.forward_args();
  vflash::varlen_fwd(fwd);
  vflash::VarlenBwdArgs a;
  static_cast<vflash_varlen_bwd_args&>(a) = pr.backward_args();
  a.deterministic = 1;
  EXPECT_EQ(vflash::varlen_bwd_kernel_name(a), "cpu_reference");
  EXPECT_EQ(vflash::varlen_bwd_workspace_size(a), 0u);
  vflash::varlen_bwd(a);
  const std::vector<float> first = pr.dq;
  std::fill(pr.dq.begin(), pr.dq.end(), std::nanf(""));
  ASSERT_EQ(vflash_varlen_bwd(&a), VFLASH_OK) << vflash_last_error();
  EXPECT_EQ(std::memcmp(first.data(), pr.dq.data(), first.size() * sizeof(float)), 0);
}

TEST(ApiBackward, Fp16AndBf16HostTensors) {
  for (const vflash_dtype dt : {VFLASH_DTYPE_FP16, VFLASH_DTYPE_BF16}) {
    HostBackward pr;
    auto narrow = [&](const std::vector<float>& x) {
      std::vector<uint16_t> y(x.size());
      for (size_t i = 0; i < x.size(); ++i)
        y[i] = dt == VFLASH_DTYPE_FP16 ? vflash::float_to_fp16(x[i]) : vflash::float_to_bf16(x[i]);
      return y;
    };
    std::vector<uint16_t> q = narrow(pr.q), k = narrow(pr.k), v = narrow(pr.v), out = narrow(pr.out),
                          dout = narrow(pr.dout), dq(pr.dq.size(), 0xFFFF), dk(pr.dk.size(), 0xFFFF),
                          dv(pr.dv_grad.size(), 0xFFFF);
    vflash_varlen_bwd_args a = pr.backward_args();
    auto as16 = [&](std::vector<uint16_t>& x, const vflash_tensor& like) {
      vflash_tensor t = like;
      t.data = x.data();
      t.dtype = dt;
      return t;
    };
    a.q = as16(q, a.q);
    a.k = as16(k, a.k);
    a.v = as16(v, a.v);
    a.out = as16(out, a.out);
    a.dout = as16(dout, a.dout);
    a.dq = as16(dq, a.dq);
    a.dk = as16(dk, a.dk);
    a.dv = as16(dv, a.dv);
    ASSERT_EQ(vflash_varlen_bwd(&a), VFLASH_OK) << vflash_last_error();
    std::vector<double> rdq(dq.size()), rdk(dk.size()), rdv(dv.size());
    vflash::reference_attention_backward(vflash::validate_varlen_bwd(a), rdq, rdk, rdv);
    auto widen = [&](uint16_t h) { return dt == VFLASH_DTYPE_FP16 ? vflash::fp16_to_float(h) : vflash::bf16_to_float(h); };
    // The stored gradient is the reference rounded to the dtype.
    for (size_t i = 0; i < dq.size(); ++i) EXPECT_EQ(dq[i], dt == VFLASH_DTYPE_FP16 ? vflash::float_to_fp16(float(rdq[i])) : vflash::float_to_bf16(float(rdq[i])));
    for (size_t i = 0; i < dk.size(); ++i) EXPECT_FALSE(std::isnan(widen(dk[i])));
    for (size_t i = 0; i < dv.size(); ++i) EXPECT_FALSE(std::isnan(widen(dv[i])));
  }
}

TEST(ApiBackward, ErrorsNameTheArgument) {
  HostBackward pr;
  EXPECT_EQ(vflash_varlen_bwd(nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(vflash_last_error()).rfind("args: ", 0), 0u) << vflash_last_error();
  vflash_varlen_bwd_args a = pr.backward_args();
  a.lse.data = nullptr;
  EXPECT_EQ(vflash_varlen_bwd(&a), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(vflash_last_error()).rfind("lse.data: ", 0), 0u) << vflash_last_error();
  a = pr.backward_args();
  a.dk.shape[2] = 8;
  EXPECT_EQ(vflash_varlen_bwd(&a), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(vflash_last_error()).rfind("dk.shape[2]: ", 0), 0u) << vflash_last_error();
  size_t bytes = 0;
  a = pr.backward_args();
  EXPECT_EQ(vflash_varlen_bwd_workspace_size(&a, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(vflash_last_error()).rfind("bytes: ", 0), 0u) << vflash_last_error();
  EXPECT_EQ(vflash_varlen_bwd_kernel_name(&a, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  a.struct_size = 8;
  EXPECT_EQ(vflash_varlen_bwd_workspace_size(&a, &bytes), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(vflash_last_error()).rfind("struct_size: ", 0), 0u) << vflash_last_error();
  vflash::VarlenBwdArgs cpp;
  static_cast<vflash_varlen_bwd_args&>(cpp) = pr.backward_args();
  cpp.dout.dtype = VFLASH_DTYPE_FP16;
  vflash::testutil::expect_error([&] { vflash::varlen_bwd(cpp); }, vflash::Status::invalid_argument, "dout.dtype");
}

// CUDA-shaped arguments at fake addresses (never dereferenced: the kernel name
// needs validation and dispatch only).
struct CudaShapedBackward {
  alignas(16) static inline char storage[64];
  std::vector<int32_t> cu{0, 64, 128};
  vflash::VarlenBwdArgs a;
  CudaShapedBackward() {
    for (vflash_tensor* t : {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.dq, &a.dk, &a.dv})
      *t = vflash::make_tensor(storage, VFLASH_DTYPE_BF16, 0, {128, 8, 128});
    a.lse = vflash::make_tensor(storage, VFLASH_DTYPE_FP32, 0, {8, 128});
    a.cu_seqlens_q = a.cu_seqlens_k = vflash::make_tensor(storage, VFLASH_DTYPE_INT32, 0, {3});
    a.cu_seqlens_q_host = a.cu_seqlens_k_host = cu.data();
    a.max_seqlen_q = a.max_seqlen_k = 64;
  }
};

TEST(ApiBackward, DispatchNamesTheBackwardKernelOfEachCapability) {
  CudaShapedBackward c;
  for (const char* cc : {"7.5", "8.0", "8.6", "9.0", "10.0", "12.0"}) {
    SCOPED_TRACE(cc);
    ASSERT_EQ(vflash_pretend_capability(cc), VFLASH_OK);
    const vflash::Decision d =
        vflash::select_backward_kernel(vflash::validate_varlen_bwd(c.a), vflash::query_device(0), std::nullopt);
    const char* name = nullptr;
    const vflash_status s = vflash_varlen_bwd_kernel_name(&c.a, &name);
    if (d.kernel) {
      ASSERT_EQ(s, VFLASH_OK) << vflash_last_error();
      EXPECT_STREQ(name, d.kernel->name);
      EXPECT_EQ(d.kernel->pass, vflash::Pass::backward);
      EXPECT_NE(d.kernel->launch_backward, nullptr);
    } else {
      EXPECT_EQ(s, VFLASH_ERROR_UNSUPPORTED);
      EXPECT_NE(std::strstr(vflash_last_error(), "no backward kernel of this build"), nullptr) << vflash_last_error();
    }
  }
  ASSERT_EQ(vflash_pretend_capability(nullptr), VFLASH_OK);
}

// Forcing a forward kernel leaves the backward to dispatch, and the reverse.
TEST(ApiBackward, ForcingRestrictsOnlyTheForcedKernelsPass) {
  ASSERT_EQ(vflash_pretend_capability("9.0"), VFLASH_OK);
  CudaShapedBackward c;
  const auto forward = vflash::cuda_kernels();
  const auto backward = vflash::cuda_backward_kernels();
  const char* unforced = nullptr;
  const bool served = vflash_varlen_bwd_kernel_name(&c.a, &unforced) == VFLASH_OK;
  if (!forward.empty() && served) {
    ASSERT_EQ(vflash_force_kernel(forward[0].name), VFLASH_OK) << vflash_last_error();
    const char* name = nullptr;
    ASSERT_EQ(vflash_varlen_bwd_kernel_name(&c.a, &name), VFLASH_OK) << vflash_last_error();
    EXPECT_STREQ(name, unforced);
  }
  for (const vflash::KernelInfo& k : backward) {
    ASSERT_EQ(vflash_force_kernel(k.name), VFLASH_OK) << vflash_last_error();
    const char* name = nullptr;
    ASSERT_EQ(vflash_varlen_bwd_kernel_name(&c.a, &name), VFLASH_OK) << vflash_last_error();
    EXPECT_STREQ(name, k.name);
    // The forward of the same shapes dispatches as without forcing.
    vflash::VarlenArgs f;
    f.q = c.a.q;
    f.k = c.a.k;
    f.v = c.a.v;
    f.out = c.a.out;
    f.cu_seqlens_q = c.a.cu_seqlens_q;
    f.cu_seqlens_k = c.a.cu_seqlens_k;
    f.max_seqlen_q = f.max_seqlen_k = 64;
    const vflash::Decision d = vflash::select_kernel(vflash::validate_varlen(f), vflash::query_device(0), std::nullopt);
    if (d.kernel) EXPECT_EQ(vflash::varlen_kernel_name(f), d.kernel->name);
  }
  ASSERT_EQ(vflash_force_kernel(nullptr), VFLASH_OK);
  ASSERT_EQ(vflash_pretend_capability(nullptr), VFLASH_OK);
}

}  // namespace
