// CPU reference (src/reference/reference.cpp) checked against a naive
// softmax(QK^T)V written separately: per (sequence, head) it materialises the
// full score matrix and an explicit mask matrix from the documented rules.
// Random small cases cover every feature (varlen and dense layouts, strided and
// heads-major layouts, GQA/MQA, causal, windows, softcap, scale, zero-length
// sequences, fp32/bf16/fp16 inputs); hand-computable cases pin the semantics.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <system_error>
#include <vector>

#include "dtype.hpp"
#include "reference/reference.hpp"
#include "test_util.hpp"
#include "validate.hpp"

namespace vflash {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

size_t elem_bytes(DType t) { return t == DType::fp32 ? 4 : 2; }

double decode(DType t, const std::vector<unsigned char>& buf, int64_t i) {
  if (t == DType::fp32) {
    float f;
    std::memcpy(&f, &buf[size_t(i) * 4], 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, &buf[size_t(i) * 2], 2);
  return t == DType::fp16 ? fp16_to_float(h) : bf16_to_float(h);
}

void encode(DType t, std::vector<unsigned char>& buf, int64_t i, float x) {
  if (t == DType::fp32) {
    std::memcpy(&buf[size_t(i) * 4], &x, 4);
    return;
  }
  const uint16_t h = t == DType::fp16 ? float_to_fp16(x) : float_to_bf16(x);
  std::memcpy(&buf[size_t(i) * 2], &h, 2);
}

// One attention problem with its own memory layout.
struct Case {
  bool varlen = true;
  DType dtype = DType::fp32;
  std::vector<int> len_q, len_k;  // per sequence (dense: all equal)
  int extra_q = 0;                // varlen: unused rows after the last sequence
  int heads_q = 1, heads_k = 1, d = 8, dv = 8;
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.f, scale = 1.f;
  bool heads_major = false;  // (heads, rows) order instead of (rows, heads)
  int pad = 0;               // extra elements after each head row / row of heads
};

// A tensor (batch, rows, heads, dim) in the case's layout, poisoned with NaN.
struct Tensor {
  DType dtype;
  int64_t batch_stride = 0, row_stride = 0, head_stride = 0;
  std::vector<unsigned char> bytes;
  std::vector<bool> addressed;  // elements some index tuple maps to
  Tensor(const Case& c, DType t, int batch, int64_t rows, int heads, int dim) : dtype(t) {
    const int64_t padded_dim = dim + c.pad;
    if (c.heads_major) {
      row_stride = padded_dim;
      head_stride = rows * row_stride + c.pad;
      batch_stride = heads * head_stride;
    } else {
      head_stride = padded_dim;
      row_stride = heads * head_stride + c.pad;
      batch_stride = rows * row_stride;
    }
    if (c.varlen) batch_stride = 0;
    const int batches = c.varlen ? 1 : batch;
    // One past the largest addressed element, plus a poisoned tail.
    const int64_t n = (batches - 1) * batch_stride + std::max<int64_t>(rows - 1, 0) * row_stride +
                      (heads - 1) * head_stride + dim + 16;
    bytes.resize(size_t(n) * elem_bytes(t));
    addressed.assign(size_t(n), false);
    for (int64_t i = 0; i < n; ++i) encode(t, bytes, i, NAN);
    for (int b = 0; b < batches; ++b)
      for (int64_t r = 0; r < rows; ++r)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < dim; ++i) addressed[size_t(offset(b, r, h) + i)] = true;
  }
  int64_t offset(int b, int64_t row, int h) const { return b * batch_stride + row * row_stride + h * head_stride; }
  double at(int b, int64_t row, int h, int i) const { return decode(dtype, bytes, offset(b, row, h) + i); }
  void* data() { return bytes.data(); }
};

struct Problem {
  Case c;
  int batch;
  std::vector<int32_t> cu_q, cu_k;
  int64_t rows_q, rows_k;  // rows of the q / k tensors (varlen: totals; dense: per batch)
  Tensor q, k, v, o;
  std::vector<float> lse;
  FwdParams p;

