// The C ABI and C++ API glue on host tensors (CPU reference backend): status
// codes, thread-local error text naming the argument, struct_size, overrides,
// and the doctor's JSON.
#include <algorithm>
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dispatch.hpp"
#include "doctor.hpp"
#include "dtype.hpp"
#include "reference/reference.hpp"
#include "test_util.hpp"
#include "validate.hpp"
#include "vflash/vflash.h"
#include "vflash/vflash.hpp"

namespace {

using vflash::testutil::expect_error;

// A host varlen problem with its buffers.
struct HostProblem {
  std::vector<int32_t> cu{0, 5, 5, 17};  // includes an empty sequence
  int heads_q = 4, heads_k = 2, d = 16;
  int64_t total = 17;
  std::vector<float> q, k, v, out, lse;
  uint64_t seed = std::random_device{}();

  HostProblem() {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist;
    auto fill = [&](std::vector<float>& x, int heads) {
      x.resize(size_t(total) * heads * d);
      for (auto& e : x) e = dist(rng);
    };
    fill(q, heads_q);
    fill(k, heads_k);
    fill(v, heads_k);
    out.assign(q.size(), std::nanf(""));
    lse.assign(size_t(heads_q) * total, std::nanf(""));
  }

  vflash_varlen_args args() {
    vflash_varlen_args a;
    vflash_varlen_args_init(&a);
    const int64_t qs[3] = {total, heads_q, d}, ks[3] = {total, heads_k, d}, ls[2] = {heads_q, total};
    const int64_t cs[1] = {int64_t(cu.size())};
    EXPECT_EQ(vflash_tensor_make(&a.q, q.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, qs), VFLASH_OK);
    EXPECT_EQ(vflash_tensor_make(&a.k, k.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, ks), VFLASH_OK);
    EXPECT_EQ(vflash_tensor_make(&a.v, v.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, ks), VFLASH_OK);
    EXPECT_EQ(vflash_tensor_make(&a.out, out.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 3, qs), VFLASH_OK);
    EXPECT_EQ(vflash_tensor_make(&a.lse, lse.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 2, ls), VFLASH_OK);
    EXPECT_EQ(vflash_tensor_make(&a.cu_seqlens_q, cu.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, 1, cs),
              VFLASH_OK);
    a.cu_seqlens_k = a.cu_seqlens_q;
    a.max_seqlen_q = a.max_seqlen_k = 12;
    a.causal = 1;
    return a;
  }
};

class Api : public ::testing::Test {
 protected:
  void TearDown() override {
    vflash_force_kernel(nullptr);
    vflash_pretend_capability(nullptr);
  }
};

TEST_F(Api, ArgsInitDefaults) {
  vflash_varlen_args v;
  std::memset(&v, 0x5a, sizeof v);
  vflash_varlen_args_init(&v);
  EXPECT_EQ(v.struct_size, sizeof v);
  EXPECT_EQ(v.softmax_scale, 0.f);
  EXPECT_EQ(v.window_left, -1);
  EXPECT_EQ(v.window_right, -1);
  EXPECT_EQ(v.causal, 0);
  EXPECT_EQ(v.softcap, 0.f);
  EXPECT_EQ(v.lse.data, nullptr);
  EXPECT_EQ(v.workspace, nullptr);
  EXPECT_EQ(v.stream, nullptr);
  vflash_dense_args d;
  std::memset(&d, 0x5a, sizeof d);
  vflash_dense_args_init(&d);
  EXPECT_EQ(d.struct_size, sizeof d);
  EXPECT_EQ(d.window_left, -1);
  EXPECT_EQ(d.window_right, -1);
  EXPECT_EQ(d.lse.data, nullptr);
  const vflash::VarlenArgs cpp;
  EXPECT_EQ(cpp.struct_size, sizeof(vflash_varlen_args));
}

TEST_F(Api, TensorMakeRowMajorAndRejectsBadShapes) {
  vflash_tensor t;
  const int64_t shape[4] = {2, 3, 5, 7};
  ASSERT_EQ(vflash_tensor_make(&t, nullptr, VFLASH_DTYPE_BF16, 0, 4, shape), VFLASH_OK);
  EXPECT_EQ(t.stride[3], 1);
  EXPECT_EQ(t.stride[2], 7);
  EXPECT_EQ(t.stride[1], 35);
  EXPECT_EQ(t.stride[0], 105);
  EXPECT_EQ(t.device, 0);
  EXPECT_STREQ(vflash_last_error(), "");

  EXPECT_EQ(vflash_tensor_make(&t, nullptr, VFLASH_DTYPE_BF16, 0, 5, shape), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "ndim"), nullptr) << vflash_last_error();
  EXPECT_EQ(vflash_tensor_make(&t, nullptr, VFLASH_DTYPE_BF16, 0, 0, shape), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(vflash_tensor_make(&t, nullptr, VFLASH_DTYPE_BF16, 0, 2, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "shape"), nullptr) << vflash_last_error();
  const int64_t negative[2] = {4, -1};
  EXPECT_EQ(vflash_tensor_make(&t, nullptr, VFLASH_DTYPE_BF16, 0, 2, negative), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "shape[1]"), nullptr) << vflash_last_error();
  const int64_t huge[3] = {int64_t(1) << 40, int64_t(1) << 40, 2};
  EXPECT_EQ(vflash_tensor_make(&t, nullptr, VFLASH_DTYPE_BF16, 0, 3, huge), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(vflash_tensor_make(nullptr, nullptr, VFLASH_DTYPE_BF16, 0, 4, shape), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(vflash_tensor_make(&t, nullptr, vflash_dtype(42), 0, 4, shape), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "dtype"), nullptr) << vflash_last_error();

  EXPECT_THROW(vflash::make_tensor(nullptr, VFLASH_DTYPE_FP16, 0, {}), vflash::Error);
  const auto cpp = vflash::make_tensor(nullptr, VFLASH_DTYPE_FP16, -1, {3, 4});
  EXPECT_EQ(cpp.stride[0], 4);
  EXPECT_EQ(cpp.ndim, 2);
}

TEST_F(Api, StatusStringsAreDistinct) {
  std::vector<std::string> seen;
  for (int s = VFLASH_OK; s <= VFLASH_ERROR_INTERNAL; ++s) {
    const std::string text = vflash_status_string(vflash_status(s));
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(std::find(seen.begin(), seen.end(), text), seen.end()) << text;
    seen.push_back(text);
  }
  EXPECT_STREQ(vflash_status_string(vflash_status(77)), "unknown status");
}

TEST_F(Api, VarlenOnHostMatchesReference) {
  HostProblem p;
  SCOPED_TRACE("seed " + std::to_string(p.seed));
  vflash_varlen_args a = p.args();
  ASSERT_EQ(vflash_varlen_fwd(&a), VFLASH_OK) << vflash_last_error();
  EXPECT_STREQ(vflash_last_error(), "");

  std::vector<double> ref(p.out.size()), ref_lse(p.lse.size());
  vflash::reference_attention(vflash::validate_varlen(a), ref, ref_lse);
  double max_ref = 0;
  for (double r : ref) max_ref = std::max(max_ref, std::abs(r));
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_FALSE(std::isnan(p.out[i])) << i;
    ASSERT_NEAR(p.out[i], ref[i], 1e-5 * max_ref) << i;
  }
  for (size_t i = 0; i < ref_lse.size(); ++i) {
    ASSERT_FALSE(std::isnan(p.lse[i])) << i;
    if (std::isinf(ref_lse[i]))
      EXPECT_EQ(p.lse[i], float(ref_lse[i])) << i;
    else
      EXPECT_NEAR(p.lse[i], ref_lse[i], 1e-5 * std::max(1.0, std::abs(ref_lse[i]))) << i;
  }

