// Stand-alone check and timing harness of the mma kernel family (built by
// scripts/bench_mma.sh; needs a GPU).
//
//   mma_bench check            fresh random inputs vs a float64 host reference
//   mma_bench bench [tiles]    TFLOP/s on the workloads of bench/workloads.json
//                              (shapes repeated below); "tiles" also times candidate
//                              tile shapes per head-dim bucket (bench/mma_tiles.md)
//
// Timing and FLOPs are `vflash bench`'s (tools/bench_core.hpp): median of
// CUDA-event times, L2 flushed before each run, 300 ms of runs per case; FLOPs
// at the true head dim.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_core.hpp"
#include "dtype.hpp"
#include "kernels/mma/mma_fwd.cuh"
#include "registry.hpp"

namespace vflash {
std::span<const KernelInfo> mma_kernels();
}

using namespace vflash;

#define CUDA_OK(x)                                                                  \
  do {                                                                              \
    cudaError_t e_ = (x);                                                           \
    if (e_ != cudaSuccess) {                                                        \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                 \
    }                                                                               \
  } while (0)

namespace {

struct Case {
  std::string name;
  DType dtype = DType::bf16;
  std::vector<int> seqlens_q, seqlens_k;  // varlen; dense when `dense`
  bool dense = false;
  int hq = 4, hk = 4, d = 64, dv = 64;
  bool causal = false;
  int wl = -1, wr = -1;
  float softcap = 0.f;
  bool lse = true;
};

float to_float(uint16_t x, DType t) { return t == DType::bf16 ? bf16_to_float(x) : fp16_to_float(x); }
uint16_t from_float(float x, DType t) { return t == DType::bf16 ? float_to_bf16(x) : float_to_fp16(x); }

// Device tensors and FwdParams of one case (packed layout; dense uses batch strides).
struct Problem {
  Case c;
  FwdParams p;
  int batch = 0;
  int64_t total_q = 0, total_k = 0;
  std::vector<int> cu_q, cu_k;
  std::vector<uint16_t> hq_, hk_, hv_;
  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *dout = nullptr, *dws = nullptr;
  float* dlse = nullptr;
  int32_t *dcu_q = nullptr, *dcu_k = nullptr;

