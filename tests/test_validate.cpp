// Validation rules (src/validate.cpp): a valid baseline, then for each rule an
// input that breaks it, asserting the status, the argument named by the error
// and that the message names the argument and the rule. Host tensors use small
// real buffers; device-0 descriptors use fake addresses that validation must
// never dereference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "validate.hpp"
#include "validate_test_util.hpp"

namespace vflash {
namespace {

using testutil::AlignedBuffer;
using testutil::expect_rejected;
using testutil::row_major_tensor;

// Stores a raw dtype code, as a C caller may (out-of-range enum values cannot be
// formed in C++ without UB).
void set_dtype_code(vflash_tensor& t, int32_t code) { std::memcpy(&t.dtype, &code, sizeof code); }

// The varlen baseline (VarlenValidationTest); build(device) describes it on `device`.
struct Varlen : testutil::VarlenValidationTest<VarlenArgs, validate_varlen> {
  void SetUp() override { build(VFLASH_DEVICE_CPU); }
  void build(int device) { describe_forward(device); }

  FwdParams accept(const std::function<void(VarlenArgs&)>& mutate) {
    VarlenArgs m = a;
    mutate(m);
    return validate_varlen(m);
  }
};

// Dense baseline: batch 2, seqlen_q 3, seqlen_k 5, heads 4 / 1 (MQA), d 32, fp16.
struct Dense : testutil::ValidationTest<DenseArgs, validate_dense> {
  static constexpr int64_t kB = 2, kSq = 3, kSk = 5, kHq = 4, kHk = 1, kD = 32;
  AlignedBuffer q{kB * kSq * kHq * kD * 2}, k{kB * kSk * kHk * kD * 2}, v{kB * kSk * kHk * kD * 2},
      o{kB * kSq * kHq * kD * 2}, lse{kB * kHq * kSq * 4};