  const char* name = nullptr;
  ASSERT_EQ(vflash_varlen_kernel_name(&a, &name), VFLASH_OK);
  EXPECT_STREQ(name, "cpu_reference");
  size_t bytes = 123;
  ASSERT_EQ(vflash_varlen_workspace_size(&a, &bytes), VFLASH_OK);
  EXPECT_EQ(bytes, 0u);
}

// Rows past cu_seqlens_q[batch]: untouched by default, rows without keys
// (out 0, lse -inf) with zero_rows_past_end; a caller whose struct ends
// before that field (the struct's first release) gets the default.
TEST_F(Api, RowsPastTheLastSequence) {
  for (int mode = 0; mode < 3; ++mode) {
    SCOPED_TRACE("mode " + std::to_string(mode));
    HostProblem pr;
    pr.cu = {0, 5, 5, 12};  // rows 12..16 belong to no sequence
    vflash_varlen_args a = pr.args();
    a.zero_rows_past_end = mode == 0 ? 0 : 1;
    if (mode == 2) a.struct_size = offsetof(vflash_varlen_args, zero_rows_past_end);
    ASSERT_EQ(vflash_varlen_fwd(&a), VFLASH_OK) << vflash_last_error();
    const bool zeroed = mode == 1;
    for (int64_t row = 0; row < pr.total; ++row)
      for (int h = 0; h < pr.heads_q; ++h) {
        const float l = pr.lse[size_t(h * pr.total + row)];
        const float o = pr.out[size_t((row * pr.heads_q + h) * pr.d)];
        if (row < 12) {
          EXPECT_FALSE(std::isnan(o)) << "row " << row;
        } else if (zeroed) {
          EXPECT_EQ(o, 0.f) << "row " << row;
          EXPECT_TRUE(std::isinf(l) && l < 0) << "row " << row;
        } else {
          EXPECT_TRUE(std::isnan(o) && std::isnan(l)) << "row " << row << " was written";
        }
      }
  }
}

