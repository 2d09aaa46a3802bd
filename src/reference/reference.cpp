// CPU reference attention in float64. Work is split into chunks of query rows
// of one (sequence, query head) and spread over std::threads; each chunk
// converts the keys and values it can see to float64 once, then runs a
// two-pass softmax per row (scores, then max / sum / weighted sum of V), so
// memory stays linear in the sequence length. The backward splits the work by
// (sequence, KV head), so that each chunk owns the dk / dv rows it sums.
#include "reference/reference.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "dtype.hpp"
#include "validate.hpp"

namespace vflash {
namespace {

constexpr int64_t kRowsPerChunk = 64;

std::mutex hooks_mutex;
ReferencePoolHooks pool_hooks;

ReferencePoolHooks current_hooks() {
  std::lock_guard lock(hooks_mutex);
  return pool_hooks;
}
constexpr int kRowGroup = 4;  // query rows sharing one pass over the keys

double load(DType t, const void* base, int64_t index) {
  switch (t) {
    case DType::fp16: return fp16_to_float(static_cast<const uint16_t*>(base)[index]);
    case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(base)[index]);
    case DType::fp32: return static_cast<const float*>(base)[index];
  }
  return 0.0;
}

// x rounded to a 16-bit dtype and back.
double rounded(DType t, double x) {
  return t == DType::fp16 ? fp16_to_float(float_to_fp16(float(x))) : bf16_to_float(float_to_bf16(float(x)));
}

void store(DType t, void* base, int64_t index, double x) {
  switch (t) {
    case DType::fp16: static_cast<uint16_t*>(base)[index] = float_to_fp16(float(x)); break;
    case DType::bf16: static_cast<uint16_t*>(base)[index] = float_to_bf16(float(x)); break;
    case DType::fp32: static_cast<float*>(base)[index] = float(x); break;
  }
}

struct Sequence {
  int64_t q_start, k_start;  // seq_start(b) for q and k
  int64_t len_q, len_k;
};

Sequence sequence(const FwdParams& p, int32_t b) {
  if (p.is_varlen())
    return {p.cu_seqlens_q[b], p.cu_seqlens_k[b], int64_t(p.cu_seqlens_q[b + 1]) - p.cu_seqlens_q[b],
            int64_t(p.cu_seqlens_k[b + 1]) - p.cu_seqlens_k[b]};
  return {0, 0, p.seqlen_q, p.seqlen_k};
}

// Keys [first, last) that query row r sees: the causal diagonal is aligned
// bottom-right (row r's diagonal key is r + len_k - len_q), and the window
// keeps keys within [diag - left, diag + right]; negative bounds are unbounded.
struct KeyRange { int64_t first, last; };

KeyRange visible_keys(const FwdParams& p, const Sequence& s, int64_t r) {
  const int64_t diag = r + s.len_k - s.len_q;
  const int64_t right = p.causal ? 0 : p.window_right;
  const int64_t first = p.window_left >= 0 ? std::max<int64_t>(0, diag - p.window_left) : 0;
  const int64_t last = right >= 0 ? std::min(s.len_k, diag + right + 1) : s.len_k;
  return {first, std::max(first, last)};
}

// Runs work() on the calling thread and up to the pool's thread count - 1
// more; each call of work() takes chunk indices from `next` until it reaches
// `chunk_count`. The first exception of any worker (e.g. bad_alloc) makes the
// others stop taking chunks and is rethrown on the calling thread once all
// have joined (an exception leaving a std::thread's function would
// std::terminate).
template <class Work>
void run_workers(size_t chunk_count, std::atomic<size_t>& next, const Work& work) {
  std::mutex failure_mutex;
  std::exception_ptr failure;
  const auto worker = [&]() noexcept {
    try {
      work();
    } catch (...) {
      next.store(chunk_count);
      std::lock_guard lock(failure_mutex);
      if (!failure) failure = std::current_exception();
    }
  };

  const ReferencePoolHooks hooks = current_hooks();
  const unsigned wanted = hooks.threads ? hooks.threads : std::max(1u, std::thread::hardware_concurrency());
  const size_t threads = std::min<size_t>(chunk_count, wanted);
  std::vector<std::thread> pool;
  try {
    pool.reserve(threads);
    for (size_t t = 1; t < threads; ++t) {
      if (hooks.before_start) hooks.before_start(unsigned(t));
      pool.emplace_back(worker);
    }
  } catch (const std::system_error&) {
    // No thread to be had (or no memory for the pool): the chunks are taken
    // from a shared counter, so the threads running and this one do them all.
  } catch (const std::bad_alloc&) {
  }
  worker();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

struct Chunk {
  int32_t b, h;
  int64_t row_begin, row_end;
};

// Calls sink(b, h, s, r, out_row /* d_v doubles */, lse) for every query row
// of every sequence and head, from several threads (each row exactly once).
template <class Sink>
void attend(const FwdParams& p, const Sink& sink, Precision precision = Precision::exact,
            double rounding_offset_log2 = 0.0) {
  const bool round_p = precision == Precision::probabilities_rounded && p.dtype != DType::fp32;
  // Weights are rounded at the scale 2^(-offset) relative to the row maximum.
  const double round_scale = std::exp2(-rounding_offset_log2);
  std::vector<Chunk> chunks;
  for (int32_t b = 0; b < p.batch; ++b) {
    const Sequence s = sequence(p, b);
    for (int32_t h = 0; h < p.heads_q; ++h)
      for (int64_t r = 0; r < s.len_q; r += kRowsPerChunk)
        chunks.push_back({b, h, r, std::min(s.len_q, r + kRowsPerChunk)});
  }
  const int d = p.head_dim, dv = p.head_dim_v;
  const int32_t group = p.heads_q / p.heads_k;  // query heads per KV head (GQA)
  std::atomic<size_t> next{0};

  const auto work = [&] {
    // keys_t: the chunk's visible keys transposed, (d, nk), so that scores of
    // kRowGroup rows are built by axpy over contiguous keys (vectorisable, one
    // pass over the keys per group). values: (nk, d_v).
    std::vector<double> keys_t, values, q(size_t(kRowGroup) * d), scores, out(size_t(kRowGroup) * dv);
    for (size_t c; (c = next.fetch_add(1)) < chunks.size();) {
      const Chunk& ch = chunks[c];
      const Sequence s = sequence(p, ch.b);
      const int32_t hk = ch.h / group;
      // Keys visible to any row of the chunk (both bounds grow with the row).
      const int64_t k_first = visible_keys(p, s, ch.row_begin).first;
      const int64_t k_last = std::max(k_first, visible_keys(p, s, ch.row_end - 1).last);
      const int64_t nk = k_last - k_first;
      keys_t.resize(size_t(nk) * d);
      values.resize(size_t(nk) * dv);
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t row = s.k_start + k_first + j;
        const int64_t kb = ch.b * p.k_batch_stride + row * p.k_row_stride + hk * p.k_head_stride;
        const int64_t vb = ch.b * p.v_batch_stride + row * p.v_row_stride + hk * p.v_head_stride;
        for (int i = 0; i < d; ++i) keys_t[i * nk + j] = load(p.dtype, p.k, kb + i);
        for (int i = 0; i < dv; ++i) values[j * dv + i] = load(p.dtype, p.v, vb + i);
      }
      scores.resize(size_t(kRowGroup) * nk);

      for (int64_t r0 = ch.row_begin; r0 < ch.row_end; r0 += kRowGroup) {
        const int rows = int(std::min<int64_t>(kRowGroup, ch.row_end - r0));
        // Raw dot products q.k over the chunk's keys, summed in index order.
        std::fill(scores.begin(), scores.end(), 0.0);
        for (int g = 0; g < rows; ++g) {
          const int64_t qb = ch.b * p.q_batch_stride + (s.q_start + r0 + g) * p.q_row_stride + ch.h * p.q_head_stride;
          for (int i = 0; i < d; ++i) q[g * d + i] = load(p.dtype, p.q, qb + i);
        }
        static_assert(kRowGroup == 4);
        for (int g = rows; g < kRowGroup; ++g) std::fill(&q[size_t(g) * d], &q[size_t(g) * d] + d, 0.0);
        // data() + offset: nk may be 0 (no visible key), where [] would be UB.
        double* __restrict s0 = scores.data();
        double* __restrict s1 = s0 + nk;
        double* __restrict s2 = s1 + nk;
        double* __restrict s3 = s2 + nk;
        for (int i = 0; i < d; ++i) {
          const double q0 = q[i], q1 = q[d + i], q2 = q[2 * d + i], q3 = q[3 * d + i];
          const double* __restrict kr = keys_t.data() + size_t(i) * nk;
          for (int64_t j = 0; j < nk; ++j) {
            const double kv = kr[j];
            s0[j] += q0 * kv;
            s1[j] += q1 * kv;
            s2[j] += q2 * kv;
            s3[j] += q3 * kv;
          }
        }
        for (int g = 0; g < rows; ++g) {
          const int64_t r = r0 + g;
          const KeyRange range = visible_keys(p, s, r);
          double* __restrict o = &out[size_t(g) * dv];
          std::fill(o, o + dv, 0.0);
          if (range.first >= range.last) {
            sink(ch.b, ch.h, s, r, o, -std::numeric_limits<double>::infinity());
            continue;
          }
          // Positions relative to the chunk's first key.
          double* sg = scores.data() + size_t(g) * nk;
          const int64_t first = range.first - k_first, last = range.last - k_first;
          double max_score = -std::numeric_limits<double>::infinity();
          for (int64_t j = first; j < last; ++j) {
            double sc = double(p.softmax_scale) * sg[j];
            if (p.softcap > 0.f) sc = double(p.softcap) * std::tanh(sc / double(p.softcap));
            sg[j] = sc;
            max_score = std::max(max_score, sc);
          }
          double sum = 0;
          for (int64_t j = first; j < last; ++j) {
            const double w = std::exp(sg[j] - max_score);
            sum += w;
            const double pw = round_p ? rounded(p.dtype, w * round_scale) / round_scale : w;
            const double* __restrict vrow = values.data() + size_t(j) * dv;
            for (int i = 0; i < dv; ++i) o[i] += pw * vrow[i];
          }
          for (int i = 0; i < dv; ++i) o[i] /= sum;
          sink(ch.b, ch.h, s, r, o, max_score + std::log(sum));
        }
      }
    }
  };

  run_workers(chunks.size(), next, work);
}

// The gradient of one (sequence, KV head) pair, for each query head of its
// group: dq rows of those heads, and dk / dv rows of the KV head summed over
// the group. Per query row the softmax is recomputed in float64 from q and k
// (the forward's out and lse are not read: this is the exact gradient):
//   s_j = scale * q.k_j, or softcap * tanh(scale * q.k_j / softcap)
//   P_j = exp(s_j - lse), lse = log sum_j exp(s_j) over the row's visible keys
//   dv_j += P_j dout;  dP_j = dout.v_j;  D = sum_j P_j dP_j (= dout.out)
//   g_j = P_j (dP_j - D) * ds_j/d(q.k_j), where ds/d(q.k) = scale, or with
//         softcap scale * (1 - (s_j / softcap)^2)
//   dq = sum_j g_j k_j;  dk_j += g_j q.
// A row that sees no key has no P: its dq is zero and it adds nothing.
// sink.dq(row, h, values) / sink.dk(row, hk, values) / sink.dv(row, hk,
// values) receive every row of every sequence once (row = the packed row),
// from several threads.
template <class Sink>
void differentiate(const BwdParams& bp, const Sink& sink) {
  const FwdParams& p = bp.fwd;
  const int d = p.head_dim, dv = p.head_dim_v;
  const int32_t group = p.heads_q / p.heads_k;
  std::vector<Chunk> chunks;
  for (int32_t b = 0; b < p.batch; ++b)
    for (int32_t hk = 0; hk < p.heads_k; ++hk) chunks.push_back({b, hk, 0, 0});  // h: the KV head
  std::atomic<size_t> next{0};
  const double scale = p.softmax_scale, cap = p.softcap;

  const auto work = [&] {
    std::vector<double> keys, values, dk_sum, dv_sum, q(d), dout(dv), dq(d), scores, probs, dprobs;
    for (size_t c; (c = next.fetch_add(1)) < chunks.size();) {
      const int32_t b = chunks[c].b, hk = chunks[c].h;
      const Sequence s = sequence(p, b);
      keys.resize(size_t(s.len_k) * d);
      values.resize(size_t(s.len_k) * dv);
      dk_sum.assign(size_t(s.len_k) * d, 0.0);
      dv_sum.assign(size_t(s.len_k) * dv, 0.0);
      for (int64_t j = 0; j < s.len_k; ++j) {
        const int64_t row = s.k_start + j;
        for (int i = 0; i < d; ++i) keys[j * d + i] = load(p.dtype, p.k, row * p.k_row_stride + hk * p.k_head_stride + i);
        for (int i = 0; i < dv; ++i)
          values[j * dv + i] = load(p.dtype, p.v, row * p.v_row_stride + hk * p.v_head_stride + i);
      }
      for (int32_t h = hk * group; h < (hk + 1) * group; ++h) {
        for (int64_t r = 0; r < s.len_q; ++r) {
          const int64_t row = s.q_start + r;
          std::fill(dq.begin(), dq.end(), 0.0);
          const KeyRange range = visible_keys(p, s, r);
          if (range.first < range.last) {
            for (int i = 0; i < d; ++i) q[i] = load(p.dtype, p.q, row * p.q_row_stride + h * p.q_head_stride + i);
            for (int i = 0; i < dv; ++i)
              dout[i] = load(p.dtype, bp.dout, row * bp.dout_row_stride + h * bp.dout_head_stride + i);
            const int64_t nk = range.last - range.first;
            scores.resize(size_t(nk));
            probs.resize(size_t(nk));
            dprobs.resize(size_t(nk));
            double max_score = -std::numeric_limits<double>::infinity();
            for (int64_t j = 0; j < nk; ++j) {
              const double* kj = &keys[size_t(range.first + j) * d];
              double dot = 0;
              for (int i = 0; i < d; ++i) dot += q[i] * kj[i];
              double sc = scale * dot;
              if (cap > 0) sc = cap * std::tanh(sc / cap);
              scores[j] = sc;
              max_score = std::max(max_score, sc);
            }
            double sum = 0;
            for (int64_t j = 0; j < nk; ++j) sum += std::exp(scores[j] - max_score);
            const double lse = max_score + std::log(sum);
            double dot_sum = 0;  // D = sum_j P_j dP_j
            for (int64_t j = 0; j < nk; ++j) {
              const double* vj = &values[size_t(range.first + j) * dv];
              probs[j] = std::exp(scores[j] - lse);
              double dprob = 0;
              for (int i = 0; i < dv; ++i) dprob += dout[i] * vj[i];
              double* dvj = &dv_sum[size_t(range.first + j) * dv];
              for (int i = 0; i < dv; ++i) dvj[i] += probs[j] * dout[i];
              dprobs[j] = dprob;
              dot_sum += probs[j] * dprob;
            }
            for (int64_t j = 0; j < nk; ++j) {
              // ds / d(q.k): s = cap * tanh(u) with u = scale * q.k / cap, and tanh(u) = s / cap.
              const double slope = cap > 0 ? scale * (1 - (scores[j] / cap) * (scores[j] / cap)) : scale;
              const double g = probs[j] * (dprobs[j] - dot_sum) * slope;
              const double* kj = &keys[size_t(range.first + j) * d];
              double* dkj = &dk_sum[size_t(range.first + j) * d];
              for (int i = 0; i < d; ++i) {
                dq[i] += g * kj[i];
                dkj[i] += g * q[i];
              }
            }
          }
          sink.dq(row, h, dq.data());
        }
      }
      for (int64_t j = 0; j < s.len_k; ++j) {
        sink.dk(s.k_start + j, hk, &dk_sum[size_t(j) * d]);
        sink.dv(s.k_start + j, hk, &dv_sum[size_t(j) * dv]);
      }
    }
  };
  run_workers(chunks.size(), next, work);
}

}  // namespace

