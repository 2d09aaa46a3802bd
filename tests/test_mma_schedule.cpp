// The mma kernel's tile order (no GPU needed): tile_index must name every
// (query block, head group) exactly once, and keep the tile list's longest-first
// order unless head-major, which only equal unmasked tiles of sequences over
// several query blocks take. And the shapes' switches: warp pairs
// (key_split) for d256 only where two of their CTAs fit an SM, the lagging
// softmax maximum everywhere but d80's standard shape. And the tile policy
// (tile_policy): how the CTAs take tiles and in which order.
#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "kernels/mma/mma_schedule.cuh"

namespace vflash::mma {
namespace {

struct Order {
  int num_blocks, head_groups;
  bool head_major;
};

class TileOrder : public ::testing::TestWithParam<Order> {};

TEST_P(TileOrder, NamesEveryTileOnce) {
  const Order o = GetParam();
  std::set<std::pair<int, int>> seen;
  for (int t = 0; t < o.num_blocks * o.head_groups; ++t) {
    const TileIndex i = tile_index(t, o.num_blocks, o.head_groups, o.head_major);
    ASSERT_GE(i.query_block, 0) << "tile " << t;
    ASSERT_LT(i.query_block, o.num_blocks) << "tile " << t;
    ASSERT_GE(i.head_group, 0) << "tile " << t;
    ASSERT_LT(i.head_group, o.head_groups) << "tile " << t;
    ASSERT_TRUE(seen.insert({i.query_block, i.head_group}).second) << "tile " << t << " repeats a tile";
  }
  EXPECT_EQ(int(seen.size()), o.num_blocks * o.head_groups);
}

TEST_P(TileOrder, KeepsTheListOrder) {
  const Order o = GetParam();
  TileIndex prev{-1, -1};
  for (int t = 0; t < o.num_blocks * o.head_groups; ++t) {
    const TileIndex i = tile_index(t, o.num_blocks, o.head_groups, o.head_major);
    if (o.head_major) {  // one head group after the other, each over the whole list
      EXPECT_EQ(i.head_group, t / o.num_blocks);
      EXPECT_EQ(i.query_block, t % o.num_blocks);
    } else if (t > 0) {  // the list's query blocks in order, each with all its head groups
      EXPECT_GE(i.query_block, prev.query_block) << "tile " << t << " goes back in the list";
      EXPECT_EQ(i.head_group, t % o.head_groups);
    }
    prev = i;
  }
}

INSTANTIATE_TEST_SUITE_P(Orders, TileOrder,
                         ::testing::Values(Order{7, 32, false}, Order{5, 1, false}, Order{1, 6, false},
                                           Order{9, 16, true}, Order{1, 3, true}, Order{4, 1, true}));

TEST(HeadMajorOrder, OnlyEqualUnmaskedTilesOfLongSequences) {
  FwdParams p;
  p.batch = 2;
  EXPECT_TRUE(head_major_order(p, true, 3));    // a sequence over two query blocks
  EXPECT_FALSE(head_major_order(p, true, 2));   // one query block per sequence: whole token rows
  EXPECT_FALSE(head_major_order(p, false, 8));  // uneven tiles keep the longest-first order
  p.window_right = 0;                           // causal
  EXPECT_FALSE(head_major_order(p, true, 8));
  p.window_right = -1;
  p.window_left = 64;
  EXPECT_FALSE(head_major_order(p, true, 8));
}

TEST(TilePolicy, EqualTilesRoundRobinUnevenOnesThroughTheCounter) {
  FwdParams p;
  p.batch = 2;
  p.window_left = p.window_right = -1;
  const TilePolicy equal = tile_policy(p, true, 3), uneven = tile_policy(p, false, 3);
  EXPECT_TRUE(equal.round_robin);
  EXPECT_TRUE(equal.head_major);  // head_major_order's rule, nothing else
  EXPECT_FALSE(uneven.round_robin);
  EXPECT_FALSE(uneven.head_major);
  p.window_right = 0;  // causal
  EXPECT_TRUE(tile_policy(p, true, 3).round_robin);
  EXPECT_FALSE(tile_policy(p, true, 3).head_major);
}

TEST(KeySplit, PairsShareRowsAndNeedTheirPBuffer) {
  constexpr TileConfig pairs{4, 2, 64, 1, true}, single{4, 1, 64, 1};
  EXPECT_EQ(pairs.block_m(), 64);  // two pairs of 32 rows
  EXPECT_EQ(single.block_m(), 64);
  EXPECT_EQ(single.smem_bytes(256), 96u * 1024);
  EXPECT_EQ(pairs.smem_bytes(256), 104u * 1024);  // plus P: 64 rows x 64 keys x 2 bytes
}

TEST(KeySplit, D256TakesPairsWhereTwoCtasFit) {
  FwdParams p;
  p.batch = 2;
  p.seqlen_q = p.seqlen_k = 8192;
  p.heads_q = p.heads_k = 8;
  p.head_dim = p.head_dim_v = 256;
  const TileConfig pairs = tile_config(256, TileShape::two_ctas);
  EXPECT_TRUE(pairs.key_split);
  EXPECT_EQ(tile_shape(p, 256, 227 * 1024), TileShape::two_ctas);  // 9.0, 10.x
  EXPECT_EQ(tile_shape(p, 256, 163 * 1024), TileShape::standard);  // 8.0: one CTA of 104 KiB
  EXPECT_EQ(tile_shape(p, 256, 99 * 1024), TileShape::standard);   // 8.6, 8.9, 12.x
  EXPECT_FALSE(tile_config(256).key_split);
  for (int bucket : kBuckets)  // no other bucket pairs its warps
    if (bucket != 256)
      for (TileShape shape : kTileShapes) EXPECT_FALSE(tile_config(bucket, shape).key_split) << bucket;
}

TEST(LaggedMax, OnEverywhereButD80sStandardShape) {
  for (int bucket : kBuckets)
    for (TileShape shape : kTileShapes) {  // (a shape a bucket lacks is its standard shape)
      const TileConfig c = tile_config(bucket, shape);
      EXPECT_EQ(c.lagged_max, bucket != 80 || c != tile_config(80)) << bucket << " " << int(shape);
    }
  EXPECT_FALSE(tile_config(80).lagged_max);
}

}  // namespace
}  // namespace vflash::mma
