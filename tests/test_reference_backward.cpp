// The float64 CPU reference backward (src/reference) checked two ways:
//  - against central finite differences of the forward reference in float64
//    (gradcheck-style): for the loss L = sum(dout * out), dL/dx for every
//    element x of q, k and v, on small random varlen cases with zero-length
//    sequences, rows past the last sequence, causal masks, windows, softcap,
//    GQA / MQA and d_v != d;
//  - against a naive formula written separately here: per (sequence, query
//    head) the full probability matrix with an explicit mask from the
//    documented rule, then dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)),
//    dQ = dS' K, dK = dS'^T Q (dS' = dS times the score's derivative), dK and
//    dV summed over the query heads of a KV head.
// Query rows that see no key, and rows past the last sequence, get exactly zero.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "reference/reference.hpp"

namespace vflash {
namespace {

struct BwdCase {
  std::string name;
  std::vector<std::pair<int, int>> seqs;  // (len_q, len_k) per sequence
  int extra_q = 0, extra_k = 0;           // rows past the last sequence
  int heads_q = 1, heads_k = 1, d = 8, dv = 8;
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.f;
  float scale = 0.375f;
};

void PrintTo(const BwdCase& c, std::ostream* os) { *os << c.name; }

// Packed fp32 tensors, (rows, heads, dim) contiguous.
struct BwdProblem {
  BwdCase c;
  std::vector<int32_t> cu_q{0}, cu_k{0};
  int64_t total_q = 0, total_k = 0;
  std::vector<float> q, k, v, dout;
  std::vector<float> out, lse;  // the forward's, for params (the reference does not read them)

  explicit BwdProblem(const BwdCase& cs, std::mt19937& gen) : c(cs) {
    for (auto [lq, lk] : c.seqs) {
      cu_q.push_back(cu_q.back() + lq);
      cu_k.push_back(cu_k.back() + lk);
    }
    total_q = cu_q.back() + c.extra_q;
    total_k = cu_k.back() + c.extra_k;
    // Multiples of 2^-6 in [-1, 1]: x +- 2^-12 stays exact in fp32.
    std::uniform_int_distribution<int> u(-64, 64);
    auto random = [&](size_t n) {
      std::vector<float> x(n);
      for (float& e : x) e = float(u(gen)) / 64.f;
      return x;
    };
    q = random(size_t(total_q * c.heads_q * c.d));
    k = random(size_t(total_k * c.heads_k * c.d));
    v = random(size_t(total_k * c.heads_k * c.dv));
    dout = random(size_t(total_q * c.heads_q * c.dv));
    out.assign(size_t(total_q * c.heads_q * c.dv), 0.f);
    lse.assign(size_t(total_q * c.heads_q), 0.f);
  }

  FwdParams forward_params() {
    FwdParams p;
    p.dtype = DType::fp32;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.o = out.data();
    p.lse = lse.data();
    p.q_row_stride = int64_t(c.heads_q) * c.d;
    p.q_head_stride = c.d;
    p.k_row_stride = int64_t(c.heads_k) * c.d;
    p.k_head_stride = c.d;
    p.v_row_stride = int64_t(c.heads_k) * c.dv;
    p.v_head_stride = c.dv;
    p.o_row_stride = int64_t(c.heads_q) * c.dv;
    p.o_head_stride = c.dv;
    p.lse_head_stride = total_q;
    p.cu_seqlens_q = cu_q.data();
    p.cu_seqlens_k = cu_k.data();
    p.batch = int32_t(c.seqs.size());
    p.heads_q = c.heads_q;
    p.heads_k = c.heads_k;
    p.head_dim = c.d;
    p.head_dim_v = c.dv;
    p.total_q = total_q;
    p.total_k = total_k;
    for (auto [lq, lk] : c.seqs) {
      p.max_seqlen_q = std::max(p.max_seqlen_q, lq);
      p.max_seqlen_k = std::max(p.max_seqlen_k, lk);
    }
    p.softmax_scale = c.scale;
    p.causal = c.causal;
    p.window_left = c.window_left;
    p.window_right = c.causal ? 0 : c.window_right;
    p.softcap = c.softcap;
    return p;
  }

  BwdParams backward_params() {
    BwdParams b;
    b.fwd = forward_params();
    b.dout = dout.data();
    b.dout_row_stride = int64_t(c.heads_q) * c.dv;
    b.dout_head_stride = c.dv;
    return b;
  }