void set_reference_pool_hooks(const ReferencePoolHooks& hooks) {
  std::lock_guard lock(hooks_mutex);
  pool_hooks = hooks;
}

void reference_attention(const FwdParams& p, std::span<double> out, std::span<double> lse, Precision precision,
                         double rounding_offset_log2) {
  const int64_t rows = p.is_varlen() ? p.total_q : int64_t(p.batch) * p.seqlen_q;
  const int64_t dv = p.head_dim_v;
  if (!out.empty() && int64_t(out.size()) < rows * p.heads_q * dv)
    fail(Status::invalid_argument, "out", "span holds fewer than rows * heads_q * d_v values");
  if (!lse.empty() && int64_t(lse.size()) < rows * p.heads_q)
    fail(Status::invalid_argument, "lse", "span holds fewer than heads_q * rows values");
  attend(p, [&](int32_t b, int32_t h, const Sequence& s, int64_t r, const double* o, double l) {
    const int64_t row = p.is_varlen() ? s.q_start + r : int64_t(b) * p.seqlen_q + r;
    if (!out.empty()) std::copy(o, o + dv, out.begin() + (row * p.heads_q + h) * dv);
    if (!lse.empty()) lse[h * rows + row] = l;
  }, precision, rounding_offset_log2);
}

void cpu_forward(const FwdParams& p) {
  attend(p, [&](int32_t b, int32_t h, const Sequence& s, int64_t r, const double* o, double l) {
    const int64_t base = b * p.o_batch_stride + (s.q_start + r) * p.o_row_stride + h * p.o_head_stride;
    for (int i = 0; i < p.head_dim_v; ++i) store(p.dtype, p.o, base + i, o[i]);
    if (p.lse) p.lse[b * p.lse_batch_stride + h * p.lse_head_stride + s.q_start + r] = float(l);
  });
  if (p.is_varlen() && p.zero_rows_past_end) {
    for (int64_t row = p.cu_seqlens_q[p.batch]; row < p.total_q; ++row)
      for (int32_t h = 0; h < p.heads_q; ++h) {
        for (int i = 0; i < p.head_dim_v; ++i) store(p.dtype, p.o, row * p.o_row_stride + h * p.o_head_stride + i, 0.0);
        if (p.lse) p.lse[h * p.lse_head_stride + row] = -std::numeric_limits<float>::infinity();
      }
  }
}

