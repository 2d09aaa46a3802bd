// Dispatch as data: a synthetic kernel table with known answers, and the real
// registry of this build, under pretended capabilities (no GPU needed).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "dispatch.hpp"

namespace vflash {
namespace {

const int32_t kCuSeqlens[] = {0, 64, 128};  // only its address matters: marks a varlen call

struct Call {
  DType dtype = DType::bf16;
  int d = 128, dv = 128;
  int heads_q = 16, heads_k = 16;
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.f;
  bool lse = false;
  bool varlen = true;
};

FwdParams params_of(const Call& c) {
  static float lse_dummy;
  FwdParams p;
  p.dtype = c.dtype;
  p.head_dim = c.d;
  p.head_dim_v = c.dv;
  p.heads_q = c.heads_q;
  p.heads_k = c.heads_k;
  p.causal = c.causal;
  p.window_left = c.window_left;
  p.window_right = c.causal ? 0 : c.window_right;
  p.softcap = c.softcap;
  p.lse = c.lse ? &lse_dummy : nullptr;
  p.batch = 2;
  p.max_seqlen_q = p.max_seqlen_k = 64;
  if (c.varlen) {
    p.cu_seqlens_q = p.cu_seqlens_k = kCuSeqlens;
    p.total_q = p.total_k = 128;
  } else {
    p.seqlen_q = p.seqlen_k = 64;
  }
  p.device = 0;
  return p;
}

DeviceInfo pretend(arch::Capability cc) {
  DeviceInfo d;
  d.present = true;
  d.pretended = true;
  d.ordinal = 0;
  d.name = "(pretended)";
  d.cc = cc;
  return d;
}

bool has_target_running_on(const KernelInfo& k, arch::Capability cc) {
  const auto targets = arch::parse_target_list(k.targets);
  return std::any_of(targets.begin(), targets.end(), [&](const arch::Target& t) { return arch::runs_on(t, cc); });
}

const CandidateVerdict& verdict_of(const Decision& d, std::string_view name) {
  for (const auto& v : d.verdicts)
    if (v.kernel->name == name) return v;
  throw std::runtime_error("no verdict for " + std::string(name));
}

// --- A synthetic table: the shape of vflash's real kernels, with known answers.
constexpr HeadDimRule kAnyDim[] = {{8, 256, 8, 8, 256, 8, false}};
constexpr HeadDimRule kHopperDims[] = {{64, 256, 16, 64, 256, 16, true}};
constexpr HeadDimRule kOnlyD128[] = {{128, 128, 1, 128, 128, 1, true}};
constexpr uint32_t k16bit = dtype_bit(DType::fp16) | dtype_bit(DType::bf16);

const KernelInfo kSynthetic[] = {
    {.name = "simt_like",
     .description = "portable fallback",
     .rank = 100,
     .targets = "sm_75;sm_80;sm_90;sm_100;sm_110;sm_120;compute_75",
     .dtypes = k16bit | dtype_bit(DType::fp32),
     .features = kAllFeatures,
     .head_dims = kAnyDim},
    {.name = "hopper_like",
     .description = "sm_90a only",
     .rank = 300,
     .targets = "sm_90a",
     .dtypes = k16bit,
     .features = kAllFeatures,
     .head_dims = kHopperDims},
    {.name = "mma_like",
     .description = "tensor cores 8.0+",
     .rank = 200,
     .targets = "sm_80;sm_86;sm_89;sm_90;sm_100;sm_110;sm_120;compute_80",
     .dtypes = k16bit,
     .features = kAllFeatures,
     .head_dims = kAnyDim},
    {.name = "blackwell_d128",
     .description = "10.x family, d128, no softcap",
     .rank = 400,
     .targets = "sm_100f",
     .dtypes = k16bit,
     .features = kAllFeatures & ~kSoftcap,
     .head_dims = kOnlyD128},
};

class Dispatch : public ::testing::Test {
 protected:
  void SetUp() override {
    set_forced_kernel(std::nullopt);
    set_pretended_capability(std::nullopt);
  }
  void TearDown() override { SetUp(); }
  static Decision pick(const Call& c, arch::Capability cc) {
    return select_kernel_from(kSynthetic, params_of(c), pretend(cc));
  }
};

TEST_F(Dispatch, SyntheticExpectedChoicePerCapability) {
  struct Case {
    arch::Capability cc;
    int d;
    const char* expected;
    const char* target;
  };
  const Case cases[] = {
      {{10, 3}, 128, "blackwell_d128", "sm_100f"}, {{10, 3}, 72, "mma_like", "sm_100"},
      {{12, 1}, 128, "mma_like", "sm_120"},        {{8, 6}, 80, "mma_like", "sm_86"},
      {{8, 7}, 80, "mma_like", "sm_86"},           {{11, 0}, 128, "mma_like", "sm_110"},
      {{9, 0}, 128, "hopper_like", "sm_90a"},      {{9, 0}, 72, "mma_like", "sm_90"},
      {{7, 5}, 64, "simt_like", "sm_75"},          {{13, 0}, 64, "mma_like", "compute_80"},
  };
  for (const Case& c : cases) {
    Call call;
    call.d = call.dv = c.d;
    const Decision d = pick(call, c.cc);
    ASSERT_NE(d.kernel, nullptr) << arch::to_string(c.cc) << ": " << describe_rejections(d);
    EXPECT_STREQ(d.kernel->name, c.expected) << arch::to_string(c.cc) << " d" << c.d;
    EXPECT_EQ(d.loadable_target, c.target) << arch::to_string(c.cc) << " d" << c.d;
    EXPECT_TRUE(has_target_running_on(*d.kernel, c.cc));
  }
}

TEST_F(Dispatch, EfficiencyFloorPrefersAnotherKernelOnShortSequences) {
  std::vector<KernelInfo> table(std::begin(kSynthetic), std::end(kSynthetic));
  for (KernelInfo& k : table)
    if (std::string_view(k.name) == "hopper_like") k.min_efficient_seqlen_q = 128;
  FwdParams p = params_of(Call{});
  p.max_seqlen_q = 64;  // below the floor: the valid mma_like wins despite its lower rank
  Decision d = select_kernel_from(table, p, pretend({9, 0}));
  ASSERT_NE(d.kernel, nullptr) << describe_rejections(d);
  EXPECT_STREQ(d.kernel->name, "mma_like");
  EXPECT_NE(verdict_of(d, "hopper_like").reason.find("efficiency floor of 128"), std::string::npos)
      << verdict_of(d, "hopper_like").reason;
  p.max_seqlen_q = 128;  // at the floor: rank decides again
  d = select_kernel_from(table, p, pretend({9, 0}));
  ASSERT_NE(d.kernel, nullptr) << describe_rejections(d);
  EXPECT_STREQ(d.kernel->name, "hopper_like");
  p.max_seqlen_q = 64;  // where the floored kernel cannot run, nothing changes
  d = select_kernel_from(table, p, pretend({8, 6}));
  ASSERT_NE(d.kernel, nullptr) << describe_rejections(d);
  EXPECT_STREQ(d.kernel->name, "mma_like");
}

TEST_F(Dispatch, EfficiencyFloorExemptsVarlenCallsTheKernelPacks) {
  // A kernel that packs short varlen sequences into its tiles keeps its floor
  // for dense calls and for varlen calls with more keys than it packs.
  std::vector<KernelInfo> table(std::begin(kSynthetic), std::end(kSynthetic));
  for (KernelInfo& k : table)
    if (std::string_view(k.name) == "hopper_like") k.min_efficient_seqlen_q = 128, k.packs_varlen_up_to_seqlen_k = 256;
  Call varlen;
  varlen.varlen = true;
  FwdParams p = params_of(varlen);  // 64-token sequences: packed, the floor does not apply
  Decision d = select_kernel_from(table, p, pretend({9, 0}));
  ASSERT_NE(d.kernel, nullptr) << describe_rejections(d);
  EXPECT_STREQ(d.kernel->name, "hopper_like");
  p.max_seqlen_k = 257;  // too many keys to pack: below the floor again, and the reason says what exempts
  d = select_kernel_from(table, p, pretend({9, 0}));
  ASSERT_NE(d.kernel, nullptr) << describe_rejections(d);
  EXPECT_STREQ(d.kernel->name, "mma_like");
  const std::string reason = verdict_of(d, "hopper_like").reason;
  EXPECT_NE(reason.find("efficiency floor of 128"), std::string::npos) << reason;
  EXPECT_NE(reason.find("max_seqlen_k <= 256"), std::string::npos) << reason;
  Call dense;
  dense.varlen = false;
  d = select_kernel_from(table, params_of(dense), pretend({9, 0}));  // dense 64 rows: below the floor
  ASSERT_NE(d.kernel, nullptr) << describe_rejections(d);
  EXPECT_STREQ(d.kernel->name, "mma_like");
}

TEST_F(Dispatch, ArchSpecificKernelOnlyOnItsChip) {
  for (const auto cc : arch::known_capabilities()) {
    const Decision d = pick(Call{}, cc);
    const bool hopper = cc == arch::Capability{9, 0};
    ASSERT_NE(d.kernel, nullptr) << arch::to_string(cc);
    EXPECT_EQ(std::string(d.kernel->name) == "hopper_like", hopper) << arch::to_string(cc);
    EXPECT_TRUE(has_target_running_on(*d.kernel, cc)) << arch::to_string(cc);
    if (!hopper) {
      const auto& v = verdict_of(d, "hopper_like");
      EXPECT_FALSE(v.accepted);
      EXPECT_NE(v.reason.find("runs on"), std::string::npos) << v.reason;
    }
  }
}

TEST_F(Dispatch, VerdictForEveryKernelBestRankFirst) {
  const Decision d = pick(Call{}, {10, 3});
  ASSERT_EQ(d.verdicts.size(), std::size(kSynthetic));
  for (size_t i = 1; i < d.verdicts.size(); ++i)
    EXPECT_GE(d.verdicts[i - 1].kernel->rank, d.verdicts[i].kernel->rank);
  int accepted = 0;
  for (const auto& v : d.verdicts) {
    EXPECT_FALSE(v.reason.empty()) << v.kernel->name;
    accepted += v.accepted;
  }
  EXPECT_EQ(accepted, 1);
  EXPECT_NE(verdict_of(d, "mma_like").reason.find("ranks higher"), std::string::npos);
}

TEST_F(Dispatch, FeaturesDtypesAndHeadDimsFilter) {
  Call softcap;
  softcap.softcap = 30.f;
  Decision d = pick(softcap, {10, 3});
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "mma_like");
  EXPECT_NE(verdict_of(d, "blackwell_d128").reason.find("softcap"), std::string::npos);