  static int64_t total(const std::vector<int>& lens) {
    int64_t t = 0;
    for (int l : lens) t += l;
    return t;
  }
  explicit Problem(const Case& cs)
      : c(cs),
        batch(int(cs.len_q.size())),
        rows_q(cs.varlen ? total(cs.len_q) + cs.extra_q : cs.len_q[0]),
        rows_k(cs.varlen ? total(cs.len_k) : cs.len_k[0]),
        q(cs, cs.dtype, batch, rows_q, cs.heads_q, cs.d),
        k(cs, cs.dtype, batch, rows_k, cs.heads_k, cs.d),
        v(cs, cs.dtype, batch, rows_k, cs.heads_k, cs.dv),
        o(cs, cs.dtype, batch, rows_q, cs.heads_q, cs.dv) {
    cu_q = {0};
    cu_k = {0};
    for (int b = 0; b < batch; ++b) {
      cu_q.push_back(cu_q.back() + c.len_q[b]);
      cu_k.push_back(cu_k.back() + c.len_k[b]);
    }
    const int64_t lse_rows = c.varlen ? rows_q : batch * rows_q;
    lse.assign(size_t(c.heads_q * lse_rows), NAN);

    p.dtype = c.dtype;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.o = o.data();
    p.lse = lse.data();
    p.q_batch_stride = q.batch_stride;
    p.q_row_stride = q.row_stride;
    p.q_head_stride = q.head_stride;
    p.k_batch_stride = k.batch_stride;
    p.k_row_stride = k.row_stride;
    p.k_head_stride = k.head_stride;
    p.v_batch_stride = v.batch_stride;
    p.v_row_stride = v.row_stride;
    p.v_head_stride = v.head_stride;
    p.o_batch_stride = o.batch_stride;
    p.o_row_stride = o.row_stride;
    p.o_head_stride = o.head_stride;
    if (c.varlen) {
      p.lse_head_stride = rows_q;
      p.cu_seqlens_q = cu_q.data();
      p.cu_seqlens_k = cu_k.data();
      p.total_q = rows_q;
      p.total_k = rows_k;
    } else {
      p.lse_head_stride = rows_q;
      p.lse_batch_stride = c.heads_q * rows_q;
      p.seqlen_q = int32_t(rows_q);
      p.seqlen_k = int32_t(rows_k);
      p.total_q = batch * rows_q;
      p.total_k = batch * rows_k;
    }
    p.batch = batch;
    p.heads_q = c.heads_q;
    p.heads_k = c.heads_k;
    p.head_dim = c.d;
    p.head_dim_v = c.dv;
    p.max_seqlen_q = *std::max_element(c.len_q.begin(), c.len_q.end());
    p.max_seqlen_k = *std::max_element(c.len_k.begin(), c.len_k.end());
    p.softmax_scale = c.scale;
    p.causal = c.causal;
    p.window_left = c.window_left;
    p.window_right = c.causal ? 0 : c.window_right;
    p.softcap = c.softcap;
  }

  void fill(std::mt19937& gen) {
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    for (Tensor* t : {&q, &k, &v})
      for (size_t i = 0; i < t->addressed.size(); ++i)
        if (t->addressed[i]) encode(t->dtype, t->bytes, int64_t(i), u(gen));
  }