TEST_F(Api, DenseOnHostMatchesVarlenOfSameData) {
  // One batch of two equal-length sequences, dense vs varlen: same numbers.
  const int batch = 2, seqlen = 9, heads = 3, d = 8;
  std::mt19937_64 rng(std::random_device{}());
  std::normal_distribution<float> dist;
  std::vector<float> q(batch * seqlen * heads * d), k(q.size()), v(q.size());
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = dist(rng);
  std::vector<float> dense_out(q.size(), std::nanf("")), varlen_out(q.size(), std::nanf(""));
  std::vector<int32_t> cu{0, seqlen, 2 * seqlen};

  vflash::DenseArgs da;
  da.q = vflash::make_tensor(q.data(), VFLASH_DTYPE_FP32, -1, {batch, seqlen, heads, d});
  da.k = vflash::make_tensor(k.data(), VFLASH_DTYPE_FP32, -1, {batch, seqlen, heads, d});
  da.v = vflash::make_tensor(v.data(), VFLASH_DTYPE_FP32, -1, {batch, seqlen, heads, d});
  da.out = vflash::make_tensor(dense_out.data(), VFLASH_DTYPE_FP32, -1, {batch, seqlen, heads, d});
  da.window_left = 3;
  da.window_right = 2;
  ASSERT_NO_THROW(vflash::dense_fwd(da));
  EXPECT_EQ(vflash::dense_workspace_size(da), 0u);

  vflash::VarlenArgs va;
  va.q = vflash::make_tensor(q.data(), VFLASH_DTYPE_FP32, -1, {batch * seqlen, heads, d});
  va.k = vflash::make_tensor(k.data(), VFLASH_DTYPE_FP32, -1, {batch * seqlen, heads, d});
  va.v = vflash::make_tensor(v.data(), VFLASH_DTYPE_FP32, -1, {batch * seqlen, heads, d});
  va.out = vflash::make_tensor(varlen_out.data(), VFLASH_DTYPE_FP32, -1, {batch * seqlen, heads, d});
  va.cu_seqlens_q = va.cu_seqlens_k = vflash::make_tensor(cu.data(), VFLASH_DTYPE_INT32, -1, {3});
  va.max_seqlen_q = va.max_seqlen_k = seqlen;
  va.window_left = 3;
  va.window_right = 2;
  ASSERT_NO_THROW(vflash::varlen_fwd(va));
  for (size_t i = 0; i < q.size(); ++i) {
    ASSERT_FALSE(std::isnan(dense_out[i])) << i;
    ASSERT_EQ(dense_out[i], varlen_out[i]) << i;
  }
  vflash_dense_args c = da;
  EXPECT_EQ(vflash_dense_fwd(&c), VFLASH_OK) << vflash_last_error();
}