  void SetUp() override {
    a.q = row_major_tensor(q.data(), VFLASH_DTYPE_FP16, -1, {kB, kSq, kHq, kD});
    a.k = row_major_tensor(k.data(), VFLASH_DTYPE_FP16, -1, {kB, kSk, kHk, kD});
    a.v = row_major_tensor(v.data(), VFLASH_DTYPE_FP16, -1, {kB, kSk, kHk, kD});
    a.out = row_major_tensor(o.data(), VFLASH_DTYPE_FP16, -1, {kB, kSq, kHq, kD});
    a.lse = row_major_tensor(lse.data(), VFLASH_DTYPE_FP32, -1, {kB, kHq, kSq});
  }
};

constexpr Status kUnsupported = Status::unsupported;

TEST_F(Varlen, BaselineIsAcceptedAndResolved) {
  const FwdParams p = validate_varlen(a);
  EXPECT_EQ(p.dtype, DType::bf16);
  EXPECT_EQ(p.q, q.data());
  EXPECT_EQ(p.o, o.data());
  EXPECT_EQ(p.lse, lse.data());
  EXPECT_EQ(p.cu_seqlens_q, cu_q.data());
  EXPECT_EQ(p.cu_seqlens_k, cu_k.data());
  EXPECT_TRUE(p.is_varlen());
  EXPECT_EQ(p.batch, 2);
  EXPECT_EQ(p.heads_q, kHq);
  EXPECT_EQ(p.heads_k, kHk);
  EXPECT_EQ(p.head_dim, kD);
  EXPECT_EQ(p.head_dim_v, kDv);
  EXPECT_EQ(p.total_q, kTotalQ);
  EXPECT_EQ(p.total_k, kTotalK);
  EXPECT_EQ(p.max_seqlen_q, 3);
  EXPECT_EQ(p.max_seqlen_k, 4);
  EXPECT_EQ(p.q_row_stride, kHq * kD);
  EXPECT_EQ(p.q_head_stride, kD);
  EXPECT_EQ(p.k_row_stride, kHk * kD);
  EXPECT_EQ(p.v_row_stride, kHk * kDv);
  EXPECT_EQ(p.v_head_stride, kDv);
  EXPECT_EQ(p.o_row_stride, kHq * kDv);
  EXPECT_EQ(p.lse_head_stride, kTotalQ);
  EXPECT_EQ(p.q_batch_stride, 0);
  EXPECT_EQ(p.lse_batch_stride, 0);
  EXPECT_FLOAT_EQ(p.softmax_scale, 0.25f);  // 1 / sqrt(16)
  EXPECT_FALSE(p.causal);
  EXPECT_EQ(p.window_left, -1);
  EXPECT_EQ(p.window_right, -1);
  EXPECT_EQ(p.device, -1);
}

TEST_F(Varlen, StructSizeTooSmall) {
  reject([](auto& m) { m.struct_size = sizeof(vflash_varlen_args) - 8; }, "struct_size", "must be >= sizeof");
  reject([](auto& m) { m.struct_size = 0; }, "struct_size", "must be >= sizeof");
}

TEST_F(Varlen, WrongNdim) {
  reject([](auto& m) { m.q.ndim = 4; }, "q.ndim", "must be 3 (total_q, heads_q, d)");
  reject([](auto& m) { m.k.ndim = 2; }, "k.ndim", "must be 3");
  reject([](auto& m) { m.v.ndim = 0; }, "v.ndim", "must be 3");
  reject([](auto& m) { m.out.ndim = 5; }, "out.ndim", "must be 3");
  reject([](auto& m) { m.lse.ndim = 3; }, "lse.ndim", "must be 2 (heads_q, total_q)");
  reject([](auto& m) { m.cu_seqlens_q.ndim = 2; }, "cu_seqlens_q.ndim", "must be 1");
  reject([](auto& m) { m.cu_seqlens_k.ndim = 0; }, "cu_seqlens_k.ndim", "must be 1");
}

TEST_F(Varlen, NegativeShape) {
  reject([](auto& m) { m.q.shape[1] = -4; }, "q.shape[1]", "must be >= 0");
  reject([](auto& m) { m.v.shape[0] = -1; }, "v.shape[0]", "must be >= 0");
}

TEST_F(Varlen, UnknownDtypeCode) {
  reject([](auto& m) { set_dtype_code(m.k, 9); }, "k.dtype", "unknown dtype code 9");
  reject([](auto& m) { set_dtype_code(m.lse, -1); }, "lse.dtype", "unknown dtype code -1");
}

TEST_F(Varlen, NullRequiredPointers) {
  reject([](auto& m) { m.q.data = nullptr; }, "q.data", "must not be null");
  reject([](auto& m) { m.k.data = nullptr; }, "k.data", "must not be null");
  reject([](auto& m) { m.v.data = nullptr; }, "v.data", "must not be null");
  reject([](auto& m) { m.out.data = nullptr; }, "out.data", "must not be null");
  reject([](auto& m) { m.cu_seqlens_q.data = nullptr; }, "cu_seqlens_q.data", "must not be null");
  reject([](auto& m) { m.cu_seqlens_k.data = nullptr; }, "cu_seqlens_k.data", "must not be null");
}

TEST_F(Varlen, NullLseMeansAbsentAndEmptyTensorsMayBeNull) {
  EXPECT_EQ(accept([](auto& m) { m.lse.data = nullptr; }).lse, nullptr);
  // Every query sequence empty: q and out have no element; frameworks give null.
  cu_q = {0, 0, 0};
  const FwdParams p = accept([](auto& m) {
    m.q.data = m.out.data = m.lse.data = nullptr;
    m.q.shape[0] = m.out.shape[0] = 0;
    m.max_seqlen_q = 0;
  });
  EXPECT_EQ(p.total_q, 0);
  EXPECT_EQ(p.batch, 2);
}

TEST_F(Varlen, DeviceMismatch) {
  reject([](auto& m) { m.q.device = -2; }, "q.device", "must be -1 (host) or a CUDA ordinal");
  reject([](auto& m) { m.k.device = 0; }, "k.device", "must equal q.device (-1)");
  reject([](auto& m) { m.out.device = 1; }, "out.device", "must equal q.device");
  reject([](auto& m) { m.lse.device = 0; }, "lse.device", "must equal q.device");
  reject([](auto& m) { m.cu_seqlens_k.device = 0; }, "cu_seqlens_k.device", "must equal q.device");
}

TEST_F(Varlen, DtypeMismatch) {
  reject([](auto& m) { m.k.dtype = VFLASH_DTYPE_FP16; }, "k.dtype", "must equal q.dtype (bf16), got fp16");
  reject([](auto& m) { m.v.dtype = VFLASH_DTYPE_FP32; }, "v.dtype", "must equal q.dtype");
  reject([](auto& m) { m.out.dtype = VFLASH_DTYPE_FP16; }, "out.dtype", "must equal q.dtype");
  reject([](auto& m) { m.q.dtype = m.k.dtype = m.v.dtype = m.out.dtype = VFLASH_DTYPE_INT32; }, "q.dtype",
         "must be fp16, bf16 or fp32");
  reject([](auto& m) { m.lse.dtype = VFLASH_DTYPE_BF16; }, "lse.dtype", "must be fp32");
  reject([](auto& m) { m.cu_seqlens_q.dtype = VFLASH_DTYPE_FP32; }, "cu_seqlens_q.dtype", "must be int32");
}

TEST_F(Varlen, Fp32IsServedOnTheHostOnly) {
  dtype = VFLASH_DTYPE_FP32;
  build(VFLASH_DEVICE_CPU);
  EXPECT_EQ(validate_varlen(a).dtype, DType::fp32);
  build(0);  // descriptors only: validation must not touch device memory
  a.cu_seqlens_q.data = a.cu_seqlens_k.data = reinterpret_cast<void*>(uintptr_t(0x1000));
  reject([](auto&) {}, kUnsupported, "q.dtype", "fp32 is served only on the host");
}

TEST_F(Varlen, CudaDescriptorsAreNotDereferenced) {
  // Device pointers that would fault if read; cu_seqlens content is unknown here.
  build(0);
  a.q.data = reinterpret_cast<void*>(uintptr_t(0x10000));
  a.cu_seqlens_q.data = reinterpret_cast<void*>(uintptr_t(0x20000));
  a.cu_seqlens_k.data = reinterpret_cast<void*>(uintptr_t(0x30000));
  FwdParams p = validate_varlen(a);
  EXPECT_EQ(p.device, 0);
  EXPECT_EQ(p.dtype, DType::bf16);
  dtype = VFLASH_DTYPE_FP16;
  a.q.dtype = a.k.dtype = a.v.dtype = a.out.dtype = dtype;
  EXPECT_EQ(validate_varlen(a).dtype, DType::fp16);
}

TEST_F(Varlen, HeadsMustBePositive) {
  reject([](auto& m) { m.q.shape[1] = 0; }, "q.shape[1]", "heads_q must be > 0");
  reject([](auto& m) { m.k.shape[1] = m.v.shape[1] = 0; }, "k.shape[1]", "heads_k must be > 0");
}

TEST_F(Varlen, HeadsNotDivisible) {
  reject([](auto& m) { m.k.shape[1] = m.v.shape[1] = 3; }, "k.shape[1]",
         "heads_q (4) must be a multiple of heads_k (3)");
}

TEST_F(Varlen, InconsistentShapes) {
  reject([](auto& m) { m.k.shape[2] = 24; }, "k.shape[2]", "must equal q.shape[2] (d = 16), got 24");
  reject([](auto& m) { m.v.shape[0] = 6; }, "v.shape[0]", "must equal k.shape[0] (tokens of k = 7)");
  reject([](auto& m) { m.v.shape[1] = 1; }, "v.shape[1]", "must equal k.shape[1] (heads_k = 2)");
  reject([](auto& m) { m.out.shape[0] = 4; }, "out.shape[0]", "must equal q.shape[0]");
  reject([](auto& m) { m.out.shape[1] = 2; }, "out.shape[1]", "must equal q.shape[1] (heads_q = 4)");
  reject([](auto& m) { m.out.shape[2] = 16; }, "out.shape[2]", "must equal v.shape[2] (d_v = 8)");
  reject([](auto& m) { m.lse.shape[0] = 2; }, "lse.shape[0]", "must equal q.shape[1] (heads_q = 4)");
  reject([](auto& m) { m.lse.shape[1] = 6; }, "lse.shape[1]", "must equal q.shape[0] (tokens of q = 5)");
}

TEST_F(Varlen, HeadDimRules) {
  const auto set_d = [](VarlenArgs& m, int64_t d) { m.q.shape[2] = m.k.shape[2] = d; };
  const auto set_dv = [](VarlenArgs& m, int64_t d) { m.v.shape[2] = m.out.shape[2] = d; };
  reject([&](auto& m) { set_d(m, 12); }, kUnsupported, "q.shape[2]", "head dim d must be a multiple of 8 in [8, 256]");
  reject([&](auto& m) { set_d(m, 264); }, kUnsupported, "q.shape[2]", "multiple of 8 in [8, 256], got 264");
  reject([&](auto& m) { set_d(m, 0); }, "q.shape[2]", "head dim d must be > 0");
  reject([&](auto& m) { set_dv(m, 4); }, kUnsupported, "v.shape[2]", "head dim d_v must be a multiple of 8");
  reject([&](auto& m) { set_dv(m, 512); }, kUnsupported, "v.shape[2]", "in [8, 256]");
  // The extremes are served.
  for (int64_t d : {8, 256}) {
    AlignedBuffer big(kTotalK * kHq * 256 * 2);
    const auto p = accept([&](auto& m) {
      for (vflash_tensor* t : {&m.q, &m.k, &m.v, &m.out}) {
        *t = row_major_tensor(big.data(), dtype, -1, {t->shape[0], t->shape[1], d});
      }
    });
    EXPECT_EQ(p.head_dim, d);
    EXPECT_EQ(p.head_dim_v, d);
  }
}

TEST_F(Varlen, Int32IndexLimits) {
  const int64_t big = int64_t(1) << 31;
  reject([&](auto& m) { m.q.shape[0] = m.out.shape[0] = m.lse.shape[1] = big; }, kUnsupported, "q.shape[0]",
         "total_q must be <= 2^31 - 1");
  reject([&](auto& m) { m.k.shape[0] = m.v.shape[0] = big; }, kUnsupported, "k.shape[0]",
         "total_k must be <= 2^31 - 1");
  reject([&](auto& m) { m.q.shape[1] = m.out.shape[1] = m.lse.shape[0] = 65536 * 2; }, kUnsupported, "q.shape[1]",
         "heads_q must be <= 65535");
  // batch * heads_q past int32 (device tensors: the cu_seqlens content is not read).
  build(0);
  reject([&](auto& m) { m.cu_seqlens_q.shape[0] = m.cu_seqlens_k.shape[0] = big; }, kUnsupported,
         "cu_seqlens_q.shape[0]", "batch * heads_q must be <= 2^31 - 1");
  reject([&](auto& m) { m.cu_seqlens_q.shape[0] = m.cu_seqlens_k.shape[0] = big + 1; }, kUnsupported,
         "cu_seqlens_q.shape[0]", "batch must be <= 2^31 - 1");
  // Tiles (a block of one sequence's rows, times a head) past int32 while
  // tokens, heads and batch * heads_q each fit: 2^24 tokens in 2^16 sequences, 128 heads.
  reject(
      [&](auto& m) {
        const int64_t tq = int64_t(1) << 24, hq = 128, seqs = int64_t(1) << 16;
        m.q = row_major_tensor(q.data(), dtype, 0, {tq, hq, kD});
        m.out = row_major_tensor(o.data(), dtype, 0, {tq, hq, kDv});
        m.lse = row_major_tensor(lse.data(), VFLASH_DTYPE_FP32, 0, {hq, tq});
        m.cu_seqlens_q = row_major_tensor(cu_q.data(), VFLASH_DTYPE_INT32, 0, {seqs + 1});
        m.cu_seqlens_k = row_major_tensor(cu_k.data(), VFLASH_DTYPE_INT32, 0, {seqs + 1});
      },
      kUnsupported, "cu_seqlens_q.shape[0]", "(total_q + batch) * heads_q must be <= 2^31 - 1");
}

TEST_F(Varlen, LastDimensionMustBeContiguous) {
  reject([](auto& m) { m.q.stride[2] = 2; }, "q.stride[2]", "must be contiguous (stride 1)");
  reject([](auto& m) { m.v.stride[2] = 0; }, "v.stride[2]", "must be contiguous");
  reject([](auto& m) { m.lse.stride[1] = 2; }, "lse.stride[1]", "must be contiguous");
  reject([](auto& m) { m.cu_seqlens_q.stride[0] = 2; }, "cu_seqlens_q.stride[0]", "must be contiguous");
}

TEST_F(Varlen, StridesMustBePositive) {
  reject([](auto& m) { m.k.stride[0] = 0; }, "k.stride[0]", "must be positive");
  reject([](auto& m) { m.q.stride[1] = -16; }, "q.stride[1]", "must be positive");
  reject([](auto& m) { m.lse.stride[0] = -5; }, "lse.stride[0]", "must be positive");
}

TEST_F(Varlen, StridesMustKeep16ByteAlignment) {
  reject([](auto& m) { m.v.stride[1] = 12; }, "v.stride[1]", "must be a multiple of 8 elements (16 bytes)");
  reject([](auto& m) { m.out.stride[0] = 36; }, "out.stride[0]", "must be a multiple of 8 elements");
}

TEST_F(Varlen, OverlappingLayoutsAreRejected) {
  // Heads of one row would overlap: head stride 8 < d = 16.
  reject([](auto& m) { m.q.stride[1] = 8; }, "q.stride[1]", "dimensions overlap: stride 8 is smaller than the span 16");
  // Rows overlap heads: row stride 16 < 4 heads * 8.
  reject([](auto& m) { m.out.stride[0] = 16; }, "out.stride[0]", "dimensions overlap");
  // Equal strides for two dimensions alias.
  reject([](auto& m) { m.lse.stride[0] = 1; }, "lse.stride[0]", "dimensions overlap");
}

TEST_F(Varlen, NonOverlappingLayoutsInAnyOrderAreAccepted) {
  // Heads-major q (a transposed (heads, total, d) tensor), padded k rows.
  FwdParams p = accept([](auto& m) {
    m.q.stride[1] = kTotalQ * kD;
    m.q.stride[0] = kD;
    m.k.stride[1] = 24;
    m.k.stride[0] = 64;
  });
  EXPECT_EQ(p.q_head_stride, kTotalQ * kD);
  EXPECT_EQ(p.q_row_stride, kD);
  EXPECT_EQ(p.k_head_stride, 24);
  EXPECT_EQ(p.k_row_stride, 64);
}

TEST_F(Varlen, StridesOfExtentOneDimensionsAreIgnored) {
  // MQA k/v with one head whose head stride is meaningless (0): never used to
  // address memory, so accepted and replaced by a positive aligned stride.
  const FwdParams p = accept([](auto& m) {
    m.q.shape[1] = m.out.shape[1] = m.lse.shape[0] = 2;
    m.k.shape[1] = m.v.shape[1] = 1;
    m.k.stride[1] = 0;
    m.v.stride[1] = -3;
  });
  EXPECT_GT(p.k_head_stride, 0);
  EXPECT_EQ(p.k_head_stride % 8, 0);
  EXPECT_GT(p.v_head_stride, 0);
  EXPECT_EQ(p.v_head_stride % 8, 0);
}

TEST_F(Varlen, Int64OffsetOverflow) {
  reject([](auto& m) { m.q.stride[0] = int64_t(1) << 62; }, "q.stride[0]", "element offsets overflow int64");
  reject([](auto& m) { m.k.stride[0] = int64_t(1) << 60; }, "k", "byte extent overflows int64");
  reject([](auto& m) { m.v.data = reinterpret_cast<void*>(std::numeric_limits<uintptr_t>::max() & ~uintptr_t(15)); },
         "v.data", "wraps the address space");
}

TEST_F(Varlen, MisalignedPointers) {
  reject([&](auto& m) { m.q.data = static_cast<char*>(q.data()) + 2; }, "q.data", "must be aligned to 16 bytes");
  reject([&](auto& m) { m.out.data = static_cast<char*>(o.data()) + 8; }, "out.data", "aligned to 16 bytes");
  reject([&](auto& m) { m.lse.data = static_cast<char*>(lse.data()) + 2; }, "lse.data", "aligned to 4 bytes");
  build(0);  // cu_seqlens content is not read on the device
  reject([&](auto& m) { m.cu_seqlens_k.data = reinterpret_cast<void*>(uintptr_t(0x1002)); }, "cu_seqlens_k.data",
         "aligned to 4 bytes");
}

TEST_F(Varlen, CuSeqlensLength) {
  reject([](auto& m) { m.cu_seqlens_q.shape[0] = m.cu_seqlens_k.shape[0] = 1; }, "cu_seqlens_q.shape[0]",
         "batch + 1 >= 2 (batch 0 is an error)");
  reject([](auto& m) { m.cu_seqlens_q.shape[0] = m.cu_seqlens_k.shape[0] = 0; }, "cu_seqlens_q.shape[0]",
         "batch 0 is an error");
  reject([](auto& m) { m.cu_seqlens_k.shape[0] = 2; }, "cu_seqlens_k.shape[0]",
         "must equal cu_seqlens_q.shape[0] (batch + 1 = 3), got 2");
}

TEST_F(Varlen, CuSeqlensContent) {
  const auto with = [&](std::vector<int32_t> q_values, std::vector<int32_t> k_values) {
    cu_q = std::move(q_values);
    cu_k = std::move(k_values);
    build(VFLASH_DEVICE_CPU);
  };
  with({1, 3, 5}, {0, 4, 7});
  reject([](auto&) {}, "cu_seqlens_q", "must start at 0, got 1");
  with({0, 3, 2}, {0, 4, 7});
  reject([](auto&) {}, "cu_seqlens_q", "must be non-decreasing, but entry 2 (2) < entry 1 (3)");
  with({0, 3, 6}, {0, 4, 7});
  reject([](auto&) {}, "cu_seqlens_q", "last entry 6 exceeds q's token count 5");
  with({0, 3, 5}, {0, 4, 8});
  reject([](auto&) {}, "cu_seqlens_k", "last entry 8 exceeds k's token count 7");
  with({0, 3, 5}, {0, 4, 7});
  reject([](auto& m) { m.max_seqlen_q = 2; }, "max_seqlen_q",
         "must be >= every sequence length (it is an upper bound), but sequence 0 of cu_seqlens_q has length 3 > 2");
  reject([](auto& m) { m.max_seqlen_k = 3; }, "max_seqlen_k", "sequence 0 of cu_seqlens_k has length 4 > 3");
}

// A broken structure is reported as such, not as a length above max_seqlen
// that the broken entries imply.
TEST_F(Varlen, CuSeqlensStructureIsCheckedBeforeLengths) {
  const auto with = [&](std::vector<int32_t> q_values, std::vector<int32_t> k_values) {
    cu_q = std::move(q_values);
    cu_k = std::move(k_values);
    build(VFLASH_DEVICE_CPU);
  };
  // Decreasing: entry 1 implies a sequence of 5 > max_seqlen_q.
  with({0, 5, 3}, {0, 4, 7});
  reject([](auto&) {}, "cu_seqlens_q", "must be non-decreasing, but entry 2 (3) < entry 1 (5)");
  // Past k's tokens: the last sequence's length 5 also exceeds max_seqlen_k.
  with({0, 3, 5}, {0, 4, 9});
  reject([](auto&) {}, "cu_seqlens_k", "last entry 9 exceeds k's token count 7");
  // k's structure before q's lengths.
  with({0, 3, 5}, {0, 4, 3});
  reject([](auto& m) { m.max_seqlen_q = 1; }, "cu_seqlens_k", "must be non-decreasing, but entry 2 (3) < entry 1 (4)");
  // A k with too few tokens for cu_seqlens_k, under a loose max_seqlen_k.
  with({0, 3, 5}, {0, 4, 7});
  reject([](auto& m) { m.k.shape[0] = m.v.shape[0] = 6; m.max_seqlen_k = 1000; }, "cu_seqlens_k",
         "last entry 7 exceeds k's token count 6");
  // Host copies of device arrays follow the same order.
  const std::vector<int32_t> decreasing{0, 5, 3};
  build(0);
  reject([&](auto& m) { m.cu_seqlens_q_host = decreasing.data(); }, "cu_seqlens_q_host", "must be non-decreasing");
}

TEST_F(Varlen, CuSeqlensLastBelowTotalAndZeroLengthSequencesAreValid) {
  cu_q = {0, 0, 4};  // first sequence empty, one trailing token of q unused
  cu_k = {0, 0, 0};  // no keys at all
  build(VFLASH_DEVICE_CPU);
  a.max_seqlen_q = 4;
  const FwdParams p = validate_varlen(a);
  EXPECT_EQ(p.batch, 2);
  EXPECT_EQ(p.total_q, kTotalQ);
}

TEST_F(Varlen, HostCopiesAreChecked) {
  const std::vector<int32_t> bad_q{0, 4, 5}, bad_k{0, 4, 3}, good_q{0, 3, 5}, good_k{0, 4, 7};
  build(0);
  a.cu_seqlens_q_host = good_q.data();
  a.cu_seqlens_k_host = good_k.data();
  EXPECT_EQ(validate_varlen(a).device, 0);
  reject([&](auto& m) { m.cu_seqlens_q_host = bad_q.data(); }, "max_seqlen_q",
         "sequence 0 of cu_seqlens_q_host has length 4 > 3");
  reject([&](auto& m) { m.cu_seqlens_k_host = bad_k.data(); }, "cu_seqlens_k_host", "must be non-decreasing");
  // On the host both the data and a given copy are checked.
  build(VFLASH_DEVICE_CPU);
  reject([&](auto& m) { m.cu_seqlens_k_host = bad_k.data(); }, "cu_seqlens_k_host", "must be non-decreasing");
}

TEST_F(Varlen, MaxSeqlenRange) {
  reject([](auto& m) { m.max_seqlen_q = -1; }, "max_seqlen_q", "must be >= 0 (an upper bound of the sequence lengths), got -1");
  reject([](auto& m) { m.max_seqlen_k = -5; }, "max_seqlen_k", "must be >= 0");
}

// max_seqlen is an upper bound (FlashAttention's meaning): any value from the
// longest sequence up is accepted; FwdParams holds it clamped to the tokens.
TEST_F(Varlen, LooseMaxSeqlenIsAcceptedAndClamped) {
  FwdParams p = accept([](auto& m) {
    m.max_seqlen_q = 4;
    m.max_seqlen_k = 6;
  });
  EXPECT_EQ(p.max_seqlen_q, 4);
  EXPECT_EQ(p.max_seqlen_k, 6);
  p = accept([](auto& m) {
    m.max_seqlen_q = 99;
    m.max_seqlen_k = 8;
  });
  EXPECT_EQ(p.max_seqlen_q, kTotalQ);
  EXPECT_EQ(p.max_seqlen_k, kTotalK);
  p = accept([](auto& m) { m.max_seqlen_q = m.max_seqlen_k = std::numeric_limits<int32_t>::max(); });
  EXPECT_EQ(p.max_seqlen_q, kTotalQ);
  EXPECT_EQ(p.max_seqlen_k, kTotalK);
  // Device tensors (content unread): the bound is clamped all the same.
  build(0);
  a.max_seqlen_q = a.max_seqlen_k = std::numeric_limits<int32_t>::max();
  p = validate_varlen(a);
  EXPECT_EQ(p.max_seqlen_q, kTotalQ);
  EXPECT_EQ(p.max_seqlen_k, kTotalK);
}

TEST_F(Varlen, SoftmaxScale) {
  reject([](auto& m) { m.softmax_scale = NAN; }, "softmax_scale", "must be finite and >= 0");
  reject([](auto& m) { m.softmax_scale = INFINITY; }, "softmax_scale", "must be finite");
  reject([](auto& m) { m.softmax_scale = -0.5f; }, "softmax_scale", ">= 0");
  EXPECT_FLOAT_EQ(accept([](auto& m) { m.softmax_scale = 0.125f; }).softmax_scale, 0.125f);
}

TEST_F(Varlen, Softcap) {
  reject([](auto& m) { m.softcap = -1.f; }, "softcap", "must be finite and >= 0");
  reject([](auto& m) { m.softcap = INFINITY; }, "softcap", "must be finite");
  reject([](auto& m) { m.softcap = NAN; }, "softcap", "must be finite");
  EXPECT_FLOAT_EQ(accept([](auto& m) { m.softcap = 30.f; }).softcap, 30.f);
}

TEST_F(Varlen, WindowBounds) {
  reject([](auto& m) { m.window_left = -2; }, "window_left", "must be >= -1 (-1 = unbounded), got -2");
  reject([](auto& m) { m.window_right = std::numeric_limits<int32_t>::min(); }, "window_right", "must be >= -1");
  const FwdParams p = accept([](auto& m) {
    m.window_left = 2;
    m.window_right = 0;
  });
  EXPECT_EQ(p.window_left, 2);
  EXPECT_EQ(p.window_right, 0);
  EXPECT_TRUE(p.has_window());
}

// A window side at least as long as any sequence masks nothing: FwdParams
// holds exactly what the unwindowed call gives (-1), whatever its size.
TEST_F(Varlen, WindowsLongerThanEverySequenceAreNoWindow) {
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  const FwdParams none = accept([](auto&) {});
  const auto same_as_none = [&](const FwdParams& p) {
    EXPECT_EQ(p.window_left, none.window_left);
    EXPECT_EQ(p.window_right, none.window_right);
    EXPECT_FALSE(p.has_window());
  };
  same_as_none(accept([](auto& m) { m.window_right = kMax; }));
  same_as_none(accept([](auto& m) { m.window_left = kMax; }));
  same_as_none(accept([](auto& m) { m.window_left = m.window_right = kMax; }));
  // The limits are max_seqlen_q for the right side, max_seqlen_k for the left.
  same_as_none(accept([](auto& m) {
    m.window_right = 3;
    m.window_left = 4;
  }));
  FwdParams p = accept([](auto& m) {
    m.window_right = 2;
    m.window_left = 3;
  });
  EXPECT_EQ(p.window_right, 2);
  EXPECT_EQ(p.window_left, 3);
  // Against the clamped bound: max_seqlen_q = INT32_MAX counts as total_q = 5.
  p = accept([](auto& m) {
    m.max_seqlen_q = m.max_seqlen_k = kMax;
    m.window_right = 5;
    m.window_left = 6;
  });
  EXPECT_EQ(p.window_right, -1);
  EXPECT_EQ(p.window_left, 6);
  // Causal keeps its diagonal; only the left side is normalised.
  p = accept([](auto& m) {
    m.causal = 1;
    m.window_left = kMax;
    m.window_right = kMax;
  });
  EXPECT_TRUE(p.causal);
  EXPECT_EQ(p.window_right, 0);
  EXPECT_EQ(p.window_left, -1);
}

TEST_F(Varlen, TokenCountsLeaveRoomForTileRounding) {
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max() - 1024;
  build(0);  // descriptors only: nothing is read
  const auto with_total_q = [&](VarlenArgs& m, int64_t total) {
    m.q.shape[0] = m.out.shape[0] = total;
    m.lse = row_major_tensor(m.lse.data, VFLASH_DTYPE_FP32, 0, {kHq, total});
  };
  // Accepted at the limit with one head, where (total_q + batch) * heads_q fits too.
  VarlenArgs m = a;
  m.q = row_major_tensor(m.q.data, dtype, 0, {kLimit, 1, kD});
  m.out = row_major_tensor(m.out.data, dtype, 0, {kLimit, 1, kDv});
  m.lse = row_major_tensor(m.lse.data, VFLASH_DTYPE_FP32, 0, {1, kLimit});
  m.k = row_major_tensor(m.k.data, dtype, 0, {kLimit, 1, kD});
  m.v = row_major_tensor(m.v.data, dtype, 0, {kLimit, 1, kDv});
  EXPECT_EQ(validate_varlen(m).total_q, kLimit);
  reject([&](auto& x) { with_total_q(x, kLimit + 1); }, kUnsupported, "q.shape[0]",
         "total_q must be <= 2^31 - 1 - 1024 = 2147482623 (kernels index tokens in int32 and round them up to "
         "whole tiles), got 2147482624");
  reject([&](auto& x) { x.k.shape[0] = x.v.shape[0] = kLimit + 1; }, kUnsupported, "k.shape[0]",
         "total_k must be <= 2^31 - 1 - 1024");
}

TEST_F(Varlen, CausalSetsWindowRightAndKeepsWindowLeft) {
  FwdParams p = accept([](auto& m) { m.causal = 1; });
  EXPECT_TRUE(p.causal);
  EXPECT_EQ(p.window_left, -1);
  EXPECT_EQ(p.window_right, 0);
  p = accept([](auto& m) {
    m.causal = 1;
    m.window_left = 3;
    m.window_right = 7;
  });
  EXPECT_EQ(p.window_left, 3);
  EXPECT_EQ(p.window_right, 0);
}

TEST_F(Varlen, WorkspaceNullWithBytes) {
  reject([](auto& m) { m.workspace_bytes = 64; }, "workspace", "must not be null when workspace_bytes > 0");
}

TEST_F(Varlen, WorkspaceMisaligned) {
  alignas(16) static unsigned char buffer[80];
  reject([](auto& m) {
    m.workspace = buffer + 4;
    m.workspace_bytes = 64;
  }, "workspace", "must be aligned to 16 bytes");
  accept([](auto& m) {
    m.workspace = buffer;
    m.workspace_bytes = 64;
  });
}

TEST_F(Dense, BaselineIsAcceptedAndResolved) {
  const FwdParams p = validate_dense(a);
  EXPECT_FALSE(p.is_varlen());
  EXPECT_EQ(p.dtype, DType::fp16);
  EXPECT_EQ(p.batch, kB);
  EXPECT_EQ(p.seqlen_q, kSq);
  EXPECT_EQ(p.seqlen_k, kSk);
  EXPECT_EQ(p.max_seqlen_q, kSq);
  EXPECT_EQ(p.max_seqlen_k, kSk);
  EXPECT_EQ(p.total_q, kB * kSq);
  EXPECT_EQ(p.total_k, kB * kSk);
  EXPECT_EQ(p.heads_q, kHq);
  EXPECT_EQ(p.heads_k, kHk);
  EXPECT_EQ(p.q_batch_stride, kSq * kHq * kD);
  EXPECT_EQ(p.q_row_stride, kHq * kD);
  EXPECT_EQ(p.q_head_stride, kD);
  EXPECT_EQ(p.k_batch_stride, kSk * kD);
  EXPECT_EQ(p.k_row_stride, kD);
  EXPECT_EQ(p.lse_batch_stride, kHq * kSq);
  EXPECT_EQ(p.lse_head_stride, kSq);
  EXPECT_FLOAT_EQ(p.softmax_scale, float(1.0 / std::sqrt(32.0)));
}

TEST_F(Dense, StructSizeTooSmall) {
  reject([](auto& m) { m.struct_size = 4; }, "struct_size", "must be >= sizeof(vflash_dense_args)");
}

TEST_F(Dense, WrongNdim) {
  reject([](auto& m) { m.q.ndim = 3; }, "q.ndim", "must be 4 (batch, seqlen_q, heads_q, d)");
  reject([](auto& m) { m.lse.ndim = 2; }, "lse.ndim", "must be 3 (batch, heads_q, seqlen_q)");
}

TEST_F(Dense, BatchZeroAndBatchMismatch) {
  reject([](auto& m) { m.q.shape[0] = 0; }, "q.shape[0]", "batch must be > 0");
  reject([](auto& m) { m.k.shape[0] = 1; }, "k.shape[0]", "must equal q.shape[0] (batch = 2), got 1");
  reject([](auto& m) { m.out.shape[0] = 3; }, "out.shape[0]", "must equal q.shape[0] (batch = 2)");
  reject([](auto& m) { m.lse.shape[0] = 1; }, "lse.shape[0]", "must equal q.shape[0] (batch = 2)");
}

TEST_F(Dense, InconsistentShapes) {
  reject([](auto& m) { m.v.shape[1] = 4; }, "v.shape[1]", "must equal k.shape[1] (tokens of k = 5)");
  reject([](auto& m) { m.out.shape[1] = 5; }, "out.shape[1]", "must equal q.shape[1] (tokens of q = 3)");
  reject([](auto& m) { m.lse.shape[1] = 2; }, "lse.shape[1]", "must equal q.shape[2] (heads_q = 4)");
  reject([](auto& m) { m.lse.shape[2] = 5; }, "lse.shape[2]", "must equal q.shape[1] (tokens of q = 3)");
  reject([](auto& m) { m.k.shape[2] = m.v.shape[2] = 3; }, "k.shape[2]", "heads_q (4) must be a multiple of heads_k (3)");
}

TEST_F(Dense, ZeroLengthSequencesAreValid) {
  const auto p_empty_k = [&] {
    DenseArgs m = a;
    m.k.shape[1] = m.v.shape[1] = 0;
    m.k.data = m.v.data = nullptr;
    return validate_dense(m);
  }();
  EXPECT_EQ(p_empty_k.seqlen_k, 0);
  DenseArgs m = a;
  m.q.shape[1] = m.out.shape[1] = m.lse.shape[2] = 0;
  EXPECT_EQ(validate_dense(m).seqlen_q, 0);
}

TEST_F(Dense, Int32RowLimits) {
  const int64_t half = int64_t(1) << 30;
  reject([&](auto& m) { m.q.shape[1] = m.out.shape[1] = m.lse.shape[2] = half; }, kUnsupported, "q.shape[1]",
         "batch * seqlen_q must be <= 2^31 - 1");
  reject([&](auto& m) { m.k.shape[1] = m.v.shape[1] = 4 * half; }, kUnsupported, "k.shape[1]",
         "seqlen_k must be <= 2^31 - 1");
  // Rows times heads past int32 while rows and batch * heads_q fit.
  reject(
      [&](auto& m) {
        const int64_t sq = int64_t(1) << 20, hq = 4096;
        m.q = row_major_tensor(q.data(), VFLASH_DTYPE_FP16, -1, {kB, sq, hq, kD});
        m.out = row_major_tensor(o.data(), VFLASH_DTYPE_FP16, -1, {kB, sq, hq, kD});
        m.lse = row_major_tensor(lse.data(), VFLASH_DTYPE_FP32, -1, {kB, hq, sq});
      },
      kUnsupported, "q.shape[2]", "(batch * seqlen_q + batch) * heads_q must be <= 2^31 - 1");
}

TEST_F(Dense, LayoutRules) {
  reject([](auto& m) { m.lse.stride[2] = 3; }, "lse.stride[2]", "must be contiguous");
  reject([](auto& m) { m.q.stride[0] = 64; }, "q.stride[0]", "dimensions overlap");
  reject([](auto& m) { m.v.stride[3] = 2; }, "v.stride[3]", "must be contiguous");
  reject([](auto& m) { m.out.stride[0] = 0; }, "out.stride[0]", "must be positive");
  // Batch 1: the batch stride is never used.
  DenseArgs m = a;
  for (vflash_tensor* t : {&m.q, &m.k, &m.v, &m.out, &m.lse}) {
    t->shape[0] = 1;
    t->stride[0] = 0;
  }
  const FwdParams p = validate_dense(m);
  EXPECT_GT(p.q_batch_stride, 0);
  EXPECT_GT(p.lse_batch_stride, 0);
}

TEST_F(Dense, ScalarsAndCausal) {
  reject([](auto& m) { m.softmax_scale = -1.f; }, "softmax_scale", ">= 0");
  reject([](auto& m) { m.window_left = -3; }, "window_left", ">= -1");
  reject([](auto& m) { m.softcap = -2.f; }, "softcap", ">= 0");
  DenseArgs m = a;
  m.causal = 1;
  m.window_left = 4;
  const FwdParams p = validate_dense(m);
  EXPECT_EQ(p.window_left, 4);
  EXPECT_EQ(p.window_right, 0);
}

TEST_F(Dense, TokenCountsLeaveRoomForTileRounding) {
  constexpr int64_t kLimit = std::numeric_limits<int32_t>::max() - 1024;
  reject([&](auto& m) { m.k.shape[1] = m.v.shape[1] = kLimit + 1; }, kUnsupported, "k.shape[1]",
         "seqlen_k must be <= 2^31 - 1 - 1024");
  // batch 2: 2 * seqlen_q just past the limit.
  reject([&](auto& m) { m.q.shape[1] = m.out.shape[1] = m.lse.shape[2] = kLimit / 2 + 1; }, kUnsupported,
         "q.shape[1]", "batch * seqlen_q must be <= 2^31 - 1 - 1024");
}

TEST_F(Dense, WindowsLongerThanTheSequencesAreNoWindow) {
  DenseArgs m = a;
  m.window_left = kSk;
  m.window_right = kSq;
  FwdParams p = validate_dense(m);
  EXPECT_EQ(p.window_left, -1);
  EXPECT_EQ(p.window_right, -1);
  m.window_left = kSk - 1;
  m.window_right = std::numeric_limits<int32_t>::max();
  p = validate_dense(m);
  EXPECT_EQ(p.window_left, kSk - 1);
  EXPECT_EQ(p.window_right, -1);
}

TEST_F(Dense, CudaOnlyDtypeRule) {
  DenseArgs m = a;
  for (vflash_tensor* t : {&m.q, &m.k, &m.v, &m.out, &m.lse}) t->device = 0;
  EXPECT_EQ(validate_dense(m).device, 0);
  for (vflash_tensor* t : {&m.q, &m.k, &m.v, &m.out}) t->dtype = VFLASH_DTYPE_FP32;
  expect_rejected([&] { validate_dense(m); }, kUnsupported, "q.dtype", "fp32 is served only on the host");
}

}  // namespace
}  // namespace vflash