  // Row of q / k of sequence b, position r, in tensor coordinates (batch index, row).
  std::pair<int, int64_t> q_row(int b, int r) const { return c.varlen ? std::pair{0, int64_t(cu_q[b]) + r} : std::pair{b, int64_t(r)}; }
  std::pair<int, int64_t> k_row(int b, int r) const { return c.varlen ? std::pair{0, int64_t(cu_k[b]) + r} : std::pair{b, int64_t(r)}; }
  // Index of (sequence b, row r) in reference_attention's (rows, heads, d_v) output.
  int64_t out_row(int b, int r) const { return c.varlen ? cu_q[b] + r : int64_t(b) * rows_q + r; }
  int64_t out_rows() const { return c.varlen ? rows_q : batch * rows_q; }
};

// The naive oracle: (rows, heads_q, d_v) output and (heads_q, rows) lse.
struct Naive {
  std::vector<double> out, lse;
  std::vector<bool> computed;  // rows of a sequence (trailing varlen rows are not)
};

Naive naive_attention(const Problem& pr) {
  const Case& c = pr.c;
  Naive n;
  n.out.assign(size_t(pr.out_rows() * c.heads_q * c.dv), 0.0);
  n.lse.assign(size_t(pr.out_rows() * c.heads_q), 0.0);
  n.computed.assign(size_t(pr.out_rows()), false);
  for (int b = 0; b < pr.batch; ++b) {
    const int lq = c.len_q[b], lk = c.len_k[b];
    // Mask from the documented rule: query i sees key j iff
    // i + lk - lq - left <= j <= i + lk - lq + right (causal: right = 0).
    std::vector<std::vector<bool>> mask(static_cast<size_t>(lq), std::vector<bool>(static_cast<size_t>(lk)));
    for (int i = 0; i < lq; ++i)
      for (int j = 0; j < lk; ++j) {
        const int shift = i + lk - lq;
        bool ok = true;
        if (c.causal && j > shift) ok = false;
        if (c.window_left >= 0 && j < shift - c.window_left) ok = false;
        if (!c.causal && c.window_right >= 0 && j > shift + c.window_right) ok = false;
        mask[i][j] = ok;
      }
    for (int h = 0; h < c.heads_q; ++h) {
      const int hk = h / (c.heads_q / c.heads_k);
      std::vector<std::vector<double>> s(static_cast<size_t>(lq), std::vector<double>(static_cast<size_t>(lk)));
      for (int i = 0; i < lq; ++i)
        for (int j = 0; j < lk; ++j) {
          double dot = 0;
          const auto [qb, qr] = pr.q_row(b, i);
          const auto [kb, kr] = pr.k_row(b, j);
          for (int x = 0; x < c.d; ++x) dot += pr.q.at(qb, qr, h, x) * pr.k.at(kb, kr, hk, x);
          double score = double(c.scale) * dot;
          if (c.softcap > 0) score = c.softcap * std::tanh(score / c.softcap);
          s[i][j] = mask[i][j] ? score : -kInf;
        }
      for (int i = 0; i < lq; ++i) {
        const int64_t row = pr.out_row(b, i);
        n.computed[size_t(row)] = true;
        const double m = lk == 0 ? -kInf : *std::max_element(s[i].begin(), s[i].end());
        double* out = &n.out[size_t((row * c.heads_q + h) * c.dv)];
        if (m == -kInf) {
          n.lse[size_t(h * pr.out_rows() + row)] = -kInf;
          continue;
        }
        double sum = 0;
        for (int j = 0; j < lk; ++j) sum += std::exp(s[i][j] - m);
        for (int j = 0; j < lk; ++j) {
          const double pj = std::exp(s[i][j] - m) / sum;
          const auto [kb, kr] = pr.k_row(b, j);
          for (int x = 0; x < c.dv; ++x) out[x] += pj * pr.v.at(kb, kr, hk, x);
        }
        n.lse[size_t(h * pr.out_rows() + row)] = m + std::log(sum);
      }
    }
  }
  return n;
}

// Relative rounding bound of one conversion to the storage dtype (1 ulp, loose).
double output_tolerance(DType t) { return t == DType::fp32 ? 0x1p-23 : t == DType::fp16 ? 0x1p-10 : 0x1p-7; }

std::string describe(const Case& c) {
  std::string s = std::string(c.varlen ? "varlen" : "dense") + " dtype=" + std::to_string(int(c.dtype)) +
                  " hq=" + std::to_string(c.heads_q) + " hk=" + std::to_string(c.heads_k) +
                  " d=" + std::to_string(c.d) + " dv=" + std::to_string(c.dv) + " causal=" + std::to_string(c.causal) +
                  " window=(" + std::to_string(c.window_left) + "," + std::to_string(c.window_right) +
                  ") softcap=" + std::to_string(c.softcap) + " scale=" + std::to_string(c.scale) +
                  " heads_major=" + std::to_string(c.heads_major) + " pad=" + std::to_string(c.pad) + " lens=";
  for (size_t b = 0; b < c.len_q.size(); ++b) s += std::to_string(c.len_q[b]) + "/" + std::to_string(c.len_k[b]) + " ";
  return s;
}

// reference_attention against the naive oracle (float64 both: tight), then
// cpu_forward's stored output and lse against it (one rounding), and that
// cpu_forward wrote exactly the addressed rows of sequences.
void check_problem(Problem& pr) {
  const Case& c = pr.c;
  SCOPED_TRACE(describe(c));
  const Naive n = naive_attention(pr);
  const int64_t rows = pr.out_rows();

  std::vector<double> out(size_t(rows * c.heads_q * c.dv), NAN), lse(size_t(rows * c.heads_q), NAN);
  reference_attention(pr.p, out, lse);
  double max_abs = 1e-30;
  for (double x : n.out) max_abs = std::max(max_abs, std::fabs(x));
  for (int64_t row = 0; row < rows; ++row) {
    if (!n.computed[size_t(row)]) continue;
    for (int h = 0; h < c.heads_q; ++h) {
      for (int x = 0; x < c.dv; ++x) {
        const size_t i = size_t((row * c.heads_q + h) * c.dv + x);
        ASSERT_NEAR(out[i], n.out[i], 1e-12 * max_abs) << "row " << row << " head " << h << " col " << x;
      }
      const size_t l = size_t(h * rows + row);
      if (n.lse[l] == -kInf) {
        ASSERT_EQ(lse[l], -kInf) << "row " << row << " head " << h;
      } else {
        ASSERT_NEAR(lse[l], n.lse[l], 1e-12 * std::max(1.0, std::fabs(n.lse[l]))) << "row " << row << " head " << h;
      }
    }
  }

  // The low-precision reference: off the exact one by at most P's relative
  // rounding times max |v| (inputs lie in [-2, 2]) in 16-bit dtypes, equal for fp32.
  std::vector<double> low(out.size(), NAN);
  reference_attention(pr.p, low, {}, Precision::probabilities_rounded);
  const double p_rounding = c.dtype == DType::fp32 ? 0 : c.dtype == DType::fp16 ? 0x1p-11 : 0x1p-8;
  for (int64_t row = 0; row < rows; ++row) {
    if (!n.computed[size_t(row)]) continue;
    for (int h = 0; h < c.heads_q; ++h)
      for (int x = 0; x < c.dv; ++x) {
        const size_t i = size_t((row * c.heads_q + h) * c.dv + x);
        ASSERT_NEAR(low[i], out[i], 2 * p_rounding + 1e-12 * max_abs)
            << "low precision, row " << row << " head " << h << " col " << x;
      }
  }
  if (c.dtype != DType::fp32) {
    // Rounding at a scale 2^-u: a whole binade (u = 1) rounds as u = 0 (a
    // power-of-two scale is exact; only fp16's subnormal weights, below 2^-14,
    // round otherwise); u = 0.5 rounds some weights otherwise.
    std::vector<double> whole(out.size(), NAN), half(out.size(), NAN);
    reference_attention(pr.p, whole, {}, Precision::probabilities_rounded, 1.0);
    reference_attention(pr.p, half, {}, Precision::probabilities_rounded, 0.5);
    bool half_differs = false, rounding_shows = false;
    for (int64_t row = 0; row < rows; ++row) {
      if (!n.computed[size_t(row)]) continue;
      for (int h = 0; h < c.heads_q; ++h)
        for (int x = 0; x < c.dv; ++x) {
          const size_t i = size_t((row * c.heads_q + h) * c.dv + x);
          ASSERT_NEAR(whole[i], low[i], 0x1p-20 * max_abs) << "offset 1, row " << row << " head " << h << " col " << x;
          ASSERT_NEAR(half[i], out[i], 2 * p_rounding + 1e-12 * max_abs)
              << "offset 0.5, row " << row << " head " << h << " col " << x;
          half_differs |= half[i] != low[i];
          rounding_shows |= low[i] != out[i];
        }
    }
    // Where rounding at offset 0 moved an output, rounding at another scale moves it differently.
    EXPECT_TRUE(half_differs || !rounding_shows) << "offset 0.5 rounded every weight as offset 0";
  }

  cpu_forward(pr.p);
  const double tol = output_tolerance(c.dtype);
  for (int b = 0; b < pr.batch; ++b)
    for (int r = 0; r < c.len_q[b]; ++r)
      for (int h = 0; h < c.heads_q; ++h) {
        const auto [ob, orow] = pr.q_row(b, r);
        const int64_t row = pr.out_row(b, r);
        for (int x = 0; x < c.dv; ++x) {
          const double want = n.out[size_t((row * c.heads_q + h) * c.dv + x)];
          const double got = pr.o.at(ob, orow, h, x);
          ASSERT_FALSE(std::isnan(got)) << "output not written: seq " << b << " row " << r << " head " << h;
          ASSERT_NEAR(got, want, tol * std::fabs(want) + 1e-7) << "seq " << b << " row " << r << " head " << h;
        }
        const int64_t lse_index = ob * pr.p.lse_batch_stride + h * pr.p.lse_head_stride + orow;
        const double want_lse = n.lse[size_t(h * rows + row)];
        const float got_lse = pr.lse[size_t(lse_index)];
        if (want_lse == -kInf) {
          ASSERT_EQ(got_lse, -INFINITY);
        } else {
          ASSERT_NEAR(got_lse, want_lse, 1e-6 * std::max(1.0, std::fabs(want_lse)));
        }
      }
  // Nothing else written: padding and trailing rows keep their NaN poison.
  int64_t written = 0;
  for (size_t i = 0; i < pr.o.addressed.size(); ++i)
    if (!std::isnan(decode(c.dtype, pr.o.bytes, int64_t(i)))) ++written;
  int64_t rows_of_sequences = 0;
  for (int l : c.len_q) rows_of_sequences += l;
  EXPECT_EQ(written, rows_of_sequences * c.heads_q * c.dv);
  int64_t lse_written = 0;
  for (float x : pr.lse) lse_written += !std::isnan(x);
  EXPECT_EQ(lse_written, rows_of_sequences * c.heads_q);
}

Case random_case(std::mt19937& gen, bool varlen, DType dtype) {
  const auto pick = [&](std::initializer_list<int> xs) {
    return *(xs.begin() + std::uniform_int_distribution<size_t>(0, xs.size() - 1)(gen));
  };
  Case c;
  c.varlen = varlen;
  c.dtype = dtype;
  const int batch = pick({1, 2, 3});
  const int lq_dense = pick({0, 1, 5, 9}), lk_dense = pick({0, 1, 4, 9});
  for (int b = 0; b < batch; ++b) {
    c.len_q.push_back(varlen ? pick({0, 1, 2, 7, 12}) : lq_dense);
    c.len_k.push_back(varlen ? pick({0, 1, 3, 7, 13}) : lk_dense);
  }
  c.extra_q = varlen ? pick({0, 0, 2}) : 0;
  const int group = pick({1, 2, 3});
  c.heads_k = pick({1, 2});
  c.heads_q = c.heads_k * group;
  c.d = pick({8, 16, 24});
  c.dv = pick({8, 16});
  c.causal = pick({0, 1});
  c.window_left = pick({-1, -1, 0, 2, 5});
  c.window_right = pick({-1, -1, 0, 1, 4});
  c.softcap = float(pick({0, 0, 3}));
  c.scale = std::uniform_real_distribution<float>(0.1f, 1.0f)(gen);
  c.heads_major = pick({0, 1});
  c.pad = pick({0, 8});
  return c;
}

class ReferenceRandom : public ::testing::TestWithParam<std::tuple<bool, DType>> {};

TEST_P(ReferenceRandom, MatchesNaiveSoftmaxAttention) {
  const auto [varlen, dtype] = GetParam();
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 gen(seed);
  for (int trial = 0; trial < 150; ++trial) {
    Problem pr(random_case(gen, varlen, dtype));
    pr.fill(gen);
    check_problem(pr);
    if (HasFatalFailure()) return;
  }
}

std::string layout_and_dtype_name(const ::testing::TestParamInfo<std::tuple<bool, DType>>& info) {
  static const char* const kDtypeNames[] = {"fp16", "bf16", "fp32"};
  return std::string(std::get<0>(info.param) ? "varlen_" : "dense_") + kDtypeNames[int(std::get<1>(info.param))];
}

INSTANTIATE_TEST_SUITE_P(AllLayoutsAndDtypes, ReferenceRandom,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values(DType::fp32, DType::bf16, DType::fp16)),
                         layout_and_dtype_name);