TEST_F(Api, ErrorsNameTheArgument) {
  HostProblem p;
  vflash_varlen_args a = p.args();

  // Smaller than the struct's first release (later fields may be cut off, earlier ones not).
  a.struct_size = offsetof(vflash_varlen_args, zero_rows_past_end) - 8;
  EXPECT_EQ(vflash_varlen_fwd(&a), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "struct_size"), nullptr) << vflash_last_error();
  a.struct_size = 0;
  size_t bytes = 0;
  EXPECT_EQ(vflash_varlen_workspace_size(&a, &bytes), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "struct_size"), nullptr) << vflash_last_error();
  vflash_dense_args d;
  vflash_dense_args_init(&d);
  d.struct_size = 4;
  EXPECT_EQ(vflash_dense_fwd(&d), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "struct_size"), nullptr) << vflash_last_error();

  a = p.args();
  a.k.dtype = VFLASH_DTYPE_BF16;
  EXPECT_EQ(vflash_varlen_fwd(&a), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "k.dtype"), nullptr) << vflash_last_error();

  EXPECT_EQ(vflash_varlen_fwd(nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "args"), nullptr) << vflash_last_error();
  EXPECT_EQ(vflash_dense_fwd(nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  a = p.args();
  EXPECT_EQ(vflash_varlen_workspace_size(&a, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "bytes"), nullptr) << vflash_last_error();
  EXPECT_EQ(vflash_varlen_kernel_name(&a, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);

  // The C++ API throws the same typed error.
  vflash::VarlenArgs cpp;
  static_cast<vflash_varlen_args&>(cpp) = p.args();
  cpp.k.dtype = VFLASH_DTYPE_BF16;
  expect_error([&] { vflash::varlen_fwd(cpp); }, vflash::Status::invalid_argument, "k.dtype");

  // Success clears the message.
  a = p.args();
  ASSERT_EQ(vflash_varlen_fwd(&a), VFLASH_OK);
  EXPECT_STREQ(vflash_last_error(), "");
}

TEST_F(Api, DenseKernelNameOnHostAndErrors) {
  const int batch = 2, seqlen = 5, heads = 2, d = 8;
  std::vector<float> q(batch * seqlen * heads * d), out(q.size());
  vflash::DenseArgs a;
  a.q = a.k = a.v = vflash::make_tensor(q.data(), VFLASH_DTYPE_FP32, -1, {batch, seqlen, heads, d});
  a.out = vflash::make_tensor(out.data(), VFLASH_DTYPE_FP32, -1, {batch, seqlen, heads, d});
  a.causal = 1;
  const char* name = nullptr;
  ASSERT_EQ(vflash_dense_kernel_name(&a, &name), VFLASH_OK) << vflash_last_error();
  EXPECT_STREQ(name, "cpu_reference");
  EXPECT_EQ(vflash::dense_kernel_name(a), "cpu_reference");

  EXPECT_EQ(vflash_dense_kernel_name(&a, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "name"), nullptr) << vflash_last_error();
  EXPECT_EQ(vflash_dense_kernel_name(nullptr, &name), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "args"), nullptr) << vflash_last_error();

  a.k.dtype = VFLASH_DTYPE_BF16;
  EXPECT_EQ(vflash_dense_kernel_name(&a, &name), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "k.dtype"), nullptr) << vflash_last_error();
  expect_error([&] { vflash::dense_kernel_name(a); }, vflash::Status::invalid_argument, "k.dtype");
}