  Call fp32;
  fp32.dtype = DType::fp32;
  d = pick(fp32, {9, 0});
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "simt_like");
  EXPECT_NE(verdict_of(d, "hopper_like").reason.find("dtype fp32"), std::string::npos);

  Call d72;
  d72.d = d72.dv = 72;
  d = pick(d72, {9, 0});
  EXPECT_NE(verdict_of(d, "hopper_like").reason.find("head dim 72"), std::string::npos);

  Call dv_differs;
  dv_differs.dv = 64;
  d = pick(dv_differs, {9, 0});
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "mma_like");  // hopper_like requires d_v == d
}

TEST_F(Dispatch, FeaturesOfACall) {
  Call c;
  EXPECT_EQ(features_of(params_of(c)), kVarlen);
  c.causal = true;
  EXPECT_EQ(features_of(params_of(c)), kVarlen | kCausal);
  c.window_left = 128;
  EXPECT_EQ(features_of(params_of(c)), kVarlen | kCausal | kWindow);
  c = Call{};
  c.varlen = false;
  c.window_right = 3;
  c.heads_k = 4;
  c.lse = true;
  c.softcap = 5.f;
  EXPECT_EQ(features_of(params_of(c)), kDense | kWindow | kGqa | kLse | kSoftcap);
}