// Every feature combination at least once on a fixed shape.
TEST(Reference, EveryFeatureCombination) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 gen(seed);
  for (int causal = 0; causal < 2; ++causal)
    for (int wl : {-1, 0, 3})
      for (int wr : {-1, 0, 2})
        for (float softcap : {0.f, 2.f})
          for (int hk : {1, 2, 4}) {
            Case c;
            c.len_q = {6, 0, 9, 3};
            c.len_k = {9, 4, 5, 0};
            c.extra_q = 1;
            c.heads_q = 4;
            c.heads_k = hk;
            c.d = 16;
            c.dv = 24;
            c.causal = causal;
            c.window_left = wl;
            c.window_right = wr;
            c.softcap = softcap;
            c.scale = 0.3f;
            Problem pr(c);
            pr.fill(gen);
            check_problem(pr);
            if (HasFatalFailure()) return;
          }
}

// Sequences longer than the reference's 64-row work chunks (and not multiples
// of its 4-row groups), with masks whose visible key ranges move across chunks.
TEST(Reference, LongSequencesSpanningWorkChunks) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 gen(seed);
  for (bool varlen : {true, false})
    for (int causal = 0; causal < 2; ++causal)
      for (auto [wl, wr] : {std::pair{-1, -1}, std::pair{17, 3}, std::pair{70, -1}, std::pair{0, 65}}) {
        Case c;
        c.varlen = varlen;
        c.dtype = DType::bf16;
        c.len_q = varlen ? std::vector<int>{131, 0, 66} : std::vector<int>{131, 131};
        c.len_k = varlen ? std::vector<int>{97, 5, 150} : std::vector<int>{150, 150};
        c.heads_q = 2;
        c.heads_k = 1;
        c.d = 16;
        c.dv = 8;
        c.causal = causal;
        c.window_left = wl;
        c.window_right = wr;
        c.scale = 0.4f;
        Problem pr(c);
        pr.fill(gen);
        check_problem(pr);
        if (HasFatalFailure()) return;
      }
}