  // sum(dout * out) over the rows of every sequence, out from the forward reference.
  double loss() {
    std::vector<double> o(size_t(total_q * c.heads_q * c.dv));
    reference_attention(forward_params(), o, {});
    double sum = 0;
    for (int64_t row = 0; row < cu_q.back(); ++row)
      for (int64_t i = 0; i < c.heads_q * c.dv; ++i) sum += double(dout[row * c.heads_q * c.dv + i]) * o[row * c.heads_q * c.dv + i];
    return sum;
  }
};

struct Gradients {
  std::vector<double> dq, dk, dv;
};

Gradients reference_gradients(BwdProblem& pr) {
  Gradients g;
  g.dq.assign(pr.q.size(), std::nan(""));
  g.dk.assign(pr.k.size(), std::nan(""));
  g.dv.assign(pr.v.size(), std::nan(""));
  reference_attention_backward(pr.backward_params(), g.dq, g.dk, g.dv);
  return g;
}

// Central differences of pr.loss() in every element of `x`.
std::vector<double> finite_differences(BwdProblem& pr, std::vector<float>& x) {
  constexpr float kStep = 1.f / 4096.f;
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + kStep;
    const double up = pr.loss();
    x[i] = saved - kStep;
    const double down = pr.loss();
    x[i] = saved;
    grad[i] = (up - down) / (2.0 * double(kStep));
  }
  return grad;
}

::testing::AssertionResult close(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                                 double tolerance) {
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    if (!(err <= tolerance * (1 + scale)))
      return ::testing::AssertionFailure() << what << "[" << i << "]: got " << got[i] << ", want " << want[i]
                                           << " (|err| " << err << ", bound " << tolerance * (1 + scale) << ")";
  }
  return ::testing::AssertionSuccess();
}

double largest(const std::vector<double>& x) {
  double m = 0;
  for (double e : x) m = std::max(m, std::fabs(e));
  return m;
}

std::vector<BwdCase> finite_difference_cases() {
  std::vector<BwdCase> cases;
  cases.push_back({.name = "mha_full_empty_sequences", .seqs = {{3, 4}, {0, 2}, {4, 3}, {2, 0}}, .extra_q = 2,
                   .extra_k = 1, .heads_q = 2, .heads_k = 2});
  cases.push_back({.name = "gqa2_causal", .seqs = {{4, 5}, {3, 2}, {0, 0}, {1, 3}}, .heads_q = 4, .heads_k = 2,
                   .causal = true});
  cases.push_back({.name = "mqa3_window_softcap", .seqs = {{5, 5}, {2, 4}}, .extra_q = 1, .heads_q = 3,
                   .heads_k = 1, .window_left = 2, .window_right = 1, .softcap = 1.5f, .scale = 0.75f});
  cases.push_back({.name = "dv_greater_than_d_causal_window", .seqs = {{4, 4}, {3, 5}}, .heads_q = 2,
                   .heads_k = 1, .d = 8, .dv = 16, .causal = true, .window_left = 1});
  cases.push_back({.name = "dv_less_than_d_softcap_causal", .seqs = {{3, 3}, {4, 2}}, .extra_k = 2, .heads_q = 2,
                   .heads_k = 2, .d = 16, .dv = 8, .causal = true, .softcap = 2.f, .scale = 0.5f});
  // Query rows that see no key: a sequence without keys, and a window
  // reaching past a short sequence's keys.
  cases.push_back({.name = "keyless_rows_window", .seqs = {{4, 0}, {5, 2}}, .heads_q = 1, .heads_k = 1,
                   .window_left = 1, .window_right = 0});
  return cases;
}

class ReferenceBackwardFiniteDifferences : public ::testing::TestWithParam<BwdCase> {};

