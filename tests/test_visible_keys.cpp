// The kernels' key ranges and block counts (no GPU needed): visible_keys
// against the mask's definition evaluated in 64-bit, row by row, for small
// sequences exhaustively and for lengths and windows near int32's limit,
// where a sum formed in int32 would wrap; blocks_of near 2^31.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/common/visible_keys.cuh"

namespace vflash::kernels {
namespace {

constexpr int kIntMax = std::numeric_limits<int>::max();

// Keys [begin, end) some row of [first, last] sees, from the definition:
// row i sees key j when i + k - q - left <= j <= i + k - q + right (a
// negative side unbounded), 0 <= j < k.
KeySpan expected(int64_t first, int64_t last, int64_t q, int64_t k, int64_t left, int64_t right) {
  int64_t lo = 0, hi = k;  // [lo, hi)
  if (left >= 0) lo = std::max<int64_t>(lo, first + k - q - left);
  if (right >= 0) hi = std::min<int64_t>(hi, last + k - q + right + 1);
  lo = std::min(lo, k);
  hi = std::max(hi, lo);
  return {int(lo), int(hi)};
}

void expect_span(KeySpan got, KeySpan want, int64_t first, int64_t last, int64_t q, int64_t k, int64_t left,
                 int64_t right) {
  EXPECT_EQ(got.begin, want.begin) << "rows [" << first << ", " << last << "] q " << q << " k " << k << " left "
                                   << left << " right " << right;
  EXPECT_EQ(got.end, want.end) << "rows [" << first << ", " << last << "] q " << q << " k " << k << " left " << left
                               << " right " << right;
}

TEST(VisibleKeys, SmallSequencesExhaustive) {
  const std::vector<int> sides = {-1, 0, 1, 2, 5, 9, 100, kIntMax};
  for (int q = 0; q <= 9; ++q)
    for (int k = 0; k <= 9; ++k)
      for (int left : sides)
        for (int right : sides)
          for (int first = 0; first < q + 3; ++first)
            for (int last = first; last < q + 3; ++last)
              expect_span(visible_keys(first, last, q, k, left, right), expected(first, last, q, k, left, right),
                          first, last, q, k, left, right);
}

TEST(VisibleKeys, NearInt32Limit) {
  // Validation keeps token counts <= 2^31 - 1 - 1024; rows reach past q_len
  // by less than a tile.
  const int big = kIntMax - 1024;
  const std::vector<int> lengths = {0, 1, 1000, big / 2, big - 1, big};
  const std::vector<int> sides = {-1, 0, 1, 1000, big / 2, big - 1, big, kIntMax - 1, kIntMax};
  for (int q : lengths)
    for (int k : lengths)
      for (int left : sides)
        for (int right : sides)
          for (int first : {0, q / 2, std::max(0, q - 1), q + 255}) {
            for (int last : {first, first + 127, q + 1000}) {
              if (last < first) continue;
              expect_span(visible_keys(first, last, q, k, left, right), expected(first, last, q, k, left, right),
                          first, last, q, k, left, right);
            }
          }
}

TEST(VisibleKeys, WindowLongerThanSequenceIsNoWindow) {
  for (int q : {1, 7, 64, 1000})
    for (int k : {0, 1, 9, 64, 1000})
      for (int row = 0; row < q; ++row) {
        const KeySpan none = visible_keys(row, q, k, -1, -1);
        const KeySpan huge = visible_keys(row, q, k, kIntMax, kIntMax);
        EXPECT_EQ(huge.begin, none.begin);
        EXPECT_EQ(huge.end, none.end);
        EXPECT_EQ(none.begin, 0);
        EXPECT_EQ(none.end, k);
      }
}

TEST(BlocksOf, NoWrapNearInt32Limit) {
  for (int block : {1, 16, 64, 80, 128, 176, 192, 256})
    for (int count : {0, 1, block - 1, block, block + 1, kIntMax - block, kIntMax - 1, kIntMax}) {
      if (count < 0) continue;
      EXPECT_EQ(int64_t(blocks_of(count, block)), (int64_t(count) + block - 1) / block)
          << "count " << count << " block " << block;
    }
}

}  // namespace
}  // namespace vflash::kernels