void reference_attention_backward(const BwdParams& bp, std::span<double> dq, std::span<double> dk,
                                  std::span<double> dv) {
  const FwdParams& p = bp.fwd;
  if (!p.is_varlen()) fail(Status::invalid_argument, "params", "the backward reference takes varlen params");
  const int64_t d = p.head_dim, dvd = p.head_dim_v;
  if (int64_t(dq.size()) < p.total_q * p.heads_q * d)
    fail(Status::invalid_argument, "dq", "span holds fewer than total_q * heads_q * d values");
  if (int64_t(dk.size()) < p.total_k * p.heads_k * d)
    fail(Status::invalid_argument, "dk", "span holds fewer than total_k * heads_k * d values");
  if (int64_t(dv.size()) < p.total_k * p.heads_k * dvd)
    fail(Status::invalid_argument, "dv", "span holds fewer than total_k * heads_k * d_v values");
  // Rows past the last sequence keep these zeros.
  std::fill(dq.begin(), dq.end(), 0.0);
  std::fill(dk.begin(), dk.end(), 0.0);
  std::fill(dv.begin(), dv.end(), 0.0);
  struct {
    const FwdParams& p;
    std::span<double> dq_, dk_, dv_;
    void dq(int64_t row, int32_t h, const double* x) const {
      std::copy(x, x + p.head_dim, dq_.begin() + (row * p.heads_q + h) * p.head_dim);
    }
    void dk(int64_t row, int32_t hk, const double* x) const {
      std::copy(x, x + p.head_dim, dk_.begin() + (row * p.heads_k + hk) * p.head_dim);
    }
    void dv(int64_t row, int32_t hk, const double* x) const {
      std::copy(x, x + p.head_dim_v, dv_.begin() + (row * p.heads_k + hk) * p.head_dim_v);
    }
  } sink{p, dq, dk, dv};
  differentiate(bp, sink);
}

