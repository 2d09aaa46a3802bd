// GPU attention suite: every case runs the public C++ API on device tensors and
// compares against the float64 CPU reference on fresh random inputs, with the
// outputs poisoned (NaN) beforehand.
//
// The suite validates whichever kernel dispatch picks, or the one forced with
// VFLASH_FORCE_KERNEL=<name>; cases that kernel does not serve are reported as
// SKIPPED with the dispatcher's reason. Without a CUDA device every case skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gpu_test_util.hpp"
#include "reference/reference.hpp"
#include "validate.hpp"
#include "vflash/vflash.hpp"

namespace vflash {
namespace {

using gputest::CudaStream;
using gputest::DeviceBuffer;

struct Case {
  std::string name;
  DType dtype = DType::bf16;
  int d = 64, dv = 64;
  int heads_q = 2, heads_k = 2;
  // (len_q, len_k) per sequence. Dense cases repeat one pair `batch` times.
  std::vector<std::pair<int, int>> seqs;
  bool dense = false;
  bool causal = false;
  int window_left = -1, window_right = -1;
  float softcap = 0.f;
  float scale = 0.f;  // 0: the API default 1/sqrt(d)
  bool lse = false;
  bool padded_strides = false;  // token and head strides larger than the packed ones
  float amplitude = 2.f;        // inputs uniform in [-amplitude, amplitude]
  // Every element within output_tolerance of its row's max |ref|. Random
  // cases, tiny d_v included (where a row's max |ref| says little about P's
  // rounding), are held to the low-precision reference alone.
  bool fixed_tolerance = true;
  // Varlen: rows of q and out past the last sequence (cu_seqlens_q[-1] <
  // total_q), and whether the call asks for them to be written as rows
  // without keys (else they must stay untouched).
  int rows_past_end = 0;
  bool zero_rows_past_end = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// Storage of one (batch, rows, heads, dim) tensor; varlen tensors have batch 1
// and rows = total. Element (row, h, c) of the reference's row numbering
// (varlen: packed row; dense: b * rows + r) lives at offset(row, h) + c.
struct Layout {
  int batch = 1;
  int64_t rows = 0;
  int heads = 0, dim = 0;
  int64_t head_stride = 0, row_stride = 0, batch_stride = 0;

