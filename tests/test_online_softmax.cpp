// The host-testable rules of the online softmax every kernel runs
// (kernels/common/online_softmax.cuh) and of the score constants
// (kernels/common/score_constants.hpp): the reference maximum and its lag,
// the exponent offset of rows without keys, and a block-by-block run of the
// same update (with exact exp2) against a direct softmax.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/common/constants.cuh"
#include "kernels/common/online_softmax.cuh"
#include "kernels/common/score_constants.hpp"

namespace vflash::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(ScoreConstants, WithoutSoftcapTheScaleCarriesLog2e) {
  const ScoreConstants c = score_constants(0.125f, 0.f);
  EXPECT_FALSE(c.has_softcap());
  EXPECT_FLOAT_EQ(c.exp2_scale, 0.125f * kLog2e);
  EXPECT_EQ(c.softcap_in, 0.f);
  EXPECT_EQ(c.softcap_out, 0.f);
}

TEST(ScoreConstants, WithSoftcapTheCapCarriesLog2e) {
  const ScoreConstants c = score_constants(0.125f, 30.f);
  EXPECT_TRUE(c.has_softcap());
  EXPECT_EQ(c.exp2_scale, 1.f);
  EXPECT_FLOAT_EQ(c.softcap_in, 0.125f / 30.f);
  EXPECT_FLOAT_EQ(c.softcap_out, 30.f * kLog2e);
  // capped(s) * exp2_scale is the capped scaled score in log2 units.
  for (float s : {-500.f, -3.f, 0.f, 2.5f, 1e4f})
    EXPECT_NEAR(c.capped(s) * c.exp2_scale, 30.0 * std::tanh(0.125 * s / 30.0) * 1.4426950408889634, 1e-4);
}

TEST(ScoreConstants, FromParams) {
  FwdParams p;
  p.softmax_scale = 0.5f;
  p.softcap = 0.f;
  EXPECT_FLOAT_EQ(score_constants(p).exp2_scale, 0.5f * kLog2e);
  p.softcap = 10.f;
  EXPECT_FLOAT_EQ(score_constants(p).softcap_out, 10.f * kLog2e);
}

TEST(NextReference, PlainFollowsTheMaximum) {
  EXPECT_EQ(next_reference(1.f, 1.5f, 1.f, false), 1.5f);
  EXPECT_EQ(next_reference(-kInf, 0.25f, 1.f, false), 0.25f);
  EXPECT_EQ(next_reference(-kInf, -kInf, 1.f, false), -kInf);
}

TEST(NextReference, LaggedMovesOnlyPastTheLag) {
  const float f = 0.5f;                                         // 2^(x * f): lag of 8 in log2 is 16 in x
  EXPECT_EQ(next_reference(1.f, 1.f + 16.f, f, true), 1.f);    // p <= 2^8 still: keep
  EXPECT_EQ(next_reference(1.f, 1.f + 16.5f, f, true), 17.5f);  // beyond: move
  EXPECT_EQ(next_reference(-kInf, 3.f, f, true), 3.f);         // the first visible key always moves it
  EXPECT_EQ(next_reference(-kInf, -kInf, f, true), -kInf);     // no key yet: stays -inf, no NaN
}

TEST(Exp2Base, RowsWithoutKeysTakeZero) {
  EXPECT_EQ(exp2_base(-kInf, 0.7f), 0.f);
  EXPECT_FLOAT_EQ(exp2_base(2.f, 0.7f), 1.4f);
  // exp2(-inf * f - base) is then 0, never NaN.
  EXPECT_EQ(std::exp2(-kInf * 0.7f - exp2_base(-kInf, 0.7f)), 0.f);
}

// Why a staying reference takes the factor 1 outright: 2^(ref * f -
// round(ref * f)) (one fused multiply-add) is 1 only to within the product's
// rounding, the same error every block, which the sums would take block
// after block while O's rescale is skipped.
TEST(OnlineUpdate, AStayingReferenceGivesOneOnlyToWithinRounding) {
  int off_one = 0;
  for (float ref = 50.f; ref < 150.f; ref += 0.37f) {
    const float f = kLog2e;
    const float base = exp2_base(ref, f);
    const float corr = std::exp2(std::fmaf(ref, f, -base));
    EXPECT_NEAR(corr, 1.f, 1e-5f);
    off_one += corr != 1.f;
  }
  EXPECT_GT(off_one, 0);
}