void cpu_backward(const BwdParams& bp) {
  const FwdParams& p = bp.fwd;
  if (!p.is_varlen()) fail(Status::invalid_argument, "params", "the backward takes varlen params");
  struct {
    const BwdParams& bp;
    void dq(int64_t row, int32_t h, const double* x) const {
      const int64_t base = row * bp.dq_row_stride + h * bp.dq_head_stride;
      for (int i = 0; i < bp.fwd.head_dim; ++i) store(bp.fwd.dtype, bp.dq, base + i, x[i]);
    }
    void dk(int64_t row, int32_t hk, const double* x) const {
      const int64_t base = row * bp.dk_row_stride + hk * bp.dk_head_stride;
      for (int i = 0; i < bp.fwd.head_dim; ++i) store(bp.fwd.dtype, bp.dk, base + i, x[i]);
    }
    void dv(int64_t row, int32_t hk, const double* x) const {
      const int64_t base = row * bp.dv_row_stride + hk * bp.dv_head_stride;
      for (int i = 0; i < bp.fwd.head_dim_v; ++i) store(bp.fwd.dtype, bp.dv, base + i, x[i]);
    }
  } sink{bp};
  differentiate(bp, sink);
  // Rows past the last sequence: zero gradient.
  const std::vector<double> zeros(size_t(std::max(p.head_dim, p.head_dim_v)), 0.0);
  for (int64_t row = p.cu_seqlens_q[p.batch]; row < p.total_q; ++row)
    for (int32_t h = 0; h < p.heads_q; ++h) sink.dq(row, h, zeros.data());
  for (int64_t row = p.cu_seqlens_k[p.batch]; row < p.total_k; ++row)
    for (int32_t hk = 0; hk < p.heads_k; ++hk) {
      sink.dk(row, hk, zeros.data());
      sink.dv(row, hk, zeros.data());
    }
}

}  // namespace vflash
