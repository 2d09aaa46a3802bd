// Helpers shared by the host tests: aligned host storage, tensor descriptors
// built without the library (so the tests do not rely on the code they check),
// and expectations on the vflash::Error a call throws.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "vflash/vflash.hpp"

namespace vflash::testutil {

// 16-byte aligned zeroed host storage.
struct AlignedBuffer {
  struct alignas(16) Block {
    unsigned char bytes[16];
  };
  std::vector<Block> blocks;
  explicit AlignedBuffer(size_t bytes) : blocks((bytes + 15) / 16 + 1) {}
  void* data() { return blocks.data(); }
};

// Row-major descriptor of `shape` (last dimension contiguous).
inline vflash_tensor row_major_tensor(void* data, vflash_dtype dtype, int device,
                                      std::initializer_list<int64_t> shape) {
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

// (rows, heads, dim) descriptor with the given row and head strides (dim contiguous).
inline vflash_tensor strided_tensor(void* data, vflash_dtype dtype, int device, int64_t rows, int heads, int dim,
                                    int64_t row_stride, int64_t head_stride) {
  vflash_tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.ndim = 3;
  t.shape[0] = rows;
  t.shape[1] = heads;
  t.shape[2] = dim;
  t.stride[0] = row_stride;
  t.stride[1] = head_stride;
  t.stride[2] = 1;
  return t;
}

// `call` must throw vflash::Error with this status, naming this argument.
template <class Call>
void expect_error(Call&& call, Status status, const std::string& argument) {
  try {
    call();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_EQ(e.argument(), argument) << e.what();
  }
}

// As expect_error, and the message starts with "<argument>: " and states `rule`.
template <class Call>
void expect_rejected(Call&& call, Status status, const std::string& argument, const std::string& rule) {
  try {
    call();
    ADD_FAILURE() << "accepted; expected an error on " << argument << " (" << rule << ")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.status(), status) << msg;
    EXPECT_EQ(e.argument(), argument) << msg;
    EXPECT_EQ(msg.rfind(argument + ": ", 0), 0u) << "message does not start with the argument: " << msg;
    EXPECT_NE(msg.find(rule), std::string::npos) << "message lacks the rule \"" << rule << "\": " << msg;
  }
}

}  // namespace vflash::testutil