// One row through the kernels' update, block by block: ref and base in fp32
// as the kernels hold them, the sums in double: corr = 2^(old*f - base),
// p = 2^(x*f - base), sum = sum * corr + sum(p), O = O * corr + p.V; with the
// rescale skip (settle()), O's rescale skipped when the reference did not
// move (corr is then exactly 1, or 0 for a row without a key so far, whose O
// and sum are 0).
struct RowRun {
  double out = 0, sum = 0, max_p = 0;
  int rescales = 0;
};

RowRun run_row(const std::vector<float>& x, const std::vector<double>& v, int block, float f, bool lagged) {
  RowRun run;
  float ref = -kInf;
  for (size_t n0 = 0; n0 < x.size(); n0 += block) {
    const size_t n1 = std::min(x.size(), n0 + block);
    float mx = ref;
    for (size_t j = n0; j < n1; ++j) mx = std::max(mx, x[j]);
    const float next = next_reference(ref, mx, f, lagged);
    const float base = exp2_base(next, f);
    const double corr = std::exp2(double(ref) * f - base);
    if (next != ref) {
      run.out *= corr;
      run.sum *= corr;
      ++run.rescales;
    } else if (ref == -kInf) {
      EXPECT_EQ(corr, 0.0);
      EXPECT_EQ(run.out, 0.0);
      EXPECT_EQ(run.sum, 0.0);
    } else {
      EXPECT_NEAR(corr, 1.0, 1e-6);
    }
    ref = next;
    for (size_t j = n0; j < n1; ++j) {
      const double p = std::exp2(double(x[j]) * f - base);
      run.max_p = std::max(run.max_p, p);
      run.sum += p;
      run.out += p * v[j];
    }
  }
  return run;
}

TEST(OnlineUpdate, MatchesADirectSoftmaxWithAndWithoutLag) {
  std::mt19937 rng(7);
  std::normal_distribution<float> score(0.f, 4.f);
  std::normal_distribution<double> value(0.0, 1.0);
  const float f = 0.125f * kLog2e;
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + int(rng() % 700);
    std::vector<float> x(n);
    std::vector<double> v(n);
    for (int j = 0; j < n; ++j) {
      x[j] = score(rng) + 0.05f * j;  // rising maxima: the reference has to move
      v[j] = value(rng);
      if (rng() % 7 == 0) x[j] = -kInf;  // masked keys
    }
    double mx = -kInf, z = 0, want = 0;
    for (float s : x) mx = std::max<double>(mx, s);
    for (int j = 0; j < n; ++j) {
      if (x[j] == -kInf) continue;
      const double p = std::exp2((x[j] - mx) * f);
      z += p;
      want += p * v[j];
    }
    for (bool lagged : {false, true}) {
      const RowRun run = run_row(x, v, 64, f, lagged);
      if (mx == -kInf) {
        EXPECT_EQ(run.sum, 0.0);
        continue;
      }
      // Within fp32's rounding of the exponent offsets.
      EXPECT_NEAR(run.out / run.sum, want / z, 2e-6) << "trial " << trial << " lagged " << lagged;
      // p stays <= 2^kMaxLag with the lag, <= 1 without (to within base's rounding).
      EXPECT_LE(run.max_p, (lagged ? std::exp2(double(kMaxLag)) : 1.0) * (1 + 1e-6));
    }
  }
}

TEST(OnlineUpdate, LagSkipsMostRescalesOfSlowlyRisingRows) {
  std::vector<float> x(4096);
  std::vector<double> v(x.size(), 1.0);
  for (size_t j = 0; j < x.size(); ++j) x[j] = 0.01f * float(j);  // the maximum rises every block
  const float f = kLog2e;
  const RowRun plain = run_row(x, v, 64, f, false), lagged = run_row(x, v, 64, f, true);
  EXPECT_EQ(plain.rescales, 64);
  EXPECT_LT(lagged.rescales, 16);
  EXPECT_NEAR(lagged.out / lagged.sum, 1.0, 1e-12);
}

}  // namespace
}  // namespace vflash::kernels