// The reference starts a thread pool per call: a thread that cannot start
// (std::system_error from std::thread) must cost parallelism, not the process
// (std::terminate) nor a chunk of the result.
std::atomic<unsigned> pool_starts_tried{0};

void refuse_every_start(unsigned) {
  ++pool_starts_tried;
  throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "thread");
}

void refuse_after_two(unsigned index) {
  ++pool_starts_tried;
  if (index > 2) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again), "thread");
}

TEST(Reference, ThreadsThatFailToStartLeaveTheResultWhole) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 gen(seed);
  Case c;
  c.len_q = {131, 7, 200};  // 7 chunks per head: work for every thread
  c.len_k = {90, 7, 211};
  c.heads_q = 3;
  c.heads_k = 1;
  c.causal = true;
  for (auto hook : {&refuse_every_start, &refuse_after_two}) {
    pool_starts_tried = 0;
    set_reference_pool_hooks({8, hook});
    Problem pr(c);
    pr.fill(gen);
    check_problem(pr);  // reference_attention and cpu_forward, each with the failing pool
    set_reference_pool_hooks({});
    if (HasFatalFailure()) return;
    EXPECT_GE(pool_starts_tried.load(), 2u);  // the hook ran: threads were asked for
  }
}

// Small hand-computable problems: fp32, one head, d = d_v = 8.
struct Hand {
  Problem pr;
  explicit Hand(Case c) : pr(c) {}
  void set(Tensor& t, int64_t row, std::vector<float> values) {
    for (int i = 0; i < int(values.size()); ++i) encode(DType::fp32, t.bytes, t.offset(0, row, 0) + i, values[i]);
  }
  void zero_rest() {
    for (Tensor* t : {&pr.q, &pr.k, &pr.v})
      for (size_t i = 0; i < t->addressed.size(); ++i)
        if (t->addressed[i] && std::isnan(decode(DType::fp32, t->bytes, int64_t(i))))
          encode(DType::fp32, t->bytes, int64_t(i), 0.f);
  }
  double out(int64_t row, int x) { return pr.o.at(0, row, 0, x); }
};