TEST_F(Api, LastErrorIsThreadLocal) {
  EXPECT_EQ(vflash_varlen_fwd(nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  std::string other_thread = "unset";
  std::thread([&] { other_thread = vflash_last_error(); }).join();
  EXPECT_EQ(other_thread, "");
  EXPECT_NE(std::string(vflash_last_error()), "");
}

// CUDA-tensor arguments that validation accepts; the data are never touched
// when no kernel runs (dispatch reads shapes only).
struct CudaShapedArgs {
  alignas(16) static inline char storage[64];
  std::vector<int32_t> cu{0, 64, 128};
  vflash::VarlenArgs a;
  CudaShapedArgs() {
    a.q = vflash::make_tensor(storage, VFLASH_DTYPE_BF16, 0, {128, 8, 128});
    a.k = vflash::make_tensor(storage, VFLASH_DTYPE_BF16, 0, {128, 8, 128});
    a.v = vflash::make_tensor(storage, VFLASH_DTYPE_BF16, 0, {128, 8, 128});
    a.out = vflash::make_tensor(storage, VFLASH_DTYPE_BF16, 0, {128, 8, 128});
    a.cu_seqlens_q = a.cu_seqlens_k = vflash::make_tensor(storage, VFLASH_DTYPE_INT32, 0, {3});
    a.cu_seqlens_q_host = a.cu_seqlens_k_host = cu.data();
    a.max_seqlen_q = a.max_seqlen_k = 64;
  }
};

TEST_F(Api, CudaTensorsWithoutDeviceSayNoDevice) {
  if (vflash::query_device(0).present) GTEST_SKIP() << "a CUDA device is present";
  CudaShapedArgs c;
  const char* name = nullptr;
  EXPECT_EQ(vflash_varlen_kernel_name(&c.a, &name), VFLASH_ERROR_NO_DEVICE);
  EXPECT_NE(std::strstr(vflash_last_error(), "q.device"), nullptr) << vflash_last_error();
  size_t bytes = 0;
  EXPECT_EQ(vflash_varlen_workspace_size(&c.a, &bytes), VFLASH_ERROR_NO_DEVICE);

  vflash::DenseArgs dense;
  dense.q = dense.k = dense.v = dense.out =
      vflash::make_tensor(CudaShapedArgs::storage, VFLASH_DTYPE_BF16, 0, {2, 64, 8, 128});
  EXPECT_EQ(vflash_dense_kernel_name(&dense, &name), VFLASH_ERROR_NO_DEVICE);
  EXPECT_NE(std::strstr(vflash_last_error(), "q.device"), nullptr) << vflash_last_error();
  expect_error([&] { vflash::dense_kernel_name(dense); }, vflash::Status::no_device, "q.device");
}

TEST_F(Api, PretendAndForceDriveTheKernelName) {
  EXPECT_EQ(vflash_pretend_capability("sm_9x"), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "capability"), nullptr) << vflash_last_error();
  EXPECT_EQ(vflash_force_kernel("no_such_kernel"), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "no_such_kernel"), nullptr) << vflash_last_error();

  CudaShapedArgs c;
  const vflash::FwdParams params = vflash::validate_varlen(c.a);
  for (const char* cc : {"9.0", "10.3", "12.1", "8.6", "11.0", "7.5"}) {
    SCOPED_TRACE(cc);
    ASSERT_EQ(vflash_pretend_capability(cc), VFLASH_OK);
    EXPECT_EQ(vflash::pretended_capability(), vflash::arch::parse_capability(cc));
    const vflash::Decision d = vflash::select_kernel(params, vflash::query_device(0));
    const char* name = nullptr;
    const vflash_status s = vflash_varlen_kernel_name(&c.a, &name);
    if (d.kernel) {
      ASSERT_EQ(s, VFLASH_OK) << vflash_last_error();
      EXPECT_STREQ(name, d.kernel->name);
    } else {
      // This build has no code for cc: a clear refusal naming the reasons.
      EXPECT_EQ(s, VFLASH_ERROR_UNSUPPORTED);
      EXPECT_NE(std::strstr(vflash_last_error(), "no kernel of this build"), nullptr) << vflash_last_error();
    }
  }
  const auto kernels = vflash::cuda_kernels();
  if (kernels.empty()) return;
  ASSERT_EQ(vflash_pretend_capability("9.0"), VFLASH_OK);
  ASSERT_EQ(vflash_force_kernel(kernels[0].name), VFLASH_OK);
  EXPECT_EQ(vflash::forced_kernel(), std::string(kernels[0].name));
  ASSERT_EQ(vflash_force_kernel(nullptr), VFLASH_OK);
  EXPECT_FALSE(vflash::forced_kernel());
  ASSERT_EQ(vflash_pretend_capability(nullptr), VFLASH_OK);
  EXPECT_FALSE(vflash::pretended_capability());
}