  Layout(int batch_, int64_t rows_, int heads_, int dim_, bool padded)
      : batch(batch_), rows(rows_), heads(heads_), dim(dim_) {
    // Padding keeps 16-byte alignment (multiples of 8 elements).
    head_stride = dim + (padded ? 8 : 0);
    row_stride = heads * head_stride + (padded ? 24 : 0);
    batch_stride = rows * row_stride;
  }
  size_t elements() const { return size_t(batch * batch_stride); }
  int64_t offset(int64_t ref_row, int h) const {
    return rows == 0 ? 0 : (ref_row / rows) * batch_stride + (ref_row % rows) * row_stride + h * head_stride;
  }
  Tensor tensor(void* data, vflash_dtype dtype, int device, bool dense) const {
    Tensor t{};
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    if (dense) {
      t.ndim = 4;
      const int64_t shape[4] = {batch, rows, heads, dim}, stride[4] = {batch_stride, row_stride, head_stride, 1};
      std::copy(shape, shape + 4, t.shape);
      std::copy(stride, stride + 4, t.stride);
    } else {
      t.ndim = 3;
      const int64_t shape[3] = {rows, heads, dim}, stride[3] = {row_stride, head_stride, 1};
      std::copy(shape, shape + 3, t.shape);
      std::copy(stride, stride + 3, t.stride);
    }
    return t;
  }
};

// Fields the varlen and dense argument blocks share.
template <class Args>
void set_common(Args& a, const Case& c, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, void* stream) {
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lse = lse;
  a.softmax_scale = c.scale;
  a.causal = c.causal ? 1 : 0;
  a.window_left = c.window_left;
  a.window_right = c.window_right;
  a.softcap = c.softcap;
  a.stream = stream;
}

// Runs case `c` on the device and checks it against the float64 reference;
// `rng` draws the inputs (and the sequence order).
void run_case(const Case& c, std::mt19937_64& rng) {

  // Sequence order is shuffled each run, so long and short sequences land in
  // different places of the packed tensors.
  std::vector<std::pair<int, int>> seqs = c.seqs;
  if (!c.dense) std::shuffle(seqs.begin(), seqs.end(), rng);
  const int batch = int(seqs.size());
  std::vector<int32_t> cu_q{0}, cu_k{0};
  int max_q = 0, max_k = 0;
  for (auto [lq, lk] : seqs) {
    cu_q.push_back(cu_q.back() + lq);
    cu_k.push_back(cu_k.back() + lk);
    max_q = std::max(max_q, lq);
    max_k = std::max(max_k, lk);
  }
  const int tensor_batch = c.dense ? batch : 1;
  const int64_t rows_q = c.dense ? max_q : cu_q.back() + c.rows_past_end;
  const int64_t rows_k = c.dense ? max_k : cu_k.back();
  const int64_t ref_rows = tensor_batch * rows_q;
  const Layout lq(tensor_batch, rows_q, c.heads_q, c.d, c.padded_strides);
  const Layout lk(tensor_batch, rows_k, c.heads_k, c.d, c.padded_strides);
  const Layout lv(tensor_batch, rows_k, c.heads_k, c.dv, c.padded_strides);
  const Layout lo(tensor_batch, rows_q, c.heads_q, c.dv, c.padded_strides);

  // Padding elements get random values too: a kernel reading them would show.
  const auto q = gputest::random_elements(c.dtype, lq.elements(), c.amplitude, rng);
  const auto k = gputest::random_elements(c.dtype, lk.elements(), c.amplitude, rng);
  const auto v = gputest::random_elements(c.dtype, lv.elements(), c.amplitude, rng);
  const size_t lse_count = size_t(ref_rows) * c.heads_q;

  // --- device run
  const int dev = 0;
  VFLASH_CHECK_CUDA(cudaSetDevice(dev));
  DeviceBuffer dq(q), dk(k), dv(v), dcu_q(cu_q), dcu_k(cu_k);
  DeviceBuffer dout(lo.elements() * sizeof(uint16_t));
  DeviceBuffer dlse(c.lse ? lse_count * sizeof(float) : 0);
  dout.poison();
  dlse.poison();
  CudaStream stream;
  const vflash_dtype dt = gputest::api_dtype(c.dtype);
  Tensor lse_dev{};
  if (c.lse) {
    lse_dev = c.dense ? make_tensor(dlse.data(), VFLASH_DTYPE_FP32, dev, {batch, c.heads_q, max_q})
                      : make_tensor(dlse.data(), VFLASH_DTYPE_FP32, dev, {c.heads_q, rows_q});
  }

  VarlenArgs varlen;
  DenseArgs dense;
  std::string kernel = "(dense: chosen by dispatch)";
  DeviceBuffer workspace;
  // The caller provides the workspace the call asks for; it arrives poisoned,
  // as a reused allocation would.
  auto provide_workspace = [&](auto& args, size_t bytes) {
    workspace = DeviceBuffer(bytes);
    workspace.poison();
    args.workspace = bytes ? workspace.data() : nullptr;
    args.workspace_bytes = bytes;
  };
  try {
    if (c.dense) {
      set_common(dense, c, lq.tensor(dq.data(), dt, dev, true), lk.tensor(dk.data(), dt, dev, true),
                 lv.tensor(dv.data(), dt, dev, true), lo.tensor(dout.data(), dt, dev, true), lse_dev, stream.get());
      provide_workspace(dense, dense_workspace_size(dense));
      dense_fwd(dense);
    } else {
      set_common(varlen, c, lq.tensor(dq.data(), dt, dev, false), lk.tensor(dk.data(), dt, dev, false),
                 lv.tensor(dv.data(), dt, dev, false), lo.tensor(dout.data(), dt, dev, false), lse_dev,
                 stream.get());
      varlen.cu_seqlens_q = make_tensor(dcu_q.data(), VFLASH_DTYPE_INT32, dev, {batch + 1});
      varlen.cu_seqlens_k = make_tensor(dcu_k.data(), VFLASH_DTYPE_INT32, dev, {batch + 1});
      varlen.max_seqlen_q = max_q;
      varlen.max_seqlen_k = max_k;
      varlen.zero_rows_past_end = c.zero_rows_past_end ? 1 : 0;
      kernel = varlen_kernel_name(varlen);
      provide_workspace(varlen, varlen_workspace_size(varlen));
      varlen_fwd(varlen);
    }
  } catch (const Error& e) {
    // Only a forced kernel may decline a case: without forcing, the SIMT
    // fallback serves every valid call, so "unsupported" is a failure.
    if (e.status() == Status::unsupported && gputest::forced_kernel_env())
      GTEST_SKIP() << "not served by the forced kernel " << *gputest::forced_kernel_env() << ": " << e.what();
    throw;
  }
  SCOPED_TRACE("kernel " + kernel);
  ::testing::Test::RecordProperty("kernel", kernel);
  if (const auto forced = gputest::forced_kernel_env(); forced && !c.dense) {
    ASSERT_EQ(kernel, *forced) << "dispatch did not run the forced kernel";
  }
  stream.synchronize();
  const auto out = dout.download<uint16_t>();
  const auto lse = c.lse ? dlse.download<float>() : std::vector<float>{};

  // --- reference on host copies of the same inputs
  std::vector<uint16_t> host_out(lo.elements());
  std::vector<float> host_lse(c.lse ? lse_count : 0);
  Tensor lse_host{};
  if (c.lse) {
    lse_host = c.dense ? make_tensor(host_lse.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {batch, c.heads_q, max_q})
                       : make_tensor(host_lse.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {c.heads_q, rows_q});
  }
  auto host = [&](const Layout& l, const std::vector<uint16_t>& data) {
    return l.tensor(const_cast<uint16_t*>(data.data()), dt, VFLASH_DEVICE_CPU, c.dense);
  };
  FwdParams params;
  if (c.dense) {
    DenseArgs a;
    set_common(a, c, host(lq, q), host(lk, k), host(lv, v), host(lo, host_out), lse_host, nullptr);
    params = validate_dense(a);
  } else {
    VarlenArgs a;
    set_common(a, c, host(lq, q), host(lk, k), host(lv, v), host(lo, host_out), lse_host, nullptr);
    a.cu_seqlens_q = make_tensor(cu_q.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, {batch + 1});
    a.cu_seqlens_k = make_tensor(cu_k.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, {batch + 1});
    a.max_seqlen_q = max_q;
    a.max_seqlen_k = max_k;
    params = validate_varlen(a);
  }
  std::vector<double> ref_out(size_t(ref_rows) * c.heads_q * c.dv);
  std::vector<double> ref_lse(c.lse ? lse_count : 0);
  reference_attention(params, ref_out, ref_lse);
  // Rows past the last sequence: expected as rows without keys when the call
  // asks for them to be written, else left out of the comparison (and held
  // to stay poisoned below).
  const int64_t checked_rows = c.dense || c.zero_rows_past_end ? ref_rows : cu_q.back();
  for (int64_t row = cu_q.back(); !c.dense && row < ref_rows && c.lse; ++row)
    for (int h = 0; h < c.heads_q; ++h) ref_lse[size_t(h * ref_rows + row)] = -INFINITY;
  if (checked_rows < ref_rows && c.lse) {
    std::vector<double> kept(size_t(checked_rows) * c.heads_q);
    for (int h = 0; h < c.heads_q; ++h)
      std::copy_n(&ref_lse[size_t(h * ref_rows)], checked_rows, &kept[size_t(h * checked_rows)]);
    ref_lse = std::move(kept);
  }
  // The low-precision references: P rounded as tensor cores take it, at
  // scales 2^-u (u in [0, 1)) relative to the row maximum, the output rounded
  // to the dtype. Their largest error is what a correct kernel may reach: one
  // rounding scale alone can be a lucky draw (a kernel's running maximum sets
  // its own scale).
  double low_err = 0;
  std::vector<double> low_out(ref_out.size());
  for (const double offset : {0.0, 0.25, 0.5, 0.75}) {
    reference_attention(params, low_out, {}, Precision::probabilities_rounded, offset);
    for (double& x : low_out) x = gputest::element_to_float(c.dtype, gputest::float_to_element(c.dtype, float(x)));
    low_err = std::max(low_err, gputest::max_relative_error(
                                    [&](int64_t row, int h, int col) {
                                      return low_out[size_t((row * c.heads_q + h) * c.dv + col)];
                                    },
                                    ref_out, checked_rows, c.heads_q, c.dv));
  }

  // --- compare: every element within the fixed bound, and the largest error
  // within twice the low-precision reference's (plus rounding headroom).
  const auto got = [&](int64_t row, int h, int col) {
    return gputest::element_to_float(c.dtype, out[lo.offset(row, h) + col]);
  };
  if (c.fixed_tolerance)
    EXPECT_TRUE(gputest::compare_output(got, ref_out, checked_rows, c.heads_q, c.dv, gputest::output_tolerance(c.dtype)));
  const double err = gputest::max_relative_error(got, ref_out, checked_rows, c.heads_q, c.dv);
  const double allowed = 2 * low_err + gputest::output_tolerance(c.dtype) / 8;
  ::testing::Test::RecordProperty("error_vs_low_precision", std::to_string(err) + " / " + std::to_string(low_err));
  EXPECT_LE(err, allowed) << "largest error (of the row's max |ref|) " << err
                          << " against the low-precision reference's " << low_err;
  if (c.lse) {
    // LSE is (batch, heads, rows) for dense, (heads, total) for varlen: the same formula with batch 1.
    EXPECT_TRUE(gputest::compare_lse(
        [&](int64_t row, int h) {
          return double(lse[size_t((row / rows_q) * c.heads_q * rows_q + h * rows_q + row % rows_q)]);
        },
        ref_lse, checked_rows, c.heads_q));
  }
  // Nothing outside the logical output (stride padding) may be written.
  EXPECT_EQ(gputest::stray_writes(out, checked_rows, c.heads_q, c.dv,
                                  [&](int64_t row, int h) { return lo.offset(row, h); }),
            0)
      << "elements written outside the output's logical extent";
}

class GpuAttention : public ::testing::TestWithParam<Case> {};

TEST_P(GpuAttention, MatchesCpuReference) {
  if (!gputest::cuda_device_present()) GTEST_SKIP() << "no CUDA device";
  gputest::run_with_fresh_seed([&](std::mt19937_64& rng) { run_case(GetParam(), rng); });
}

// Lengths that stress tile edges (63/64/65), single tokens, empty sequences
// on either side, and lq != lk in both directions (bottom-right alignment;
// causal rows with no visible key).
const std::vector<std::pair<int, int>> kMixedLengths = {{0, 0},   {1, 1},     {63, 63}, {64, 64}, {65, 65},
                                                        {1, 70},  {130, 97},  {200, 257}, {3, 0}, {0, 5}};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const std::pair<DType, const char*> dtypes[] = {{DType::fp16, "fp16"}, {DType::bf16, "bf16"}};
  enum Mask { kNone, kCausal, kWindow };
  const std::pair<Mask, const char*> masks[] = {{kNone, "full"}, {kCausal, "causal"}, {kWindow, "window"}};
  auto apply_mask = [](Case& c, Mask m) {
    c.causal = m == kCausal;
    if (m == kWindow) c.window_left = 37, c.window_right = 11;
    c.lse = m != kNone;  // full-attention cases exercise the no-LSE path
  };