  Problem(const Case& cs, std::mt19937_64& rng) : c(cs) {
    batch = int(c.seqlens_q.size());
    cu_q = {0};
    cu_k = {0};
    for (int b = 0; b < batch; ++b) {
      cu_q.push_back(cu_q.back() + c.seqlens_q[b]);
      cu_k.push_back(cu_k.back() + c.seqlens_k[b]);
    }
    total_q = cu_q.back();
    total_k = cu_k.back();
    const size_t nq = total_q * c.hq * c.d, nk = total_k * c.hk * c.d, nv = total_k * c.hk * c.dv;
    const size_t no = total_q * c.hq * c.dv;
    CUDA_OK(cudaMalloc(&dq, nq * 2 + 16));
    CUDA_OK(cudaMalloc(&dk, nk * 2 + 16));
    CUDA_OK(cudaMalloc(&dv, nv * 2 + 16));
    CUDA_OK(cudaMalloc(&dout, no * 2 + 16));
    CUDA_OK(cudaMalloc(&dlse, total_q * c.hq * 4 + 16));
    // Random inputs for timing too: with constant inputs the tensor cores
    // draw less power and the H100 holds higher clocks (dense d128 measured
    // 398 TFLOP/s on constants against 357-367 on random data).
    std::normal_distribution<float> nd(0.f, 1.f);
    auto fill = [&](std::vector<uint16_t>& h, size_t n, void* d) {
      h.resize(n);
      for (auto& x : h) x = from_float(nd(rng), c.dtype);
      CUDA_OK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
    };
    fill(hq_, nq, dq);
    fill(hk_, nk, dk);
    fill(hv_, nv, dv);
    p.dtype = c.dtype;
    p.q = dq;
    p.k = dk;
    p.v = dv;
    p.o = dout;
    p.lse = c.lse ? dlse : nullptr;
    p.q_row_stride = int64_t(c.hq) * c.d;
    p.q_head_stride = c.d;
    p.k_row_stride = int64_t(c.hk) * c.d;
    p.k_head_stride = c.d;
    p.v_row_stride = int64_t(c.hk) * c.dv;
    p.v_head_stride = c.dv;
    p.o_row_stride = int64_t(c.hq) * c.dv;
    p.o_head_stride = c.dv;
    p.batch = batch;
    p.heads_q = c.hq;
    p.heads_k = c.hk;
    p.head_dim = c.d;
    p.head_dim_v = c.dv;
    p.max_seqlen_q = *std::max_element(c.seqlens_q.begin(), c.seqlens_q.end());
    p.max_seqlen_k = *std::max_element(c.seqlens_k.begin(), c.seqlens_k.end());
    p.total_q = total_q;
    p.total_k = total_k;
    p.softmax_scale = 1.f / std::sqrt(float(c.d));
    p.causal = c.causal;
    p.window_left = c.wl;
    p.window_right = c.causal ? 0 : c.wr;
    p.softcap = c.softcap;
    p.device = 0;
    if (c.dense) {
      const int sq = c.seqlens_q[0], sk = c.seqlens_k[0];
      p.seqlen_q = sq;
      p.seqlen_k = sk;
      p.q_batch_stride = int64_t(sq) * p.q_row_stride;
      p.k_batch_stride = int64_t(sk) * p.k_row_stride;
      p.v_batch_stride = int64_t(sk) * p.v_row_stride;
      p.o_batch_stride = int64_t(sq) * p.o_row_stride;
      p.lse_head_stride = int64_t(batch) * sq;
      p.lse_batch_stride = sq;
    } else {
      CUDA_OK(cudaMalloc(&dcu_q, (batch + 1) * 4));
      CUDA_OK(cudaMalloc(&dcu_k, (batch + 1) * 4));
      CUDA_OK(cudaMemcpy(dcu_q, cu_q.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dcu_k, cu_k.data(), (batch + 1) * 4, cudaMemcpyHostToDevice));
      p.cu_seqlens_q = dcu_q;
      p.cu_seqlens_k = dcu_k;
      p.lse_head_stride = total_q;
    }
  }
  ~Problem() {
    for (void* x : {dq, dk, dv, dout, dws, (void*)dlse, (void*)dcu_q, (void*)dcu_k}) cudaFree(x);
  }
  void workspace(size_t bytes) {
    if (dws) cudaFree(dws);
    CUDA_OK(cudaMalloc(&dws, bytes));
    p.workspace = dws;
    p.workspace_bytes = bytes;
  }
  // Row r of sequence b in the packed output/lse index space.
  int64_t row_index(int b, int r) const { return c.dense ? int64_t(b) * c.seqlens_q[0] + r : cu_q[b] + r; }
};

// float64 attention of one (sequence, head); o_row receives dv values, returns lse.
void reference_rows(const Problem& pr, int b, int h, std::vector<double>& out, std::vector<double>& lse) {
  const Case& c = pr.c;
  const int sq = c.seqlens_q[b], sk = c.seqlens_k[b], hk = h / (c.hq / c.hk);
  const int64_t q0 = pr.cu_q[b], k0 = pr.cu_k[b];
  out.assign(size_t(sq) * c.dv, 0.0);
  lse.assign(sq, -INFINITY);
  std::vector<double> s(sk);
  const double scale = pr.p.softmax_scale;
  for (int i = 0; i < sq; ++i) {
    double mx = -INFINITY;
    for (int j = 0; j < sk; ++j) {
      const int64_t shift = int64_t(sk) - sq;
      bool vis = true;
      if (pr.p.window_left >= 0 && j < i + shift - pr.p.window_left) vis = false;
      if (pr.p.window_right >= 0 && j > i + shift + pr.p.window_right) vis = false;
      if (!vis) {
        s[j] = -INFINITY;
        continue;
      }
      double acc = 0;
      for (int x = 0; x < c.d; ++x)
        acc += double(to_float(pr.hq_[((q0 + i) * c.hq + h) * c.d + x], c.dtype)) *
               to_float(pr.hk_[((k0 + j) * c.hk + hk) * c.d + x], c.dtype);
      acc *= scale;
      if (c.softcap > 0) acc = c.softcap * std::tanh(acc / c.softcap);
      s[j] = acc;
      mx = std::max(mx, acc);
    }
    if (mx == -INFINITY) continue;
    double sum = 0;
    for (int j = 0; j < sk; ++j) {
      s[j] = s[j] == -INFINITY ? 0.0 : std::exp(s[j] - mx);
      sum += s[j];
    }
    for (int j = 0; j < sk; ++j) {
      if (s[j] == 0) continue;
      for (int x = 0; x < c.dv; ++x)
        out[size_t(i) * c.dv + x] += s[j] / sum * to_float(pr.hv_[((k0 + j) * c.hk + hk) * c.dv + x], c.dtype);
    }
    lse[i] = mx + std::log(sum);
  }
}

using LaunchFn = int (*)(const FwdParams&);

// Returns the number of failing elements (prints the first few). `launch`:
// the library's dispatch of the mma kernel unless given.
long check_case(const Case& c, uint64_t seed, LaunchFn launch = nullptr, const char* tag = "") {
  std::mt19937_64 rng(seed);
  Problem pr(c, rng);
  const auto& k = mma_kernels()[0];
  pr.workspace(k.workspace_bytes(pr.p));
  const size_t no = pr.total_q * c.hq * c.dv;
  CUDA_OK(cudaMemset(pr.dout, 0xff, no * 2));  // NaN poison
  CUDA_OK(cudaMemset(pr.dlse, 0xff, pr.total_q * c.hq * 4));
  const int rc = (launch ? launch : k.launch)(pr.p);
  if (rc != 0) {
    std::printf("FAIL %s: launch returned %d (%s)\n", c.name.c_str(), rc, cudaGetErrorString(cudaError_t(rc)));
    return 1;
  }
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> out(no);
  std::vector<float> lse(pr.total_q * c.hq);
  CUDA_OK(cudaMemcpy(out.data(), pr.dout, no * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(lse.data(), pr.dlse, lse.size() * 4, cudaMemcpyDeviceToHost));
  const double tol = c.dtype == DType::bf16 ? 1e-2 : 2e-3;
  long bad = 0, checked = 0;
  double worst = 0;
  std::vector<double> ref, ref_lse;
  for (int b = 0; b < pr.batch; ++b) {
    for (int h = 0; h < c.hq; ++h) {
      reference_rows(pr, b, h, ref, ref_lse);
      double maxref = 1e-6;
      for (double x : ref) maxref = std::max(maxref, std::abs(x));
      for (int i = 0; i < c.seqlens_q[b]; ++i) {
        const int64_t row = pr.row_index(b, i);
        for (int x = 0; x < c.dv; ++x) {
          const double got = to_float(out[(row * c.hq + h) * c.dv + x], c.dtype);
          const double err = std::abs(got - ref[size_t(i) * c.dv + x]) / maxref;
          ++checked;
          if (!(err <= tol)) {
            if (bad++ < 5)
              std::printf("  %s b=%d h=%d row=%d col=%d got %g want %g\n", c.name.c_str(), b, h, i, x, got,
                          ref[size_t(i) * c.dv + x]);
          }
          if (std::isfinite(err)) worst = std::max(worst, err);
        }
        if (c.lse) {
          const double got = lse[h * pr.p.lse_head_stride + row];
          const double want = ref_lse[i];
          const bool ok = (std::isinf(want) && got == want) ||
                          (std::isfinite(got) && std::abs(got - want) <= 1e-3 * std::max(1.0, std::abs(want)));
          ++checked;
          if (!ok && bad++ < 5)
            std::printf("  %s lse b=%d h=%d row=%d got %g want %g\n", c.name.c_str(), b, h, i, got, want);
        }
      }
    }
  }
  std::printf("%s %s%s: %ld values, %ld bad, worst rel err %.2e\n", bad ? "FAIL" : "ok  ", c.name.c_str(), tag,
              checked, bad, worst);
  return bad;
}

int run_checks() {
  const uint64_t seed = std::random_device{}() ^ (uint64_t(time(nullptr)) << 20);
  std::printf("seed %llu\n", (unsigned long long)seed);
  std::vector<Case> cases;
  const std::vector<int> lens = {0, 1, 63, 64, 65, 130, 257};
  for (DType t : {DType::bf16, DType::fp16}) {
    const char* tn = t == DType::bf16 ? "bf16" : "fp16";
    for (int d : {8, 32, 40, 64, 72, 80, 96, 128, 160, 192, 200, 256}) {
      Case c;
      c.name = std::string(tn) + " d" + std::to_string(d);
      c.dtype = t;
      c.d = c.dv = d;
      c.seqlens_q = c.seqlens_k = lens;
      c.hq = c.hk = 2;
      cases.push_back(c);
    }
    auto add = [&](std::string n, auto mod) {
      Case c;
      c.name = std::string(tn) + " " + n;
      c.dtype = t;
      c.d = c.dv = 80;
      c.seqlens_q = c.seqlens_k = lens;
      c.hq = c.hk = 2;
      mod(c);
      cases.push_back(c);
    };
    add("causal d80", [](Case& c) { c.causal = true; });
    add("causal d128 sq!=sk", [](Case& c) {
      c.causal = true;
      c.d = c.dv = 128;
      c.seqlens_q = {100, 300, 1, 64};
      c.seqlens_k = {300, 100, 70, 0};
    });
    add("window(32,16) d72", [](Case& c) { c.d = c.dv = 72; c.wl = 32; c.wr = 16; c.seqlens_q = c.seqlens_k = {0, 1, 65, 300}; });
    add("window(-1,5) d64", [](Case& c) { c.d = c.dv = 64; c.wr = 5; });
    add("window(20,-1) d64", [](Case& c) { c.d = c.dv = 64; c.wl = 20; });
    add("causal+window(40) d96", [](Case& c) { c.d = c.dv = 96; c.causal = true; c.wl = 40; });
    add("softcap 5 d80", [](Case& c) { c.softcap = 5.f; });
    add("gqa 8/2 d128 causal", [](Case& c) { c.hq = 8; c.hk = 2; c.d = c.dv = 128; c.causal = true; });
    add("mqa 4/1 d64", [](Case& c) { c.hq = 4; c.hk = 1; c.d = c.dv = 64; });
    add("d192 dv128", [](Case& c) { c.d = 192; c.dv = 128; });
    add("d72 dv40", [](Case& c) { c.d = 72; c.dv = 40; });
    add("d16 dv256", [](Case& c) { c.d = 16; c.dv = 256; });
    add("no lse d80", [](Case& c) { c.lse = false; });
    add("dense b3 s200 d80", [](Case& c) { c.dense = true; c.seqlens_q = c.seqlens_k = {200, 200, 200}; });
    add("dense causal b2 sq150 sk333 d128", [](Case& c) {
      c.dense = true;
      c.causal = true;
      c.d = c.dv = 128;
      c.seqlens_q = {150, 150};
      c.seqlens_k = {333, 333};
    });
    // Many tiles per CTA: the cross-tile prefetch, and empty tiles (causal, sq > sk) among them.
    std::mt19937 lens_rng{uint32_t(seed)};
    std::vector<int> many_q(400), many_k(400);
    for (int i = 0; i < 400; ++i) {
      many_q[i] = int(lens_rng() % 200);
      many_k[i] = i % 3 == 0 ? int(lens_rng() % 200) : many_q[i];
    }
    add("many seqs d64", [&](Case& c) { c.d = c.dv = 64; c.seqlens_q = c.seqlens_k = many_q; });
    add("many seqs causal sq!=sk gqa d80", [&](Case& c) {
      c.causal = true;
      c.hq = 4;
      c.hk = 2;
      c.seqlens_q = many_q;
      c.seqlens_k = many_k;
    });
    add("long 1500 d128", [](Case& c) { c.d = c.dv = 128; c.seqlens_q = c.seqlens_k = {1500, 7}; c.hq = c.hk = 1; });
  }
  long failed = 0, runs = 0;
  for (const Case& c : cases) failed += check_case(c, seed ^ std::hash<std::string>{}(c.name)) != 0, ++runs;
  // The shapes the library picks on devices with less shared memory per block
  // than this one (8.6/8.9/12.x: two CTAs of the two_ctas shape do not fit),
  // launched directly: the standard d64 (64-key blocks), d160 / d192 (8 warps
  // x 32-key blocks) and d256 (one warp per 16 rows) shapes.
  using mma::TileShape;
  struct StandardShape {
    int bucket;
    LaunchFn fp16, bf16;
  };
#define VFLASH_STANDARD_SHAPE(B) \
  StandardShape{B, &mma::launch_fwd_shape<__half, B, TileShape::standard>, \
                &mma::launch_fwd_shape<__nv_bfloat16, B, TileShape::standard>}
  const StandardShape standard_shapes[] = {VFLASH_STANDARD_SHAPE(64), VFLASH_STANDARD_SHAPE(160),
                                           VFLASH_STANDARD_SHAPE(192), VFLASH_STANDARD_SHAPE(256)};
#undef VFLASH_STANDARD_SHAPE
  for (const Case& c : cases) {
    for (const StandardShape& shape : standard_shapes) {
      if (shape.bucket != mma::bucket_for(c.d, c.dv)) continue;
      const uint64_t s = seed ^ std::hash<std::string>{}(c.name);
      failed += check_case(c, s, c.dtype == DType::bf16 ? shape.bf16 : shape.fp16, " (standard shape)") != 0;
      runs += 1;
    }
  }
  std::printf("checks: %ld runs, %ld failed (seed %llu)\n", runs, failed, (unsigned long long)seed);
  return failed ? 1 : 0;
}

// ---- timing

struct Workload {
  std::string name;
  std::vector<int> seqlens;
  bool dense;
  int hq, hk, d;
  bool causal;
};

std::vector<int> repeat(int n, int len) { return std::vector<int>(n, len); }

std::vector<Workload> workloads() {
  const std::vector<int> mix = {1024, 4096, 256, 2304, 576, 9216, 1600, 3136};
  return {
      {"std-s8192-d64", repeat(2, 8192), true, 32, 32, 64, false},
      {"std-s8192-d64-causal", repeat(2, 8192), true, 32, 32, 64, true},
      {"std-s8192-d128", repeat(2, 8192), true, 16, 16, 128, false},
      {"std-s8192-d128-causal", repeat(2, 8192), true, 16, 16, 128, true},
      {"std-s8192-d256", repeat(2, 8192), true, 8, 8, 256, false},
      {"std-s8192-d256-causal", repeat(2, 8192), true, 8, 8, 256, true},
      {"std-s1024-d128", repeat(16, 1024), true, 16, 16, 128, false},
      {"vit-mix-d72", mix, false, 16, 16, 72, false},
      {"vit-mix-d80", mix, false, 16, 16, 80, false},
      {"vit-video32x1024-d72", repeat(32, 1024), false, 16, 16, 72, false},
      {"vit-window64-d80", repeat(344, 64), false, 16, 16, 80, false},
      {"llm-prefill-gqa-d128-causal", {512, 3000, 8192, 100, 1500}, false, 32, 8, 128, true},
      // Not in workloads.json: the 64-token windows at the other common head dims.
      {"vit-window64-d64", repeat(344, 64), false, 16, 16, 64, false},
      {"vit-window64-d128", repeat(344, 64), false, 16, 16, 128, false},
  };
}

double flops(const Workload& w) { return bench::attention_flops(w.seqlens, w.hq, w.d, w.causal); }

// Median ms of one launch function on the problem (its params' stream).
double median_ms(Problem& pr, LaunchFn fn) {
  static const bench::L2Flush flush(0);
  return bench::median_ms(
      [&] {
        if (const int rc = fn(pr.p); rc != 0)
          throw std::runtime_error(std::string("launch failed: ") + cudaGetErrorString(cudaError_t(rc)));
      },
      flush, static_cast<cudaStream_t>(pr.p.stream));
}

Problem make_problem(const Workload& w) {
  Case c;
  c.name = w.name;
  c.seqlens_q = c.seqlens_k = w.seqlens;
  c.dense = w.dense;
  c.hq = w.hq;
  c.hk = w.hk;
  c.d = c.dv = w.d;
  c.causal = w.causal;
  c.lse = true;
  static std::mt19937_64 rng(20261126);
  return Problem(c, rng);
}

// Candidate tile shapes (warps, m atoms, block_n) per bucket, timed by "tiles".
struct Candidate {
  int bucket;
  const char* shape;
  LaunchFn launch;
  int block_m;
};
#define VFLASH_CANDIDATE(B, W, MA, N, KV) \
  Candidate{B, #W "w x" #MA " n" #N " kv" #KV, &mma::launch_fwd_tiles<__nv_bfloat16, B, W, MA, N, KV>, W * 16 * MA}
#ifdef VFLASH_BENCH_TILES
// (8, 1, 32) and (8, 1, 64) at 256 need 128 and 192 KiB of shared memory; kv1:
// K and V single-buffered.
const Candidate kCandidates[] = {
    VFLASH_CANDIDATE(64, 4, 2, 64, 2),  VFLASH_CANDIDATE(64, 8, 1, 64, 2),  VFLASH_CANDIDATE(64, 4, 2, 32, 2),
    VFLASH_CANDIDATE(64, 4, 2, 128, 2), VFLASH_CANDIDATE(64, 4, 1, 64, 2),  VFLASH_CANDIDATE(80, 4, 2, 64, 2),
    VFLASH_CANDIDATE(80, 4, 1, 64, 2),  VFLASH_CANDIDATE(80, 8, 1, 64, 2),  VFLASH_CANDIDATE(80, 4, 2, 32, 2),
    VFLASH_CANDIDATE(128, 4, 2, 64, 2), VFLASH_CANDIDATE(128, 4, 2, 32, 2), VFLASH_CANDIDATE(128, 8, 1, 64, 2),
    VFLASH_CANDIDATE(128, 8, 1, 32, 2), VFLASH_CANDIDATE(128, 4, 1, 64, 2),
    VFLASH_CANDIDATE(256, 8, 1, 16, 2), VFLASH_CANDIDATE(256, 8, 1, 32, 2), VFLASH_CANDIDATE(256, 8, 1, 64, 2),
    VFLASH_CANDIDATE(64, 8, 2, 64, 2),  VFLASH_CANDIDATE(64, 4, 1, 32, 2),  VFLASH_CANDIDATE(80, 4, 1, 32, 2),
    VFLASH_CANDIDATE(128, 4, 1, 32, 2), VFLASH_CANDIDATE(80, 4, 2, 128, 2), VFLASH_CANDIDATE(256, 4, 1, 64, 1),
};
#else
const Candidate kCandidates[] = {VFLASH_CANDIDATE(80, 4, 2, 64, 2)};
#endif

int run_bench(bool tiles) {
  const auto& k = mma_kernels()[0];
  std::printf("%-30s %9s %9s\n", "workload", "ms", "TFLOP/s");
  for (const Workload& w : workloads()) {
    Problem pr = make_problem(w);
    pr.workspace(k.workspace_bytes(pr.p) + (1u << 20));
    const double ms = median_ms(pr, k.launch);
    std::printf("%-30s %9.3f %9.1f\n", w.name.c_str(), ms, flops(w) / ms / 1e9);
    std::fflush(stdout);
    if (!tiles) continue;
    for (const Candidate& cand : kCandidates) {
      if (cand.bucket != mma::bucket_for(w.d, w.d)) continue;
      const double cms = median_ms(pr, cand.launch);
      std::printf("  tile %-22s %9.3f %9.1f\n", cand.shape, cms, flops(w) / cms / 1e9);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines survive a timeout kill
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("no CUDA device\n");
    return 2;
  }
  CUDA_OK(cudaSetDevice(0));
  const std::string mode = argc > 1 ? argv[1] : "check";
  if (mode == "check") return run_checks();
  if (mode == "bench") {
    try {
      return run_bench(argc > 2 && std::string(argv[2]) == "tiles");
    } catch (const std::exception& e) {
      std::printf("%s\n", e.what());
      return 2;
    }
  }
  std::fprintf(stderr, "usage: %s check | bench [tiles]\n", argv[0]);
  return 2;
}
