// Fixtures of the validation tests (test_validate.cpp, test_validate_backward.cpp):
// baseline arguments `a` that validate, and reject() for an input that breaks
// one rule.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "test_util.hpp"
#include "validate.hpp"

namespace vflash::testutil {

// Baseline arguments `a` of type Args, checked by `validate` (validate_varlen,
// validate_dense or validate_varlen_bwd).
template <class Args, auto validate>
struct ValidationTest : ::testing::Test {
  Args a;

  // A copy of `a` changed by `mutate` must be refused with this status, naming
  // this argument and stating `rule`.
  void reject(const std::function<void(Args&)>& mutate, Status status, const std::string& argument,
              const std::string& rule) {
    Args m = a;
    mutate(m);
    SCOPED_TRACE(argument);
    expect_rejected([&] { validate(m); }, status, argument, rule);
  }
  void reject(const std::function<void(Args&)>& mutate, const std::string& argument, const std::string& rule) {
    reject(mutate, Status::invalid_argument, argument, rule);
  }
};

// Varlen baseline: 2 sequences (q lengths 3, 2; k lengths 4, 3), heads 4 / 2
// (GQA), d 16, d_v 8, bf16, with lse. Buffers hold fp32 elements, so a test
// may change the dtype.
template <class Args, auto validate>
struct VarlenValidationTest : ValidationTest<Args, validate> {
  static constexpr int64_t kTotalQ = 5, kTotalK = 7, kHq = 4, kHk = 2, kD = 16, kDv = 8;
  vflash_dtype dtype = VFLASH_DTYPE_BF16;
  AlignedBuffer q{kTotalQ * kHq * kD * 4}, k{kTotalK * kHk * kD * 4}, v{kTotalK * kHk * kDv * 4},
      o{kTotalQ * kHq * kDv * 4}, lse{kHq * kTotalQ * 4};
  std::vector<int32_t> cu_q{0, 3, 5}, cu_k{0, 4, 7};

  // Describes the baseline's forward tensors and sequences in `a`, on `device`.
  void describe_forward(int device) {
    Args& a = this->a;
    a.q = row_major_tensor(q.data(), dtype, device, {kTotalQ, kHq, kD});
    a.k = row_major_tensor(k.data(), dtype, device, {kTotalK, kHk, kD});
    a.v = row_major_tensor(v.data(), dtype, device, {kTotalK, kHk, kDv});
    a.out = row_major_tensor(o.data(), dtype, device, {kTotalQ, kHq, kDv});
    a.lse = row_major_tensor(lse.data(), VFLASH_DTYPE_FP32, device, {kHq, kTotalQ});
    a.cu_seqlens_q = row_major_tensor(cu_q.data(), VFLASH_DTYPE_INT32, device, {3});
    a.cu_seqlens_k = row_major_tensor(cu_k.data(), VFLASH_DTYPE_INT32, device, {3});
    a.max_seqlen_q = 3;
    a.max_seqlen_k = 4;
  }
};

}  // namespace vflash::testutil