  // The head-dim x dtype x mask matrix.
  for (int d : {32, 64, 72, 80, 96, 128, 192, 256})
    for (auto [dt, dt_name] : dtypes)
      for (auto [m, m_name] : masks) {
        Case c{.name = "d" + std::to_string(d) + "_" + dt_name + "_" + m_name, .dtype = dt, .d = d, .dv = d};
        c.seqs = kMixedLengths;
        apply_mask(c, m);
        cases.push_back(c);
      }

  auto add = [&](Case c) {
    if (c.seqs.empty()) c.seqs = kMixedLengths;
    cases.push_back(std::move(c));
  };
  for (auto [dt, dt_name] : dtypes) {
    const std::string sfx = std::string("_") + dt_name;
    add({.name = "gqa4_d128_causal" + sfx, .dtype = dt, .d = 128, .dv = 128, .heads_q = 8, .heads_k = 2,
         .causal = true, .lse = true});
    add({.name = "mqa_d64_window" + sfx, .dtype = dt, .heads_q = 6, .heads_k = 1, .window_left = 16,
         .window_right = 0, .lse = true});
    add({.name = "mqa_d96_full" + sfx, .dtype = dt, .d = 96, .dv = 96, .heads_q = 3, .heads_k = 1});
    add({.name = "softcap_d128_full" + sfx, .dtype = dt, .d = 128, .dv = 128, .softcap = 8.f, .lse = true,
         .amplitude = 4.f});
    add({.name = "softcap_d80_causal" + sfx, .dtype = dt, .d = 80, .dv = 80, .causal = true, .softcap = 5.f,
         .lse = true, .amplitude = 4.f});
    add({.name = "dv_192_128_causal" + sfx, .dtype = dt, .d = 192, .dv = 128, .causal = true, .lse = true});
    add({.name = "dense_d64_causal" + sfx, .dtype = dt, .seqs = {{100, 77}, {100, 77}, {100, 77}}, .dense = true,
         .causal = true, .lse = true});
  }
  add({.name = "dv_64_128_full_bf16", .d = 64, .dv = 128, .lse = true});
  add({.name = "dv_256_64_window_fp16", .dtype = DType::fp16, .d = 256, .dv = 64, .window_left = 50,
       .window_right = 50, .lse = true});
  add({.name = "window_left_only_d64_fp16", .dtype = DType::fp16, .window_left = 20, .lse = true});
  add({.name = "window_right_only_d64_bf16", .window_right = 5, .lse = true});
  add({.name = "causal_window_gqa_d80_bf16", .d = 80, .dv = 80, .heads_q = 4, .heads_k = 2, .causal = true,
       .window_left = 40, .lse = true});
  add({.name = "explicit_scale_d64_fp16", .dtype = DType::fp16, .scale = 0.3f, .lse = true});
  add({.name = "peaky_scores_d64_bf16", .causal = true, .lse = true, .amplitude = 6.f});
  add({.name = "small_dims_d8_bf16", .d = 8, .dv = 8, .causal = true, .lse = true});
  add({.name = "odd_dims_d40_dv24_fp16", .dtype = DType::fp16, .d = 40, .dv = 24, .lse = true});
  add({.name = "padded_strides_d64_fp16_causal", .dtype = DType::fp16, .heads_q = 4, .heads_k = 2,
       .causal = true, .lse = true, .padded_strides = true});
  add({.name = "dense_d128_full_fp16", .dtype = DType::fp16, .d = 128, .dv = 128, .seqs = {{65, 130}, {65, 130}},
       .dense = true});
  add({.name = "dense_d256_window_padded_bf16", .d = 256, .dv = 256, .seqs = {{96, 96}, {96, 96}}, .dense = true,
       .window_left = 20, .window_right = 3, .lse = true, .padded_strides = true});
  // Equal unmasked sequences of several query blocks each: the mma kernel
  // walks such tiles head by head (tile_index's head-major order).
  add({.name = "equal_seqs_d64_bf16", .heads_q = 4, .heads_k = 2, .seqs = {{300, 300}, {300, 300}, {300, 300}},
       .lse = true});
  add({.name = "dense_equal_d80_fp16", .dtype = DType::fp16, .d = 80, .dv = 80, .seqs = {{200, 200}, {200, 200}},
       .dense = true});
  {
    // Many short sequences, as in windowed vision attention.
    Case c{.name = "many_short_seqs_d80_bf16", .d = 80, .dv = 80, .heads_q = 4, .heads_k = 4, .lse = true};
    for (int i = 0; i < 150; ++i) c.seqs.push_back({1 + (i * 37) % 64, 1 + (i * 37) % 64});
    add(c);
  }
  // Varlen calls whose sequences are all shorter than a tile: kernels that
  // pack several sequences into a tile (hopper: rows of consecutive
  // sequences, the query heads of a KV head stacked: 4, 6, 2 and 8 heads per
  // tile here; 5 divides no tile height, so that case stacks none).
  const std::vector<std::pair<int, int>> kShortLengths = {{1, 1},  {5, 40}, {17, 17}, {31, 100}, {0, 3},
                                                          {32, 32}, {1, 70}, {3, 0},   {40, 23}};
  for (auto [dt, dt_name] : dtypes)
    add({.name = std::string("gqa4_short_d128_causal_") + dt_name, .dtype = dt, .d = 128, .dv = 128,
         .heads_q = 8, .heads_k = 2, .seqs = kShortLengths, .causal = true, .lse = true});
  add({.name = "gqa6_short_d80_window_padded_fp16", .dtype = DType::fp16, .d = 80, .dv = 80, .heads_q = 12,
       .heads_k = 2, .seqs = kShortLengths, .window_left = 20, .window_right = 0, .lse = true,
       .padded_strides = true});
  add({.name = "gqa2_short_d256_full_fp16", .dtype = DType::fp16, .d = 256, .dv = 256, .heads_q = 4, .heads_k = 2,
       .seqs = kShortLengths});
  add({.name = "gqa5_short_d64_bf16", .heads_q = 10, .heads_k = 2, .seqs = kShortLengths, .lse = true});
  add({.name = "mqa8_short_d64_causal_fp16", .dtype = DType::fp16, .heads_q = 8, .heads_k = 1,
       .seqs = kShortLengths, .causal = true, .lse = true});
  add({.name = "gqa4_short_d72_softcap_bf16", .d = 72, .dv = 72, .heads_q = 8, .heads_k = 2, .seqs = kShortLengths,
       .softcap = 5.f, .lse = true, .amplitude = 4.f});
  add({.name = "mqa8_decode_dense_d64_bf16", .heads_q = 8, .heads_k = 1, .seqs = {{1, 300}, {1, 300}, {1, 300}},
       .dense = true, .causal = true, .lse = true});
  {
    // 64-token windows of a vision tower, at the computed-as-80/96 head dim.
    Case c{.name = "windows64_d72_bf16", .d = 72, .dv = 72, .heads_q = 2, .heads_k = 2, .lse = true};
    c.seqs.assign(40, {64, 64});
    add(c);
  }
  add({.name = "short_q_long_k_d128_causal_bf16", .d = 128, .dv = 128, .heads_q = 2, .heads_k = 2,
       .seqs = {{127, 256}, {100, 100}, {1, 1}, {120, 7}, {0, 256}, {90, 200}}, .causal = true, .lse = true});
  {
    // Hundreds of sequences of 0-3 tokens: one packed tile spans more than
    // the 32 sequences a warp looks up at once.
    Case c{.name = "tiny_seqs_d64_causal_fp16", .dtype = DType::fp16, .heads_q = 2, .heads_k = 1, .causal = true,
           .lse = true};
    for (int i = 0; i < 300; ++i) c.seqs.push_back({(i * 7) % 4, (i * 5) % 6});
    add(c);
  }
  // Sequences without keys between sequences with keys, so that one CTA
  // takes a keyless tile and then a keyed one (the kernels that stage O in
  // Q's buffer, d192/d256 on Hopper, must not write it for a keyless tile).
  for (auto [d, dv] : {std::pair{256, 256}, {192, 192}, {192, 128}, {128, 128}}) {
    Case c{.name = "zero_key_interleaved_d" + std::to_string(d) + "_dv" + std::to_string(dv) + "_bf16", .d = d,
           .dv = dv, .heads_q = 4, .heads_k = 2, .lse = true};
    for (int i = 0; i < 24; ++i) c.seqs.push_back(i % 2 ? std::pair{130, 150} : std::pair{200, 0});
    add(c);
  }
  // Rows past the last sequence: written as rows without keys on request,
  // else untouched (they stay poisoned).
  for (bool zero : {true, false})
    add({.name = std::string("rows_past_end_") + (zero ? "zeroed" : "untouched") + "_d128_causal_bf16", .d = 128,
         .dv = 128, .heads_q = 4, .heads_k = 2, .causal = true, .lse = true, .rows_past_end = 37,
         .zero_rows_past_end = zero});
  // One long sequence beside a short one (kept to one case: the float64 reference dominates).
  add({.name = "long_4096_gqa_d128_fp16", .dtype = DType::fp16, .d = 128, .dv = 128, .heads_q = 2, .heads_k = 1,
       .seqs = {{4096, 4096}, {65, 65}}, .lse = true});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuAttention, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// --- Random varlen cases, drawn fresh each run (FlashAttention's way of
// testing varlen): random lengths per sequence with zero-length q and k
// anywhere, lengths at tile edges and far-apart q/k ratios, every served head
// dim (d_v != d included), MHA/GQA/MQA, causal, windows (some longer than
// every sequence), softcap, fp16/bf16, padded strides, with or without LSE.

// Query / key length of one sequence.
std::pair<int, int> random_lengths(std::mt19937_64& rng) {
  static const std::pair<int, int> kRatios[] = {{511, 1}, {1, 511}, {3, 513}, {513, 3}, {1024, 1023},
                                                {1023, 1024}, {1, 1}, {64, 64}, {65, 63}, {129, 128}};
  auto pick = [&](int n) { return int(rng() % uint64_t(n)); };
  switch (pick(6)) {
    case 0: return kRatios[pick(std::size(kRatios))];
    case 1: return {0, pick(300)};  // no query
    case 2: return {1 + pick(300), 0};  // no key: rows are zero, LSE -inf
    case 3: {
      const int edges[] = {63, 64, 65, 127, 128, 129, 191, 192, 193};
      return {edges[pick(9)], edges[pick(9)]};
    }
    default: return {pick(400), pick(400)};
  }
}

Case random_case(std::mt19937_64& rng, int index) {
  auto pick = [&](int n) { return int(rng() % uint64_t(n)); };
  static const std::pair<int, int> kDims[] = {{64, 64},  {72, 72},   {80, 80},   {80, 96},  {96, 96},
                                              {128, 128}, {192, 128}, {192, 192}, {256, 256}, {32, 32},
                                              {64, 128}, {256, 64},  {40, 24},   {8, 8}};
  Case c;
  c.dtype = pick(2) ? DType::bf16 : DType::fp16;
  std::tie(c.d, c.dv) = kDims[pick(std::size(kDims))];
  switch (pick(3)) {  // MHA, GQA, MQA
    case 0: c.heads_q = c.heads_k = 1 + pick(3); break;
    case 1: c.heads_k = 2, c.heads_q = 2 * (2 + pick(4)); break;
    default: c.heads_k = 1, c.heads_q = 2 + pick(7); break;
  }
  // Up to 12 sequences, kept to about 2^20 score entries per head.
  const int batch = 1 + pick(12);
  int64_t scores = 0;
  for (int b = 0; b < batch; ++b) {
    const auto lengths = random_lengths(rng);
    if (scores + int64_t(lengths.first) * lengths.second > (int64_t(1) << 20)) break;
    scores += int64_t(lengths.first) * lengths.second;
    c.seqs.push_back(lengths);
  }
  if (c.seqs.empty()) c.seqs.push_back({0, 0});
  const int window_sides[] = {0, 1, 7, 64, 100, 255, 5000, std::numeric_limits<int>::max()};
  auto window_side = [&] { return pick(5) == 0 ? -1 : window_sides[pick(std::size(window_sides))]; };
  std::string mask = "full";
  switch (pick(4)) {
    case 0: break;
    case 1: c.causal = true, mask = "causal"; break;
    case 2: c.window_left = window_side(), c.window_right = window_side(), mask = "window"; break;
    default: c.causal = true, c.window_left = window_side(), mask = "causal_window"; break;
  }
  if (pick(5) == 0) c.softcap = pick(2) ? 5.f : 30.f, c.amplitude = 4.f;
  c.lse = pick(4) != 0;
  c.padded_strides = pick(5) == 0;
  c.fixed_tolerance = false;
  if (pick(4) == 0) c.rows_past_end = 1 + pick(100), c.zero_rows_past_end = pick(2) != 0;
  c.name = "random" + std::to_string(index) + "_d" + std::to_string(c.d) + "_dv" + std::to_string(c.dv) + "_h" +
           std::to_string(c.heads_q) + "x" + std::to_string(c.heads_k) + "_" + mask +
           (c.softcap > 0 ? "_softcap" : "") + "_" + gputest::dtype_name(c.dtype) + "_b" +
           std::to_string(c.seqs.size()) + (c.rows_past_end ? c.zero_rows_past_end ? "_rest0" : "_rest" : "");
  return c;
}

// Number of random cases: VFLASH_RANDOM_CASES, default 300.
int random_case_count() {
  const char* n = std::getenv("VFLASH_RANDOM_CASES");
  return n != nullptr && *n != '\0' ? std::max(0, std::atoi(n)) : 300;
}

class GpuRandomVarlen : public ::testing::TestWithParam<int> {};

TEST_P(GpuRandomVarlen, MatchesCpuReference) {
  if (!gputest::cuda_device_present()) GTEST_SKIP() << "no CUDA device";
  const int index = GetParam();
  gputest::run_random_case(index, [&](std::mt19937_64& rng) { return random_case(rng, index); }, run_case);
}

INSTANTIATE_TEST_SUITE_P(Random, GpuRandomVarlen, ::testing::Range(0, random_case_count()));

}  // namespace
}  // namespace vflash