TEST_P(ReferenceBackwardFiniteDifferences, MatchCentralDifferencesOfTheForward) {
  std::mt19937 gen(1234);
  BwdProblem pr(GetParam(), gen);
  const Gradients g = reference_gradients(pr);
  const std::vector<double> fd_q = finite_differences(pr, pr.q);
  const std::vector<double> fd_k = finite_differences(pr, pr.k);
  const std::vector<double> fd_v = finite_differences(pr, pr.v);
  // Truncation error of the central difference (step 2^-12) is ~1e-8 here.
  constexpr double kTolerance = 1e-6;
  EXPECT_TRUE(close("dq", g.dq, fd_q, kTolerance));
  EXPECT_TRUE(close("dk", g.dk, fd_k, kTolerance));
  EXPECT_TRUE(close("dv", g.dv, fd_v, kTolerance));
  // The comparison means something only if the gradients are not all zero.
  EXPECT_GT(largest(fd_q), 1e-3);
  EXPECT_GT(largest(fd_k), 1e-3);
  EXPECT_GT(largest(fd_v), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Cases, ReferenceBackwardFiniteDifferences, ::testing::ValuesIn(finite_difference_cases()),
                         [](const auto& info) { return info.param.name; });

// The documented visibility rule, written out: row i of (lq, lk) sees key j iff
// shift - left <= j - i <= shift + right with shift = lk - lq (causal: right = 0).
bool sees(const BwdCase& c, int lq, int lk, int i, int j) {
  const int64_t offset = int64_t(j) - i - (int64_t(lk) - lq);
  const int right = c.causal ? 0 : c.window_right;
  if (right >= 0 && offset > right) return false;
  if (c.window_left >= 0 && offset < -int64_t(c.window_left)) return false;
  return true;
}

Gradients naive_gradients(const BwdProblem& pr) {
  const BwdCase& c = pr.c;
  Gradients g;
  g.dq.assign(pr.q.size(), 0.0);
  g.dk.assign(pr.k.size(), 0.0);
  g.dv.assign(pr.v.size(), 0.0);
  const int group = c.heads_q / c.heads_k;
  auto at = [](const std::vector<float>& x, int64_t row, int heads, int h, int dim, int i) {
    return double(x[size_t((row * heads + h) * dim + i)]);
  };
  for (size_t b = 0; b < c.seqs.size(); ++b) {
    const int lq = c.seqs[b].first, lk = c.seqs[b].second;
    const int64_t q0 = pr.cu_q[b], k0 = pr.cu_k[b];
    for (int h = 0; h < c.heads_q; ++h) {
      const int hk = h / group;
      // S, P, dP as full (lq, lk) matrices.
      std::vector<double> s(size_t(lq) * lk), p(size_t(lq) * lk, 0.0), dp(size_t(lq) * lk), ds(size_t(lq) * lk, 0.0);
      for (int i = 0; i < lq; ++i) {
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < lk; ++j) {
          double dot = 0;
          for (int e = 0; e < c.d; ++e) dot += at(pr.q, q0 + i, c.heads_q, h, c.d, e) * at(pr.k, k0 + j, c.heads_k, hk, c.d, e);
          double x = c.scale * dot;
          if (c.softcap > 0) x = c.softcap * std::tanh(x / c.softcap);
          s[i * lk + j] = x;
          if (sees(c, lq, lk, i, j)) m = std::max(m, x);
          double dpij = 0;
          for (int e = 0; e < c.dv; ++e)
            dpij += at(pr.dout, q0 + i, c.heads_q, h, c.dv, e) * at(pr.v, k0 + j, c.heads_k, hk, c.dv, e);
          dp[i * lk + j] = dpij;
        }
        double z = 0;
        for (int j = 0; j < lk; ++j)
          if (sees(c, lq, lk, i, j)) z += std::exp(s[i * lk + j] - m);
        for (int j = 0; j < lk; ++j)
          if (sees(c, lq, lk, i, j)) p[i * lk + j] = std::exp(s[i * lk + j] - m) / z;
        double row_dot = 0;
        for (int j = 0; j < lk; ++j) row_dot += p[i * lk + j] * dp[i * lk + j];
        for (int j = 0; j < lk; ++j) {
          const double t = c.softcap > 0 ? s[i * lk + j] / c.softcap : 0.0;
          ds[i * lk + j] = p[i * lk + j] * (dp[i * lk + j] - row_dot) * c.scale * (1 - t * t);
        }
      }
      for (int i = 0; i < lq; ++i)
        for (int j = 0; j < lk; ++j) {
          for (int e = 0; e < c.d; ++e) {
            g.dq[size_t(((q0 + i) * c.heads_q + h) * c.d + e)] += ds[i * lk + j] * at(pr.k, k0 + j, c.heads_k, hk, c.d, e);
            g.dk[size_t(((k0 + j) * c.heads_k + hk) * c.d + e)] += ds[i * lk + j] * at(pr.q, q0 + i, c.heads_q, h, c.d, e);
          }
          for (int e = 0; e < c.dv; ++e)
            g.dv[size_t(((k0 + j) * c.heads_k + hk) * c.dv + e)] +=
                p[i * lk + j] * at(pr.dout, q0 + i, c.heads_q, h, c.dv, e);
        }
    }
  }
  return g;
}

