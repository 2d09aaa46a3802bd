// What rounding P to bf16 costs the kernels' online softmax, on the host: one
// row at a time through the update of kernels/common/online_softmax.cuh as the
// mma kernel runs it (128-key blocks, last block first, the lagged reference,
// p = 2^(x * f - base) in fp32, P rounded to bf16 for P*V, the sum of unrounded
// p, O / sum rounded to bf16), against the float64 softmax and against the
// low-precision reference's rounding (each weight e^(s - max) rounded to bf16,
// Precision::probabilities_rounded). Inputs as the GPU suite draws them for
// d = d_v = 8: uniform in [-2, 2], rounded to bf16, 1/sqrt(8) scale.
//
// Errors are of the row's largest |exact| value, as the suite measures them.
// Rows of 8 values that nearly cancel make both errors large and their
// largest value over a case noisy: the rms over many rows compares the two
// roundings, the largest value does not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dtype.hpp"
#include "kernels/common/constants.cuh"
#include "kernels/common/online_softmax.cuh"

namespace vflash::kernels {
namespace {

constexpr int kDim = 8;     // d and d_v
constexpr int kKeys = 349;  // three 128-key blocks, the last one partial
constexpr int kBlock = 128;
constexpr float kInf = std::numeric_limits<float>::infinity();

float bf16(float x) { return bf16_to_float(float_to_bf16(x)); }

struct Row {
  std::vector<float> x;                  // raw scores q.k (fp32, as S leaves the tensor cores)
  std::vector<std::vector<double>> v;    // kKeys x kDim
};

Row draw_row(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-2.f, 2.f);
  auto element = [&] { return bf16(dist(rng)); };
  float q[kDim];
  for (float& e : q) e = element();
  Row row;
  row.x.resize(kKeys);
  row.v.assign(kKeys, std::vector<double>(kDim));
  for (int j = 0; j < kKeys; ++j) {
    double s = 0;
    for (int i = 0; i < kDim; ++i) s += double(q[i]) * element();
    row.x[j] = float(s);
    for (double& e : row.v[j]) e = element();
  }
  return row;
}

// The float64 softmax (rounded = false) or the low-precision reference's
// (each weight rounded to bf16 before P*V, the sum exact, the output rounded).
std::vector<double> reference_row(const Row& row, double scale, bool rounded) {
  double mx = -kInf;
  for (float s : row.x) mx = std::max(mx, scale * s);
  double sum = 0;
  std::vector<double> out(kDim, 0.0);
  for (int j = 0; j < kKeys; ++j) {
    const double w = std::exp(scale * row.x[j] - mx);
    sum += w;
    const double pw = rounded ? bf16(float(w)) : w;
    for (int c = 0; c < kDim; ++c) out[c] += pw * row.v[j][c];
  }
  for (double& o : out) o = rounded ? bf16(float(o / sum)) : o / sum;
  return out;
}

// The kernel's update of one row (see the file comment); lagged: kLaggedMax.
std::vector<double> kernel_row(const Row& row, float f, bool lagged) {
  float ref = -kInf, sum = 0.f;
  std::vector<float> o(kDim, 0.f);
  const int blocks = (kKeys + kBlock - 1) / kBlock;
  for (int nb = blocks - 1; nb >= 0; --nb) {
    const int n0 = nb * kBlock, n1 = std::min(kKeys, n0 + kBlock);
    float mx = ref;
    for (int j = n0; j < n1; ++j) mx = std::max(mx, row.x[j]);
    const float next = next_reference(ref, mx, f, lagged);
    const float base = exp2_base(next, f);
    if (next != ref) {
      const float corr = std::exp2(ref * f - base);
      sum *= corr;
      for (float& e : o) e *= corr;
    }
    ref = next;
    for (int j = n0; j < n1; ++j) {
      const float p = std::exp2(std::fmaf(row.x[j], f, -base));
      sum += p;
      const float pr = bf16(p);
      for (int c = 0; c < kDim; ++c) o[c] += pr * float(row.v[j][c]);
    }
  }
  std::vector<double> out(kDim);
  for (int c = 0; c < kDim; ++c) out[c] = bf16(o[c] * (1.f / sum));
  return out;
}

struct Errors {
  double rms = 0, max = 0;
};

// got against exact, each element over its row's largest |exact|.
void add_errors(Errors& e, const std::vector<double>& got, const std::vector<double>& exact) {
  double scale = 0;
  for (double x : exact) scale = std::max(scale, std::fabs(x));
  for (int c = 0; c < kDim; ++c) {
    const double err = std::fabs(got[c] - exact[c]) / scale;
    e.rms += err * err;
    e.max = std::max(e.max, err);
  }
}

TEST(SoftmaxRounding, KernelRoundsPAsFinelyAsTheLowPrecisionReference) {
  std::mt19937_64 rng(283);
  const double scale = 1.0 / std::sqrt(double(kDim));
  const float f = float(scale) * kLog2e;
  constexpr int kRows = 600;
  Errors low, lagged, plain;
  for (int r = 0; r < kRows; ++r) {
    const Row row = draw_row(rng);
    const std::vector<double> exact = reference_row(row, scale, false);
    add_errors(low, reference_row(row, scale, true), exact);
    add_errors(lagged, kernel_row(row, f, true), exact);
    add_errors(plain, kernel_row(row, f, false), exact);
  }
  for (Errors* e : {&low, &lagged, &plain}) e->rms = std::sqrt(e->rms / (kRows * kDim));
  // The same rounding error in distribution: P's rounding relative to a
  // reference below the row's maximum (the lag) is neither finer nor coarser
  // than relative to the maximum itself, to within the sampling of 600 rows.
  EXPECT_NEAR(lagged.rms / low.rms, 1.0, 0.1) << "rms " << lagged.rms << " against " << low.rms;
  EXPECT_NEAR(plain.rms / low.rms, 1.0, 0.1) << "rms " << plain.rms << " against " << low.rms;
  // A few thousandths of the row's largest value, from P alone: the fp32
  // rest of the update adds nothing visible.
  EXPECT_LT(low.rms, 0.01);
  EXPECT_GT(low.rms, 0.001);
}

}  // namespace
}  // namespace vflash::kernels