TEST_F(Dispatch, ForcedKernelHonouredOrClearlyRefused) {
  set_forced_kernel("simt_like");
  Decision d = pick(Call{}, {9, 0});
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "simt_like");
  EXPECT_NE(verdict_of(d, "hopper_like").reason.find("forced"), std::string::npos);

  set_forced_kernel("hopper_like");
  d = pick(Call{}, {10, 3});
  EXPECT_EQ(d.kernel, nullptr);
  EXPECT_NE(verdict_of(d, "hopper_like").reason.find("sm_90a"), std::string::npos);

  set_forced_kernel("no_such_kernel");
  d = pick(Call{}, {9, 0});
  EXPECT_EQ(d.kernel, nullptr);
  EXPECT_NE(describe_rejections(d).find("not the forced kernel 'no_such_kernel'"), std::string::npos);
}

// Selection decides under the forcing it is given, not under one it reads
// again: the API keys its cache on one read and must get the decision of that read.
TEST_F(Dispatch, SelectionUsesTheForcingItIsGiven) {
  set_forced_kernel("simt_like");
  const FwdParams p = params_of(Call{});
  Decision d = select_kernel_from(kSynthetic, p, pretend({9, 0}), std::nullopt);
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "hopper_like");
  d = select_kernel_from(kSynthetic, p, pretend({9, 0}), std::string("mma_like"));
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "mma_like");
  // Without an explicit forcing: the one of the moment.
  d = select_kernel_from(kSynthetic, p, pretend({9, 0}));
  ASSERT_NE(d.kernel, nullptr);
  EXPECT_STREQ(d.kernel->name, "simt_like");
}