// VFLASH_FORCE_KERNEL is read at start-up without vflash_force_kernel's check:
// a name that is no kernel must fail each CUDA call saying so, not as a call
// that no kernel serves.
TEST_F(Api, UnknownForcedKernelIsReportedByName) {
  ASSERT_EQ(vflash_pretend_capability("9.0"), VFLASH_OK);
  vflash::set_forced_kernel("no_such_kernel");  // what the environment variable does
  CudaShapedArgs c;
  const char* name = nullptr;
  EXPECT_EQ(vflash_varlen_kernel_name(&c.a, &name), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(vflash_last_error()).rfind("VFLASH_FORCE_KERNEL: no kernel named 'no_such_kernel' in this build (kernels: ", 0), 0u)
      << vflash_last_error();
  size_t bytes = 0;
  EXPECT_EQ(vflash_varlen_workspace_size(&c.a, &bytes), VFLASH_ERROR_INVALID_ARGUMENT);
  vflash::set_forced_kernel(std::nullopt);
}

// Repeated calls of one shape reuse the remembered choice: that memory must not
// outlive a change of max_seqlen_q (or of max_seqlen_k, which decides whether
// a kernel packs short sequences) across a kernel's efficiency floor.
TEST_F(Api, RememberedKernelChoiceFollowsEfficiencyFloors) {
  ASSERT_EQ(vflash_pretend_capability("9.0"), VFLASH_OK);
  CudaShapedArgs c;
  c.a.k = c.a.v = vflash::make_tensor(CudaShapedArgs::storage, VFLASH_DTYPE_BF16, 0, {512, 8, 128});
  std::vector<std::string> names;
  const std::pair<int, int> maxima[] = {{128, 128}, {64, 300}, {128, 128}, {64, 300}, {64, 64}};
  for (auto [max_q, max_k] : maxima) {
    SCOPED_TRACE(std::to_string(max_q) + " x " + std::to_string(max_k));
    c.a.max_seqlen_q = max_q;
    c.a.max_seqlen_k = max_k;
    const vflash::Decision d = vflash::select_kernel(vflash::validate_varlen(c.a), vflash::query_device(0));
    if (!d.kernel) GTEST_SKIP() << "this build has no kernel for 9.0";
    const char* name = nullptr;
    ASSERT_EQ(vflash_varlen_kernel_name(&c.a, &name), VFLASH_OK) << vflash_last_error();
    EXPECT_STREQ(name, d.kernel->name);
    names.emplace_back(name);
  }
  const auto kernels = vflash::cuda_kernels();
  for (const vflash::KernelInfo& k : kernels) {
    if (k.min_efficient_seqlen_q != 128 || names[0] != k.name) continue;
    EXPECT_NE(names[0], names[1]) << "the floored kernel must give way at max_seqlen_q 64";
    EXPECT_EQ(names[1], names[3]);
    if (k.packs_varlen_up_to_seqlen_k >= 64) EXPECT_EQ(names[4], k.name) << "short sequences it packs";
  }
  ASSERT_EQ(vflash_pretend_capability(nullptr), VFLASH_OK);
}

