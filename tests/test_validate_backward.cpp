// Validation of the backward's arguments (src/validate.cpp, rules 15-17): a
// valid baseline, then for each rule an input that breaks it, asserting the
// status, the argument the error names and that the message states the rule.
// The forward's rules apply to the backward's q, k, v, out, lse and options
// under the same names; a sample of them is checked here through the backward.
#include <gtest/gtest.h>

#include <cstdint>

#include "validate.hpp"
#include "validate_test_util.hpp"

namespace vflash {
namespace {

using testutil::AlignedBuffer;
using testutil::row_major_tensor;

// The varlen baseline (VarlenValidationTest) with dout and the gradients;
// build(device) describes it on `device`.
struct VarlenBackward : testutil::VarlenValidationTest<VarlenBwdArgs, validate_varlen_bwd> {
  AlignedBuffer dout{kTotalQ * kHq * kDv * 2}, dq{kTotalQ * kHq * kD * 2}, dk{kTotalK * kHk * kD * 2},
      dv{kTotalK * kHk * kDv * 2};

  void SetUp() override { build(VFLASH_DEVICE_CPU); }

  void build(int device) {
    describe_forward(device);
    a.dout = row_major_tensor(dout.data(), dtype, device, {kTotalQ, kHq, kDv});
    a.dq = row_major_tensor(dq.data(), dtype, device, {kTotalQ, kHq, kD});
    a.dk = row_major_tensor(dk.data(), dtype, device, {kTotalK, kHk, kD});
    a.dv = row_major_tensor(dv.data(), dtype, device, {kTotalK, kHk, kDv});
  }
};

TEST_F(VarlenBackward, BaselineIsAcceptedAndResolved) {
  a.deterministic = 1;
  a.causal = 1;
  a.window_left = 1;
  const BwdParams p = validate_varlen_bwd(a);
  EXPECT_EQ(p.fwd.dtype, DType::bf16);
  EXPECT_EQ(p.fwd.heads_q, kHq);
  EXPECT_EQ(p.fwd.heads_k, kHk);
  EXPECT_EQ(p.fwd.head_dim, kD);
  EXPECT_EQ(p.fwd.head_dim_v, kDv);
  EXPECT_EQ(p.fwd.window_right, 0);  // causal
  EXPECT_EQ(p.fwd.lse, lse.data());
  EXPECT_EQ(p.dout, dout.data());
  EXPECT_EQ(p.dq, dq.data());
  EXPECT_EQ(p.dk, dk.data());
  EXPECT_EQ(p.dv, dv.data());
  EXPECT_EQ(p.dout_row_stride, kHq * kDv);
  EXPECT_EQ(p.dq_row_stride, kHq * kD);
  EXPECT_EQ(p.dk_head_stride, kD);
  EXPECT_EQ(p.dv_row_stride, kHk * kDv);
  EXPECT_TRUE(p.deterministic);
  a.deterministic = 0;
  EXPECT_FALSE(validate_varlen_bwd(a).deterministic);
}

TEST_F(VarlenBackward, StructSize) {
  reject([](auto& m) { m.struct_size = sizeof(vflash_varlen_bwd_args) - 1; }, "struct_size",
         "must be >= sizeof(vflash_varlen_bwd_args)");
}

TEST_F(VarlenBackward, LseIsRequired) {
  reject([](auto& m) { m.lse.data = nullptr; }, "lse.data", "must not be null: the backward reads the forward's lse");
}

TEST_F(VarlenBackward, EmptyCallNeedsNoLse) {
  // No query token: nothing reads lse, and frameworks hand out null for empty tensors.
  a.q = row_major_tensor(nullptr, dtype, -1, {0, kHq, kD});
  a.out = row_major_tensor(nullptr, dtype, -1, {0, kHq, kDv});
  a.dout = row_major_tensor(nullptr, dtype, -1, {0, kHq, kDv});
  a.dq = row_major_tensor(nullptr, dtype, -1, {0, kHq, kD});
  a.lse = row_major_tensor(nullptr, VFLASH_DTYPE_FP32, -1, {kHq, 0});
  cu_q = {0, 0, 0};
  a.max_seqlen_q = 0;
  EXPECT_NO_THROW(validate_varlen_bwd(a));
}

TEST_F(VarlenBackward, ForwardRulesApplyUnderTheirNames) {
  reject([](auto& m) { m.out.shape[2] = 16; }, "out.shape[2]", "must equal v.shape[2]");
  reject([](auto& m) { m.lse.dtype = VFLASH_DTYPE_FP16; }, "lse.dtype", "must be fp32");
  reject([](auto& m) { m.k.shape[1] = m.v.shape[1] = 3; }, "k.shape[1]", "must be a multiple of heads_k");
  reject([](auto& m) { m.max_seqlen_q = 2; }, "max_seqlen_q", "must be >= every sequence length");
  cu_k[1] = 9;
  reject([](auto&) {}, "cu_seqlens_k", "must be non-decreasing");
  cu_k[1] = 4;
  reject([](auto& m) { m.softcap = -1.f; }, "softcap", "must be finite and >= 0");
  reject([](auto& m) { m.window_left = -2; }, "window_left", "must be >= -1");
  reject([](auto& m) { m.workspace_bytes = 16; }, "workspace", "must not be null when workspace_bytes > 0");
}

TEST_F(VarlenBackward, Dout) {
  reject([](auto& m) { m.dout.ndim = 2; }, "dout.ndim", "must be 3 (total_q, heads_q, d_v)");
  reject([](auto& m) { m.dout.data = nullptr; }, "dout.data", "must not be null");
  reject([](auto& m) { m.dout.dtype = VFLASH_DTYPE_FP16; }, "dout.dtype", "must equal q.dtype (bf16)");
  reject([](auto& m) { m.dout.device = 0; }, "dout.device", "must equal q.device (-1)");
  reject([](auto& m) { m.dout.shape[0] = 4; }, "dout.shape[0]", "must equal out.shape[0] (5)");
  reject([](auto& m) { m.dout.shape[1] = 2; }, "dout.shape[1]", "must equal out.shape[1] (4)");
  reject([](auto& m) { m.dout.shape[2] = 16; }, "dout.shape[2]", "must equal out.shape[2] (8)");
  reject([](auto& m) { m.dout.stride[2] = 2; }, "dout.stride[2]", "the last dimension must be contiguous");
  reject([](auto& m) { m.dout.stride[1] = 4; }, "dout.stride[1]", "must be a multiple of 8 elements");
  reject([](auto& m) { m.dout.stride[0] = 16; }, "dout.stride[0]", "dimensions overlap");
  reject([](auto& m) { m.dout.data = static_cast<char*>(m.dout.data) + 2; }, "dout.data", "must be aligned to 16 bytes");
}

TEST_F(VarlenBackward, Gradients) {
  reject([](auto& m) { m.dq.shape[2] = 8; }, "dq.shape[2]", "must equal q.shape[2] (16)");
  reject([](auto& m) { m.dq.shape[0] = 6; }, "dq.shape[0]", "must equal q.shape[0] (5)");
  reject([](auto& m) { m.dk.shape[1] = 4; }, "dk.shape[1]", "must equal k.shape[1] (2)");
  reject([](auto& m) { m.dk.dtype = VFLASH_DTYPE_FP32; }, "dk.dtype", "must equal q.dtype (bf16)");
  reject([](auto& m) { m.dv.shape[2] = 16; }, "dv.shape[2]", "must equal v.shape[2] (8)");
  reject([](auto& m) { m.dv.ndim = 4; }, "dv.ndim", "must be 3 (total_k, heads_k, d_v)");
  reject([](auto& m) { m.dv.data = nullptr; }, "dv.data", "must not be null");
  reject([](auto& m) { m.dq.device = 1; }, "dq.device", "must equal q.device (-1)");
  reject([](auto& m) { m.dk.stride[0] = -32; }, "dk.stride[0]", "must be positive");
  reject([](auto& m) { m.dv.data = static_cast<char*>(m.dv.data) + 8; }, "dv.data", "must be aligned to 16 bytes");
}

TEST_F(VarlenBackward, DeviceTensorsAreNotDereferenced) {
  // Fake device addresses: validation checks descriptors only.
  build(0);
  for (vflash_tensor* t : {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.dq, &a.dk, &a.dv})
    t->data = reinterpret_cast<void*>(uintptr_t(1) << 40);
  a.lse.data = reinterpret_cast<void*>(uintptr_t(1) << 41);
  a.cu_seqlens_q.data = a.cu_seqlens_k.data = reinterpret_cast<void*>(uintptr_t(1) << 42);
  const BwdParams p = validate_varlen_bwd(a);
  EXPECT_EQ(p.fwd.device, 0);
  reject([](auto& m) { m.dq.dtype = VFLASH_DTYPE_FP32; }, "dq.dtype", "must equal q.dtype (bf16)");
}

}  // namespace
}  // namespace vflash