TEST_F(Dispatch, UnknownKernelNamesTheKernelsThereAre) {
  EXPECT_EQ(unknown_kernel("mma_like", kSynthetic), "");
  EXPECT_EQ(unknown_kernel("mma", kSynthetic),
            "no kernel named 'mma' in this build (kernels: simt_like, hopper_like, mma_like, blackwell_d128)");
  EXPECT_EQ(unknown_kernel("x", std::span<const KernelInfo>{}), "no kernel named 'x' in this build (kernels: none)");
}

TEST_F(Dispatch, NothingFitsGivesNullWithReasons) {
  Call huge;
  huge.d = huge.dv = 512;
  Decision d = pick(huge, {9, 0});
  EXPECT_EQ(d.kernel, nullptr);
  EXPECT_TRUE(d.loadable_target.empty());
  ASSERT_EQ(d.verdicts.size(), std::size(kSynthetic));
  for (const auto& v : d.verdicts) {
    EXPECT_FALSE(v.accepted);
    EXPECT_NE(v.reason.find("head dim 512"), std::string::npos) << v.reason;
  }

  Call plain;
  d = pick(plain, {7, 0});  // older than anything built: only PTX could, and none is old enough
  EXPECT_EQ(d.kernel, nullptr);

  DeviceInfo none;
  none.absent_reason = "no CUDA-capable device is detected";
  d = select_kernel_from(kSynthetic, params_of(plain), none);
  EXPECT_EQ(d.kernel, nullptr);
  // The device's absent_reason is not repeated in each verdict: reports say it once.
  for (const auto& v : d.verdicts) EXPECT_EQ(v.reason, kNoDeviceReason);
}

TEST_F(Dispatch, RealDeviceFallsThroughCandidatesWithoutLoadableCode) {
  // A device that is not pretended makes dispatch confirm each candidate with
  // a load probe; the synthetic kernels have no probe symbol, so each valid
  // one is tried in rank order, found unloadable, and passed over.
  DeviceInfo real = pretend({9, 0});
  real.pretended = false;
  const Decision d = select_kernel_from(kSynthetic, params_of(Call{}), real);
  EXPECT_EQ(d.kernel, nullptr);
  for (const char* tried : {"hopper_like", "mma_like", "simt_like"}) {
    const auto& v = verdict_of(d, tried);
    EXPECT_FALSE(v.accepted);
    EXPECT_NE(v.reason.find("no loadable code"), std::string::npos) << tried << ": " << v.reason;
  }
  EXPECT_NE(verdict_of(d, "blackwell_d128").reason.find("none of its targets"), std::string::npos);
}