Case hand_case(int lq, int lk) {
  Case c;
  c.len_q = {lq};
  c.len_k = {lk};
  return c;
}

TEST(ReferenceHand, OneKeyGivesItsValue) {
  Hand h(hand_case(2, 1));
  h.pr.p.softmax_scale = 0.5f;
  h.set(h.pr.q, 0, {1, 2, 0, 0, 0, 0, 0, 0});
  h.set(h.pr.q, 1, {-3, 0, 0, 0, 0, 0, 0, 1});
  h.set(h.pr.k, 0, {2, 1, 0, 0, 0, 0, 0, 4});
  h.set(h.pr.v, 0, {1, -2, 3, -4, 5, -6, 7, -8});
  h.zero_rest();
  cpu_forward(h.pr.p);
  for (int r = 0; r < 2; ++r)
    for (int x = 0; x < 8; ++x) EXPECT_EQ(h.out(r, x), (x % 2 ? -1 : 1) * (x + 1)) << r << "," << x;
  EXPECT_FLOAT_EQ(h.pr.lse[0], 0.5f * (2 + 2));   // scale * q.k
  EXPECT_FLOAT_EQ(h.pr.lse[1], 0.5f * (-6 + 4));
}

TEST(ReferenceHand, EqualScoresAverageTheValues) {
  Hand h(hand_case(1, 2));
  h.set(h.pr.v, 0, {2, 4, 6, 8, 0, 0, 0, 0});
  h.set(h.pr.v, 1, {4, 0, 2, -8, 0, 0, 0, 1});
  h.zero_rest();  // q = 0: all scores 0
  cpu_forward(h.pr.p);
  const double want[8] = {3, 2, 4, 0, 0, 0, 0, 0.5};
  for (int x = 0; x < 8; ++x) EXPECT_DOUBLE_EQ(h.out(0, x), want[x]);
  EXPECT_FLOAT_EQ(h.pr.lse[0], float(std::log(2.0)));
}

