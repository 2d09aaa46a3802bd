// Backward dispatch as data: a synthetic table mixing forward and backward
// kernels with known answers, and this build's backward entries under
// pretended capabilities (no GPU needed).
#include <gtest/gtest.h>

#include <string>

#include "dispatch.hpp"
#include "doctor.hpp"

namespace vflash {
namespace {

const int32_t kCuSeqlens[] = {0, 64, 128};  // only its address matters: marks a varlen call
float kLse[1];

BwdParams backward_call(int d, bool deterministic) {
  BwdParams b;
  FwdParams& p = b.fwd;
  p.dtype = DType::bf16;
  p.head_dim = p.head_dim_v = d;
  p.heads_q = 8;
  p.heads_k = 2;
  p.causal = true;
  p.window_right = 0;
  p.lse = kLse;
  p.batch = 2;
  p.max_seqlen_q = p.max_seqlen_k = 64;
  p.cu_seqlens_q = p.cu_seqlens_k = kCuSeqlens;
  p.total_q = p.total_k = 128;
  p.device = 0;
  b.deterministic = deterministic;
  return b;
}

DeviceInfo pretend(arch::Capability cc) {
  DeviceInfo d;
  d.present = d.pretended = true;
  d.ordinal = 0;
  d.name = "(pretended)";
  d.cc = cc;
  return d;
}

constexpr HeadDimRule kAnyDim[] = {{8, 256, 8, 8, 256, 8, false}};
constexpr HeadDimRule kD128[] = {{128, 128, 1, 128, 128, 1, true}};
constexpr uint32_t k16bit = dtype_bit(DType::fp16) | dtype_bit(DType::bf16);
int fake_launch_backward(const BwdParams&) { return 0; }

const KernelInfo kMixed[] = {
    {.name = "fwd_best", .description = "forward, highest rank", .rank = 900, .targets = "sm_80;sm_90",
     .dtypes = k16bit, .features = kAllFeatures, .head_dims = kAnyDim},
    {.name = "bwd_portable", .description = "backward, deterministic too", .rank = 0, .targets = "sm_75;compute_75",
     .dtypes = k16bit, .features = kAllFeatures | kDeterministic, .head_dims = kAnyDim, .pass = Pass::backward,
     .launch_backward = fake_launch_backward},
    {.name = "bwd_fast_d128", .description = "backward, d128, atomics only", .rank = 100, .targets = "sm_90",
     .dtypes = k16bit, .features = kAllFeatures, .head_dims = kD128, .pass = Pass::backward,
     .launch_backward = fake_launch_backward},
};

TEST(DispatchBackward, ForwardCallsSeeOnlyForwardKernels) {
  FwdParams p = backward_call(128, false).fwd;
  const Decision d = select_kernel_from(kMixed, p, pretend({9, 0}), std::nullopt);
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "fwd_best");
  ASSERT_EQ(d.verdicts.size(), 1u);
}

TEST(DispatchBackward, BackwardCallsRankBackwardKernels) {
  const Decision d = select_backward_kernel_from(kMixed, backward_call(128, false), pretend({9, 0}), std::nullopt);
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "bwd_fast_d128");
  ASSERT_EQ(d.verdicts.size(), 2u);  // the forward kernel is not a candidate
  EXPECT_NE(d.verdicts[1].reason.find("ranks higher"), std::string::npos) << d.verdicts[1].reason;
  // Another head dim, or another capability: the portable one.
  EXPECT_STREQ(select_backward_kernel_from(kMixed, backward_call(64, false), pretend({9, 0}), std::nullopt).kernel->name,
               "bwd_portable");
  EXPECT_STREQ(select_backward_kernel_from(kMixed, backward_call(128, false), pretend({8, 6}), std::nullopt).kernel->name,
               "bwd_portable");
}

TEST(DispatchBackward, DeterministicIsAFeature) {
  const Decision d = select_backward_kernel_from(kMixed, backward_call(128, true), pretend({9, 0}), std::nullopt);
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "bwd_portable");
  bool explained = false;
  for (const CandidateVerdict& v : d.verdicts)
    if (std::string(v.kernel->name) == "bwd_fast_d128") explained = v.reason == "does not support deterministic";
  EXPECT_TRUE(explained) << describe_rejections(d);
}

TEST(DispatchBackward, ForcingAppliesToItsOwnPass) {
  // A forced forward kernel leaves the backward choice alone...
  Decision d = select_backward_kernel_from(kMixed, backward_call(128, false), pretend({9, 0}), "fwd_best");
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "bwd_fast_d128");
  // ...a forced backward kernel restricts it...
  d = select_backward_kernel_from(kMixed, backward_call(128, false), pretend({9, 0}), "bwd_portable");
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "bwd_portable");
  EXPECT_NE(describe_rejections(d).find("not the forced kernel 'bwd_portable'"), std::string::npos);
  // ...and leaves the forward alone; an unknown name still rejects everything.
  EXPECT_STREQ(select_kernel_from(kMixed, backward_call(128, false).fwd, pretend({9, 0}), "bwd_portable").kernel->name,
               "fwd_best");
  EXPECT_EQ(select_backward_kernel_from(kMixed, backward_call(128, false), pretend({9, 0}), "nope").kernel, nullptr);
}

TEST(DispatchBackward, RealRegistryServesEveryCapabilityItsTargetsRunOn) {
  for (const KernelInfo& k : cuda_backward_kernels()) {
    EXPECT_EQ(k.pass, Pass::backward) << k.name;
    EXPECT_NE(k.launch_backward, nullptr) << k.name;
    EXPECT_NE(k.targets, nullptr) << k.name;
  }
  for (const KernelInfo& k : cuda_kernels()) EXPECT_EQ(k.pass, Pass::forward) << k.name;
  for (const arch::Capability cc : arch::known_capabilities()) {
    for (const bool deterministic : {false, true}) {
      const Decision d = select_backward_kernel(backward_call(128, deterministic), pretend(cc), std::nullopt);
      ASSERT_EQ(d.verdicts.size(), cuda_backward_kernels().size());
      bool some_target_runs = false;
      for (const KernelInfo& k : cuda_backward_kernels())
        for (const arch::Target& t : arch::parse_target_list(k.targets)) some_target_runs |= arch::runs_on(t, cc);
      EXPECT_EQ(d.kernel != nullptr, some_target_runs) << arch::to_string(cc) << ": " << describe_rejections(d);
    }
  }
}

TEST(DispatchBackward, DoctorReportsTheBackward) {
  const std::string json = doctor_report_json();
  EXPECT_NE(json.find("\"backward_kernels\": ["), std::string::npos);
  EXPECT_NE(json.find("\"backward_calls\": ["), std::string::npos);
  for (const KernelInfo& k : cuda_backward_kernels())
    EXPECT_NE(json.find("{\"name\": \"" + std::string(k.name) + "\""), std::string::npos) << k.name;
  EXPECT_NE(doctor_report_text().find("Their backward"), std::string::npos);
}

}  // namespace
}  // namespace vflash