TEST_F(Dispatch, OnTheRealGpuTheChoiceLoads) {
  const DeviceInfo dev = query_device(0);
  if (!dev.present) GTEST_SKIP() << "no CUDA device: " << dev.absent_reason;
  const Decision d = select_kernel(params_of(Call{}), dev);
  if (!d.kernel) {
    // Legitimate only when no kernel of this build has code for the device.
    for (const KernelInfo& k : cuda_kernels()) EXPECT_FALSE(has_target_running_on(k, dev.cc)) << k.name;
    return;
  }
  EXPECT_TRUE(probe_kernel(*d.kernel, dev.ordinal).loadable);
  EXPECT_TRUE(arch::runs_on(*arch::parse_target(d.loadable_target), dev.cc)) << d.loadable_target;
  EXPECT_NE(verdict_of(d, d.kernel->name).reason.find("loads"), std::string::npos);
}

TEST_F(Dispatch, PretendedCapabilityMakesAPretendedDevice) {
  set_pretended_capability(arch::Capability{12, 1});
  const DeviceInfo dev = query_device(0);
  EXPECT_TRUE(dev.present);
  EXPECT_TRUE(dev.pretended);
  EXPECT_EQ(dev.cc, (arch::Capability{12, 1}));
  set_pretended_capability(std::nullopt);
  EXPECT_FALSE(query_device(0).pretended);
}

TEST_F(Dispatch, QueryDeviceNeverThrowsAndExplainsAbsence) {
  const DeviceInfo dev = query_device(0);
  EXPECT_FALSE(dev.pretended);
  if (dev.present) {
    EXPECT_FALSE(dev.name.empty());
  } else {
    EXPECT_FALSE(dev.absent_reason.empty());
  }
  EXPECT_FALSE(query_device(1 << 20).present);
}

// --- The real registry of this build, whatever kernel families it holds.
TEST_F(Dispatch, RealRegistryChoicesRunOnEachCapability) {
  const auto kernels = cuda_kernels();
  for (const KernelInfo& k : kernels) {
    ASSERT_NE(k.targets, nullptr) << k.name;
    // Every target the build emitted is one the model understands.
    const std::string list = k.targets;
    EXPECT_EQ(arch::parse_target_list(list).size(), size_t(std::count(list.begin(), list.end(), ';') + 1))
        << k.name << ": " << list;
  }
  Call vit72;
  vit72.d = vit72.dv = 72;
  Call gqa_causal;
  gqa_causal.heads_k = 4;
  gqa_causal.causal = true;
  Call dense_fp16;
  dense_fp16.varlen = false;
  dense_fp16.dtype = DType::fp16;
  dense_fp16.d = dense_fp16.dv = 64;
  for (const auto cc : {arch::Capability{10, 3}, {12, 1}, {8, 6}, {11, 0}, {9, 0}, {7, 5}}) {
    set_pretended_capability(cc);
    const DeviceInfo dev = query_device(0);
    for (const Call& call : {vit72, gqa_causal, dense_fp16}) {
      const Decision d = select_kernel(params_of(call), dev);
      ASSERT_EQ(d.verdicts.size(), kernels.size());
      for (const auto& v : d.verdicts) EXPECT_FALSE(v.reason.empty());
      if (d.kernel) {
        EXPECT_TRUE(has_target_running_on(*d.kernel, cc)) << d.kernel->name << " on " << arch::to_string(cc);
        EXPECT_TRUE(arch::runs_on(*arch::parse_target(d.loadable_target), cc)) << d.loadable_target;
      } else {
        // Nothing chosen: then no kernel that has code for cc was passed over
        // for its targets.
        for (const auto& v : d.verdicts) {
          if (has_target_running_on(*v.kernel, cc)) {
            EXPECT_EQ(v.reason.find("none of its targets"), std::string::npos) << v.reason;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace vflash