TEST(ReferenceHand, CausalIsBottomRightAligned) {
  // lq = 3, lk = 2: row 0 sees no key, row 1 sees key 0, row 2 sees both.
  Case c = hand_case(3, 2);
  c.causal = true;
  Hand h(c);
  h.pr.p.window_right = 0;
  h.set(h.pr.v, 0, {1, 0, 0, 0, 0, 0, 0, 0});
  h.set(h.pr.v, 1, {0, 1, 0, 0, 0, 0, 0, 0});
  h.zero_rest();
  cpu_forward(h.pr.p);
  for (int x = 0; x < 8; ++x) EXPECT_EQ(h.out(0, x), 0.0);
  EXPECT_EQ(h.pr.lse[0], -INFINITY);
  EXPECT_EQ(h.out(1, 0), 1.0);
  EXPECT_EQ(h.out(1, 1), 0.0);
  EXPECT_FLOAT_EQ(h.pr.lse[1], 0.f);
  EXPECT_DOUBLE_EQ(h.out(2, 0), 0.5);
  EXPECT_DOUBLE_EQ(h.out(2, 1), 0.5);
}

TEST(ReferenceHand, ZeroWidthWindowSeesOnlyTheDiagonal) {
  Case c = hand_case(3, 3);
  c.window_left = c.window_right = 0;
  Hand h(c);
  for (int j = 0; j < 3; ++j) h.set(h.pr.v, j, {float(10 * j + 1), 0, 0, 0, 0, 0, 0, 0});
  h.zero_rest();
  cpu_forward(h.pr.p);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(h.out(r, 0), 10 * r + 1);
}

