// Validation of the backward's arguments (src/validate.cpp, rules 15-17): a
// valid baseline, then for each rule an input that breaks it, asserting the
// status, the argument the error names and that the message states the rule.
// The forward's rules apply to the backward's q, k, v, out, lse and options
// under the same names; a sample of them is checked here through the backward.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "validate.hpp"

namespace vflash {
namespace {

struct Buffer {
  struct alignas(16) Block { unsigned char bytes[16]; };
  std::vector<Block> blocks;
  explicit Buffer(size_t bytes) : blocks((bytes + 15) / 16 + 1) {}
  void* data() { return blocks.data(); }
};

vflash_tensor make(void* data, vflash_dtype dtype, int device, std::initializer_list<int64_t> shape) {
  vflash_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.ndim = int32_t(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  int64_t stride = 1;
  for (int j = t.ndim - 1; j >= 0; --j) {
    t.stride[j] = stride;
    stride *= t.shape[j];
  }
  return t;
}

// Baseline: 2 sequences (q lengths 3, 2; k lengths 4, 3), heads 4 / 2 (GQA),
// d 16, d_v 8, bf16, host tensors.
struct VarlenBackward : ::testing::Test {
  static constexpr int64_t kTotalQ = 5, kTotalK = 7, kHq = 4, kHk = 2, kD = 16, kDv = 8;
  vflash_dtype dtype = VFLASH_DTYPE_BF16;
  Buffer q{kTotalQ * kHq * kD * 2}, k{kTotalK * kHk * kD * 2}, v{kTotalK * kHk * kDv * 2},
      o{kTotalQ * kHq * kDv * 2}, lse{kHq * kTotalQ * 4}, dout{kTotalQ * kHq * kDv * 2}, dq{kTotalQ * kHq * kD * 2},
      dk{kTotalK * kHk * kD * 2}, dv{kTotalK * kHk * kDv * 2};
  std::vector<int32_t> cu_q{0, 3, 5}, cu_k{0, 4, 7};
  VarlenBwdArgs a;

  void SetUp() override { build(VFLASH_DEVICE_CPU); }

  void build(int device) {
    a.q = make(q.data(), dtype, device, {kTotalQ, kHq, kD});
    a.k = make(k.data(), dtype, device, {kTotalK, kHk, kD});
    a.v = make(v.data(), dtype, device, {kTotalK, kHk, kDv});
    a.out = make(o.data(), dtype, device, {kTotalQ, kHq, kDv});
    a.lse = make(lse.data(), VFLASH_DTYPE_FP32, device, {kHq, kTotalQ});
    a.dout = make(dout.data(), dtype, device, {kTotalQ, kHq, kDv});
    a.dq = make(dq.data(), dtype, device, {kTotalQ, kHq, kD});
    a.dk = make(dk.data(), dtype, device, {kTotalK, kHk, kD});
    a.dv = make(dv.data(), dtype, device, {kTotalK, kHk, kDv});
    a.cu_seqlens_q = make(cu_q.data(), VFLASH_DTYPE_INT32, device, {3});
    a.cu_seqlens_k = make(cu_k.data(), VFLASH_DTYPE_INT32, device, {3});
    a.max_seqlen_q = 3;
    a.max_seqlen_k = 4;
  }

  void reject(const std::function<void(VarlenBwdArgs&)>& mutate, Status status, const std::string& argument,
              const std::string& rule) {
    VarlenBwdArgs m = a;
    mutate(m);
    SCOPED_TRACE(argument);
    try {
      validate_varlen_bwd(m);
      ADD_FAILURE() << "accepted; expected an error on " << argument << " (" << rule << ")";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.status(), status) << msg;
      EXPECT_EQ(e.argument(), argument) << msg;
      EXPECT_EQ(msg.rfind(argument + ": ", 0), 0u) << "message does not start with the argument: " << msg;
      EXPECT_NE(msg.find(rule), std::string::npos) << "message lacks the rule \"" << rule << "\": " << msg;
    }
  }
  void reject(const std::function<void(VarlenBwdArgs&)>& mutate, const std::string& argument, const std::string& rule) {
    reject(mutate, Status::invalid_argument, argument, rule);
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
  a.q = make(nullptr, dtype, -1, {0, kHq, kD});
  a.out = make(nullptr, dtype, -1, {0, kHq, kDv});
  a.dout = make(nullptr, dtype, -1, {0, kHq, kDv});
  a.dq = make(nullptr, dtype, -1, {0, kHq, kD});
  a.lse = make(nullptr, VFLASH_DTYPE_FP32, -1, {kHq, 0});
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