TEST(ReferenceBackward, MatchesNaiveFormulaOnRandomCases) {
  std::mt19937 gen(77);
  std::uniform_int_distribution<int> len(0, 12), coin(0, 1), side(-1, 6), pick(0, 3);
  const int head_dims[][2] = {{8, 8}, {16, 8}, {8, 24}, {32, 32}};
  const int head_counts[][2] = {{1, 1}, {2, 2}, {4, 2}, {3, 1}, {6, 3}};
  for (int trial = 0; trial < 60; ++trial) {
    BwdCase c;
    c.name = "random " + std::to_string(trial);
    const int batch = 1 + len(gen) % 4;
    for (int b = 0; b < batch; ++b) c.seqs.push_back({len(gen), len(gen)});
    c.extra_q = coin(gen) * 2;
    c.extra_k = coin(gen) * 3;
    const auto& dims = head_dims[pick(gen)];
    c.d = dims[0];
    c.dv = dims[1];
    const auto& heads = head_counts[std::uniform_int_distribution<int>(0, 4)(gen)];
    c.heads_q = heads[0];
    c.heads_k = heads[1];
    c.causal = coin(gen);
    c.window_left = side(gen);
    c.window_right = side(gen);
    c.softcap = coin(gen) ? 1.25f : 0.f;
    c.scale = coin(gen) ? 0.3f : 0.9f;
    SCOPED_TRACE(c.name);
    BwdProblem pr(c, gen);
    const Gradients got = reference_gradients(pr);
    const Gradients want = naive_gradients(pr);
    EXPECT_TRUE(close("dq", got.dq, want.dq, 1e-12));
    EXPECT_TRUE(close("dk", got.dk, want.dk, 1e-12));
    EXPECT_TRUE(close("dv", got.dv, want.dv, 1e-12));
  }
}

TEST(ReferenceBackward, RowsWithoutKeysAndRowsPastTheEndGetZeroGradient) {
  // Sequence 0 has no keys; in sequence 1 (shift 2 - 4 = -2) the window
  // [diagonal - 1, diagonal] leaves rows 0 and 1 without keys, row 2 with one
  // key and row 3 with two; one row of q and two of k follow the last sequence.
  std::mt19937 gen(5);
  BwdProblem pr({.name = "keyless", .seqs = {{3, 0}, {4, 2}}, .extra_q = 1, .extra_k = 2, .heads_q = 2,
                 .heads_k = 1, .window_left = 1, .window_right = 0},
                gen);
  const Gradients g = reference_gradients(pr);
  const int d = pr.c.d, heads_q = pr.c.heads_q;
  const std::vector<int64_t> keyless_rows = {0, 1, 2, 3, 4, 7};  // packed rows
  for (int64_t row : keyless_rows)
    for (int i = 0; i < heads_q * d; ++i) EXPECT_EQ(g.dq[size_t(row * heads_q * d + i)], 0.0) << "dq row " << row;
  // Row 3 of sequence 1 sees two keys: its gradient is not zero.
  EXPECT_GT(largest(std::vector<double>(g.dq.begin() + 6 * heads_q * d, g.dq.begin() + 7 * heads_q * d)), 0.0);
  for (int64_t row : {2, 3})  // k rows past the last sequence
    for (int i = 0; i < d; ++i) {
      EXPECT_EQ(g.dk[size_t(row * d + i)], 0.0);
      EXPECT_EQ(g.dv[size_t(row * d + i)], 0.0);
    }
}

TEST(ReferenceBackward, BackendStoresTheReferenceGradients) {
  std::mt19937 gen(9);
  BwdProblem pr({.name = "backend", .seqs = {{5, 4}, {0, 3}, {3, 6}}, .extra_q = 2, .extra_k = 1, .heads_q = 4,
                 .heads_k = 2, .d = 16, .dv = 8, .causal = true, .softcap = 1.5f},
                gen);
  const Gradients want = reference_gradients(pr);
  // NaN beforehand: every element must be written, rows past the end included.
  std::vector<float> dq(pr.q.size(), std::nanf("")), dk(pr.k.size(), std::nanf("")), dv(pr.v.size(), std::nanf(""));
  BwdParams p = pr.backward_params();
  p.dq = dq.data();
  p.dk = dk.data();
  p.dv = dv.data();
  p.dq_row_stride = int64_t(pr.c.heads_q) * pr.c.d;
  p.dq_head_stride = pr.c.d;
  p.dk_row_stride = int64_t(pr.c.heads_k) * pr.c.d;
  p.dk_head_stride = pr.c.d;
  p.dv_row_stride = int64_t(pr.c.heads_k) * pr.c.dv;
  p.dv_head_stride = pr.c.dv;
  cpu_backward(p);
  auto widened = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  EXPECT_TRUE(close("dq", widened(dq), want.dq, 1e-6));
  EXPECT_TRUE(close("dk", widened(dk), want.dk, 1e-6));
  EXPECT_TRUE(close("dv", widened(dv), want.dv, 1e-6));
}

}  // namespace
}  // namespace vflash