TEST(ReferenceHand, SoftcapBoundsTheScore) {
  Hand h(hand_case(1, 1));
  h.pr.p.softcap = 2.f;
  h.set(h.pr.q, 0, {10, 0, 0, 0, 0, 0, 0, 0});
  h.set(h.pr.k, 0, {10, 0, 0, 0, 0, 0, 0, 0});
  h.zero_rest();
  cpu_forward(h.pr.p);
  EXPECT_FLOAT_EQ(h.pr.lse[0], float(2.0 * std::tanh(100.0 / 2.0)));
}

TEST(ReferenceHand, NoKeysGivesZerosAndMinusInfinity) {
  Hand h(hand_case(2, 0));
  h.zero_rest();
  cpu_forward(h.pr.p);
  for (int r = 0; r < 2; ++r) {
    for (int x = 0; x < 8; ++x) EXPECT_EQ(h.out(r, x), 0.0);
    EXPECT_EQ(h.pr.lse[r], -INFINITY);
  }
}

// The public path: validate_varlen builds the params cpu_forward consumes.
TEST(Reference, ThroughValidation) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 gen(seed);
  Case c;
  c.dtype = DType::bf16;
  c.len_q = {5, 0, 17};
  c.len_k = {7, 3, 17};
  c.heads_q = 6;
  c.heads_k = 2;
  c.d = 32;
  c.dv = 16;
  c.causal = true;
  c.window_left = 4;
  c.pad = 8;
  c.scale = float(1.0 / std::sqrt(32.0));
  Problem pr(c);
  pr.fill(gen);
  VarlenArgs a;
  const auto tensor = [](Tensor& t, int64_t rows, int heads, int dim) {
    return testutil::strided_tensor(t.data(), VFLASH_DTYPE_BF16, VFLASH_DEVICE_CPU, rows, heads, dim, t.row_stride,
                                    t.head_stride);
  };
  a.q = tensor(pr.q, pr.rows_q, c.heads_q, c.d);
  a.k = tensor(pr.k, pr.rows_k, c.heads_k, c.d);
  a.v = tensor(pr.v, pr.rows_k, c.heads_k, c.dv);
  a.out = tensor(pr.o, pr.rows_q, c.heads_q, c.dv);
  a.lse = vflash_tensor{pr.lse.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, 2, {c.heads_q, pr.rows_q}, {pr.rows_q, 1}};
  a.cu_seqlens_q = vflash_tensor{pr.cu_q.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, 1, {4}, {1}};
  a.cu_seqlens_k = vflash_tensor{pr.cu_k.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, 1, {4}, {1}};
  a.max_seqlen_q = 17;
  a.max_seqlen_k = 17;
  a.causal = 1;
  a.window_left = 4;
  pr.p = validate_varlen(a);
  check_problem(pr);
}

}  // namespace
}  // namespace vflash