// Runs python3's json module on `text`; false with the reason when it does not parse.
testing::AssertionResult python_parses_json(const std::string& text, const std::string& check) {
  const std::string path = ::testing::TempDir() + "vflash_doctor_" + std::to_string(std::random_device{}()) + ".json";
  std::ofstream(path) << text;
  const std::string cmd = "python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); " + check + "' " + path;
  const int rc = std::system(cmd.c_str());
  std::remove(path.c_str());
  if (rc == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << "`" << cmd << "` exited with " << rc;
}

TEST_F(Api, DoctorJsonBufferContractAndParses) {
  if (std::system("python3 -c pass") != 0) GTEST_SKIP() << "python3 not available to parse JSON";
  size_t needed = 0;
  ASSERT_EQ(vflash_doctor_json(nullptr, 0, &needed), VFLASH_OK) << vflash_last_error();
  ASSERT_GT(needed, 2u);
  std::vector<char> buf(needed + 16, 'x');
  size_t again = 0;
  ASSERT_EQ(vflash_doctor_json(buf.data(), buf.size(), &again), VFLASH_OK);
  const std::string json(buf.data());
  EXPECT_EQ(json.size() + 1, again);
  // Truncation keeps a terminated prefix.
  char small[8];
  ASSERT_EQ(vflash_doctor_json(small, sizeof small, nullptr), VFLASH_OK);
  EXPECT_EQ(std::string(small), json.substr(0, 7));
  EXPECT_EQ(vflash_doctor_json(nullptr, 5, nullptr), VFLASH_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::strstr(vflash_last_error(), "buf"), nullptr);

  EXPECT_EQ(json, vflash::doctor_json());
  std::string names = "[";
  for (const auto& k : vflash::cuda_kernels()) names += std::string("\"") + k.name + "\",";
  names += "]";
  EXPECT_TRUE(python_parses_json(
      json, "f=[k[\"name\"] for fam in r[\"families\"] for k in fam[\"kernels\"]]; assert sorted(f)==sorted(" +
                names + "), f; assert len(r[\"calls\"])>=5; assert all(len(c[\"verdicts\"])==len(f) for c in "
                        "r[\"calls\"]); assert len(r[\"portability\"])==12"));

  // Under a pretended capability the device section says so.
  ASSERT_EQ(vflash_pretend_capability("10.3"), VFLASH_OK);
  EXPECT_TRUE(python_parses_json(vflash::doctor_json(),
                                 "d=r[\"device\"]; assert d[\"pretended\"] and d[\"capability\"]==\"10.3\", d"));
}

TEST_F(Api, JsonQuoteEscapes) {
  if (std::system("python3 -c pass") != 0) GTEST_SKIP() << "python3 not available to parse JSON";
  const std::string nasty = "a\"b\\c\nd\te\x01" "f\x1f/\xc3\xa9";
  EXPECT_TRUE(python_parses_json("{\"s\": " + vflash::json_quote(nasty) + "}",
                                 "assert r[\"s\"]==\"a\\\"b\\\\c\\nd\\te\\x01f\\x1f/\\u00e9\", repr(r)"));
}

TEST_F(Api, VersionIsDotted) {
  int major = -1, minor = -1, patch = -1;
  EXPECT_EQ(std::sscanf(vflash_version(), "%d.%d.%d", &major, &minor, &patch), 3) << vflash_version();
  EXPECT_GE(major, 0);
}

}  // namespace
