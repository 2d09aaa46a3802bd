// `vflash bench <workloads.json>`: times each workload of a JSON file (the
// schema of shared/bench/workloads.json) on the GPU with random bf16 inputs.
// Per workload and kernel it prints the median time of many runs (CUDA events,
// L2 flushed before each run), TFLOP/s at the true head dim (4 * Sq * Sk * H * D
// per sequence over the pairs the mask keeps) and the share of a bf16 matmul
// peak measured with cuBLAS on the same GPU in the same run.
#include "bench.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dispatch.hpp"
#include "dtype.hpp"
#include "registry.hpp"
#include "validate.hpp"
#include "vflash/vflash.hpp"

namespace {

// ---------------------------------------------------------------- JSON
// A small strict JSON reader (RFC 8259) for the workload files: no new
// dependency for one file format.

struct JsonValue {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> items;
  std::vector<std::pair<std::string, JsonValue>> members;

  const JsonValue* find(std::string_view key) const {
    for (const auto& [k, v] : members)
      if (k == key) return &v;
    return nullptr;
  }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  JsonValue parse_document() {
    JsonValue v = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after the document");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;  // bounds recursion on hostile input
  std::string_view text_;
  size_t pos_ = 0;

  [[noreturn]] void error(const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    throw std::runtime_error("JSON line " + std::to_string(line) + ", column " + std::to_string(column) + ": " +
                             what);
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }

  JsonValue parse_value(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than 64 levels");
    skip_space();
    JsonValue v;
    switch (peek()) {
      case '{': parse_object(v, depth); break;
      case '[': parse_array(v, depth); break;
      case '"':
        v.kind = JsonValue::Kind::string;
        v.string = parse_string();
        break;
      case 't': literal("true"); v.kind = JsonValue::Kind::boolean; v.boolean = true; break;
      case 'f': literal("false"); v.kind = JsonValue::Kind::boolean; break;
      case 'n': literal("null"); break;
      default:
        v.kind = JsonValue::Kind::number;
        v.number = parse_number();
    }
    return v;
  }

  void literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) error("invalid literal");
    pos_ += word.size();
  }

  void parse_object(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::object;
    expect('{');
    skip_space();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_space();
      if (peek() != '"') error("expected a member name in quotes");
      std::string key = parse_string();
      skip_space();
      expect(':');
      v.members.emplace_back(std::move(key), parse_value(depth + 1));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return;
    }
  }

  void parse_array(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::array;
    expect('[');
    skip_space();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      v.items.push_back(parse_value(depth + 1));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return;
    }
  }

  unsigned hex4() {
    if (pos_ + 4 > text_.size()) error("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') code |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') code |= unsigned(c - 'A' + 10);
      else error("invalid hex digit in \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3f));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= text_.size()) error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) error("unterminated escape");
      switch (const char e = text_[pos_++]) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {  // high surrogate: a low one must follow
            if (text_.substr(pos_, 2) != "\\u") error("unpaired surrogate in \\u escape");
            pos_ += 2;
            const unsigned low = hex4();
            if (low < 0xdc00 || low >= 0xe000) error("unpaired surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            error("unpaired surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: error("invalid escape");
      }
    }
  }

  double parse_number() {
    const size_t start = pos_;
    const auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (digits() == 0) {
      error("expected a value");
    }
    if (peek() == '.') {
      ++pos_;
      if (digits() == 0) error("expected digits after '.'");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (digits() == 0) error("expected digits in the exponent");
    }
    return std::strtod(std::string(text_.substr(start, pos_ - start)).c_str(), nullptr);
  }
};

// ---------------------------------------------------------------- workloads

struct Workload {
  std::string name;
  bool dense = false;
  int batch = 0, seqlen = 0;  // dense
  std::vector<int> seqlens;   // varlen (dense: batch copies of seqlen)
  int heads_q = 0, heads_k = 0, head_dim = 0;
  bool causal = false;

  // Query/key pairs the mask keeps, summed over sequences (Sq == Sk; causal
  // aligned bottom-right keeps s (s + 1) / 2 of them).
  double pairs() const {
    double n = 0;
    for (int s : seqlens) n += causal ? 0.5 * double(s) * (double(s) + 1) : double(s) * double(s);
    return n;
  }
  double flops() const { return 4.0 * pairs() * heads_q * head_dim; }
  int64_t total() const {
    int64_t t = 0;
    for (int s : seqlens) t += s;
    return t;
  }
  int max_seqlen() const { return seqlens.empty() ? 0 : *std::max_element(seqlens.begin(), seqlens.end()); }
};

class WorkloadReader {
 public:
  explicit WorkloadReader(std::string file) : file_(std::move(file)) {}

  std::vector<Workload> read() {
    std::ifstream in(file_, std::ios::binary);
    if (!in) throw std::runtime_error(file_ + ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    JsonValue root;
    try {
      root = JsonParser(text.str()).parse_document();
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(file_ + ": " + e.what());
    }
    if (root.kind != JsonValue::Kind::object) fail("the document", "must be an object with \"dense\" and/or \"varlen\"");
    std::vector<Workload> out;
    for (const char* section : {"dense", "varlen"}) {
      const JsonValue* list = root.find(section);
      if (!list) continue;
      if (list->kind != JsonValue::Kind::array) fail(section, "must be an array of workloads");
      for (size_t i = 0; i < list->items.size(); ++i) {
        where_ = std::string(section) + "[" + std::to_string(i) + "]";
        const JsonValue& item = list->items[i];
        if (item.kind != JsonValue::Kind::object) fail("", "must be an object");
        out.push_back(section[0] == 'd' ? dense(item) : varlen(item));
      }
    }
    if (out.empty()) fail("the document", "holds no workload (expected \"dense\" and/or \"varlen\" arrays)");
    return out;
  }

 private:
  std::string file_;
  std::string where_;

  [[noreturn]] void fail(const std::string& field, const std::string& rule) const {
    std::string place = where_;
    if (!field.empty()) place += place.empty() ? field : "." + field;
    throw std::runtime_error(file_ + ": " + place + ": " + rule);
  }

  const JsonValue& member(const JsonValue& o, const char* key) const {
    const JsonValue* v = o.find(key);
    if (!v) fail(key, "is required");
    return *v;
  }

  int integer(const JsonValue& v, const char* key, int lo) const {
    if (v.kind != JsonValue::Kind::number || v.number != std::floor(v.number) || v.number < lo ||
        v.number > 2147483647.0)
      fail(key, "must be an integer in [" + std::to_string(lo) + ", 2^31)");
    return int(v.number);
  }
  int integer(const JsonValue& o, const char* key) const { return integer(member(o, key), key, 1); }

  std::string text(const JsonValue& o, const char* key) const {
    const JsonValue& v = member(o, key);
    if (v.kind != JsonValue::Kind::string || v.string.empty()) fail(key, "must be a non-empty string");
    return v.string;
  }

  bool flag(const JsonValue& o, const char* key) const {
    const JsonValue* v = o.find(key);
    if (!v) return false;
    if (v->kind != JsonValue::Kind::boolean) fail(key, "must be true or false");
    return v->boolean;
  }

  Workload dense(const JsonValue& o) {
    Workload w;
    w.name = text(o, "name");
    w.dense = true;
    w.batch = integer(o, "batch");
    w.seqlen = integer(o, "seqlen");
    w.heads_q = w.heads_k = integer(o, "heads");
    w.head_dim = integer(o, "head_dim");
    w.causal = flag(o, "causal");
    w.seqlens.assign(size_t(w.batch), w.seqlen);
    return w;
  }

  // "seqlens": [l0, l1, ...] or "NxL" (N sequences of length L).
  std::vector<int> seqlens(const JsonValue& v) const {
    std::vector<int> out;
    if (v.kind == JsonValue::Kind::array) {
      for (const JsonValue& item : v.items) out.push_back(integer(item, "seqlens", 0));
    } else if (v.kind == JsonValue::Kind::string) {
      const std::string& s = v.string;
      const size_t x = s.find('x');
      const auto whole = [&](const std::string& part) {
        if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos)
          fail("seqlens", "must be \"NxL\" with decimal N >= 1 and L >= 0, got \"" + s + "\"");
        return std::stoi(part);
      };
      if (x == std::string::npos) fail("seqlens", "must be \"NxL\", got \"" + s + "\"");
      const int n = whole(s.substr(0, x)), len = whole(s.substr(x + 1));
      if (n < 1) fail("seqlens", "must have N >= 1 sequences, got \"" + s + "\"");
      out.assign(size_t(n), len);
    } else {
      fail("seqlens", "must be an array of lengths or a string \"NxL\"");
    }
    if (out.empty()) fail("seqlens", "must hold at least one sequence");
    return out;
  }

  Workload varlen(const JsonValue& o) {
    Workload w;
    w.name = text(o, "name");
    w.seqlens = seqlens(member(o, "seqlens"));
    w.heads_q = integer(o, "heads_q");
    w.heads_k = integer(o, "heads_k");
    w.head_dim = integer(o, "head_dim");
    w.causal = flag(o, "causal");
    if (w.total() > 2147483647) fail("seqlens", "total tokens must be < 2^31");
    return w;
  }
};

// ---------------------------------------------------------------- CUDA

void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}
#define CUDA_CHECK(expr) cuda_check((expr), #expr)

void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(status)));
}

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Random bf16 values in [-2, 2), generated once and copied out in slices.
class RandomBf16 {
 public:
  explicit RandomBf16(size_t count) : values_(count) {
    uint64_t state = 0x9e3779b97f4a7c15ull ^ uint64_t(std::random_device{}());
    for (uint16_t& v : values_) {
      state ^= state >> 12;
      state ^= state << 25;
      state ^= state >> 27;
      const uint64_t bits = state * 0x2545f4914f6cdd1dull;
      v = vflash::float_to_bf16(float(double(bits >> 11) * 0x1p-53 * 4.0 - 2.0));
    }
  }
  // Copies `count` values starting at `offset` (wrapping) to device memory.
  void fill(void* dst, size_t count, size_t offset) const {
    auto* out = static_cast<uint16_t*>(dst);
    size_t done = 0;
    while (done < count) {
      const size_t from = (offset + done) % values_.size();
      const size_t n = std::min(count - done, values_.size() - from);
      CUDA_CHECK(cudaMemcpy(out + done, values_.data() + from, n * 2, cudaMemcpyHostToDevice));
      done += n;
    }
  }

 private:
  std::vector<uint16_t> values_;
};

// Times `launch` on `stream`: a few warm-up runs, then enough runs to fill
// `budget_ms` of GPU time (at least 10, at most 200); before each run a memset
// of `flush` evicts L2. Returns the median of the per-run CUDA-event times, in ms.
template <typename Launch>
double median_ms(Launch&& launch, const DeviceBuffer& flush, cudaStream_t stream, double budget_ms) {
  const auto run = [&](cudaEvent_t start, cudaEvent_t stop, int i) {
    CUDA_CHECK(cudaMemsetAsync(flush.get(), i & 0xff, flush.bytes(), stream));
    CUDA_CHECK(cudaEventRecord(start, stream));
    launch();
    CUDA_CHECK(cudaEventRecord(stop, stream));
  };
  cudaEvent_t probe_start, probe_stop;
  CUDA_CHECK(cudaEventCreate(&probe_start));
  CUDA_CHECK(cudaEventCreate(&probe_stop));
  for (int i = 0; i < 3; ++i) run(probe_start, probe_stop, i);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  float probe_ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&probe_ms, probe_start, probe_stop));
  cudaEventDestroy(probe_start);
  cudaEventDestroy(probe_stop);

  const int runs = std::clamp(int(budget_ms / std::max(double(probe_ms), 1e-3)), 10, 200);
  const size_t count = size_t(runs);
  std::vector<cudaEvent_t> starts(count), stops(count);
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventCreate(&starts[size_t(i)]));
    CUDA_CHECK(cudaEventCreate(&stops[size_t(i)]));
  }
  for (int i = 0; i < runs; ++i) run(starts[size_t(i)], stops[size_t(i)], i);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms(count);
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventElapsedTime(&ms[size_t(i)], starts[size_t(i)], stops[size_t(i)]));
    cudaEventDestroy(starts[size_t(i)]);
    cudaEventDestroy(stops[size_t(i)]);
  }
  std::nth_element(ms.begin(), ms.begin() + runs / 2, ms.end());
  return ms[size_t(runs / 2)];
}

// bf16 GEMM 8192^3 with fp32 accumulation through cuBLAS: the tensor-core
// throughput this GPU actually reaches, the yardstick of the % column.
double matmul_peak_tflops(const DeviceBuffer& flush, cudaStream_t stream, const RandomBf16& random, double budget_ms) {
  constexpr int n = 8192;
  const size_t count = size_t(n) * n;
  DeviceBuffer a(count * 2), b(count * 2), c(count * 2);
  random.fill(a.get(), count, 0);
  random.fill(b.get(), count, 7919);
  cublasHandle_t handle;
  cublas_check(cublasCreate(&handle), "cublasCreate");
  struct HandleGuard {
    cublasHandle_t h;
    ~HandleGuard() { cublasDestroy(h); }
  } guard{handle};
  cublas_check(cublasSetStream(handle, stream), "cublasSetStream");
  const float alpha = 1.f, beta = 0.f;
  const double ms = median_ms(
      [&] {
        cublas_check(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a.get(), CUDA_R_16BF, n, b.get(),
                                  CUDA_R_16BF, n, &beta, c.get(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT),
                     "cublasGemmEx");
      },
      flush, stream, budget_ms);
  return 2.0 * double(n) * n * n / ms / 1e9;
}

// ---------------------------------------------------------------- one workload

// Inputs, output and the argument block of one workload on the GPU.
class Problem {
 public:
  Problem(const Workload& w, const RandomBf16& random, int device, cudaStream_t stream)
      : w_(w),
        q_(size_t(w.total()) * w.heads_q * w.head_dim * 2),
        k_(size_t(w.total()) * w.heads_k * w.head_dim * 2),
        v_(k_.bytes()),
        out_(q_.bytes()),
        cu_(w.dense ? 0 : (w.seqlens.size() + 1) * sizeof(int32_t)) {
    random.fill(q_.get(), q_.bytes() / 2, 0);
    random.fill(k_.get(), k_.bytes() / 2, 104729);
    random.fill(v_.get(), v_.bytes() / 2, 1299709);
    const auto tensor = [&](const DeviceBuffer& b, int heads) {
      return w.dense ? vflash::make_tensor(b.get(), VFLASH_DTYPE_BF16, device, {w.batch, w.seqlen, heads, w.head_dim})
                     : vflash::make_tensor(b.get(), VFLASH_DTYPE_BF16, device, {w.total(), heads, w.head_dim});
    };
    if (w.dense) {
      dense_.q = tensor(q_, w.heads_q);
      dense_.k = tensor(k_, w.heads_k);
      dense_.v = tensor(v_, w.heads_k);
      dense_.out = tensor(out_, w.heads_q);
      dense_.causal = w.causal;
      dense_.stream = stream;
    } else {
      std::vector<int32_t> cu(w.seqlens.size() + 1, 0);
      for (size_t i = 0; i < w.seqlens.size(); ++i) cu[i + 1] = cu[i] + w.seqlens[i];
      CUDA_CHECK(cudaMemcpy(cu_.get(), cu.data(), cu_.bytes(), cudaMemcpyHostToDevice));
      const int64_t count = int64_t(cu.size());
      varlen_.q = tensor(q_, w.heads_q);
      varlen_.k = tensor(k_, w.heads_k);
      varlen_.v = tensor(v_, w.heads_k);
      varlen_.out = tensor(out_, w.heads_q);
      varlen_.cu_seqlens_q = vflash::make_tensor(cu_.get(), VFLASH_DTYPE_INT32, device, {count});
      varlen_.cu_seqlens_k = varlen_.cu_seqlens_q;
      varlen_.max_seqlen_q = varlen_.max_seqlen_k = w.max_seqlen();
      varlen_.causal = w.causal;
      varlen_.stream = stream;
    }
  }

  // The kernel dispatch picks for this call under the current forcing, or
  // nullopt with the reasons in `why`.
  std::optional<std::string> kernel(const vflash::DeviceInfo& device, std::string& why) const {
    const vflash::FwdParams params = w_.dense ? vflash::validate_dense(dense_) : vflash::validate_varlen(varlen_);
    const vflash::Decision decision = vflash::select_kernel(params, device);
    if (decision.kernel) return std::string(decision.kernel->name);
    why = vflash::describe_rejections(decision);
    return std::nullopt;
  }

  // Sizes and attaches the workspace (outside the timed region).
  void prepare() {
    const size_t bytes = w_.dense ? vflash::dense_workspace_size(dense_) : vflash::varlen_workspace_size(varlen_);
    workspace_.reset();
    if (bytes) workspace_ = std::make_unique<DeviceBuffer>(bytes);
    void* ptr = workspace_ ? workspace_->get() : nullptr;
    dense_.workspace = varlen_.workspace = ptr;
    dense_.workspace_bytes = varlen_.workspace_bytes = bytes;
  }

  void launch() const {
    if (w_.dense) {
      vflash::dense_fwd(dense_);
    } else {
      vflash::varlen_fwd(varlen_);
    }
  }

 private:
  const Workload& w_;
  DeviceBuffer q_, k_, v_, out_, cu_;
  std::unique_ptr<DeviceBuffer> workspace_;
  vflash::DenseArgs dense_;
  vflash::VarlenArgs varlen_;
};

// ---------------------------------------------------------------- CLI

struct Options {
  std::string file;
  std::optional<std::string> kernel;
  bool all_kernels = false;
  bool list = false;
  std::optional<std::string> json_out;
  double budget_ms = 300;
};

void usage(FILE* to) {
  std::fprintf(to,
               "usage: vflash bench <workloads.json> [--kernel NAME | --all-kernels] [--list] [--json OUT]\n"
               "                    [--budget-ms MS]\n"
               "  Times each workload (bf16, random inputs) with CUDA events: median ms, TFLOP/s at the\n"
               "  true head dim, %% of a bf16 cuBLAS matmul measured in the same run.\n"
               "  --kernel NAME   force this kernel (default: the one dispatch picks)\n"
               "  --all-kernels   run every kernel of this build that serves each workload\n"
               "  --list          print the parsed workloads and their FLOPs; needs no GPU\n"
               "  --json OUT      also write the results as JSON\n"
               "  --budget-ms MS  GPU time to spend timing each case (default 300; 10 to 200 runs)\n"
               "  Exit codes: 0 ok, 1 bad arguments or a failed run, 2 no CUDA GPU.\n");
}

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--kernel") o.kernel = value();
    else if (arg == "--all-kernels") o.all_kernels = true;
    else if (arg == "--list") o.list = true;
    else if (arg == "--json") o.json_out = value();
    else if (arg == "--budget-ms") {
      const std::string text = value();
      char* end = nullptr;
      o.budget_ms = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !(o.budget_ms > 0))
        throw std::runtime_error("--budget-ms needs a positive number, got " + text);
    }
    else if (arg == "-h" || arg == "--help") return std::nullopt;
    else if (!arg.empty() && arg[0] == '-') throw std::runtime_error("unknown option " + arg);
    else if (o.file.empty()) o.file = arg;
    else throw std::runtime_error("more than one workload file given");
  }
  if (o.file.empty()) throw std::runtime_error("no workload file given");
  if (o.kernel && o.all_kernels) throw std::runtime_error("--kernel and --all-kernels exclude each other");
  return o;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string describe(const Workload& w) {
  char buf[160];
  if (w.dense)
    std::snprintf(buf, sizeof buf, "dense b=%d s=%d h=%d d=%d%s", w.batch, w.seqlen, w.heads_q, w.head_dim,
                  w.causal ? " causal" : "");
  else
    std::snprintf(buf, sizeof buf, "varlen %zu seqs, %lld tokens (max %d) hq=%d hk=%d d=%d%s", w.seqlens.size(),
                  static_cast<long long>(w.total()), w.max_seqlen(), w.heads_q, w.heads_k, w.head_dim,
                  w.causal ? " causal" : "");
  return buf;
}

struct Row {
  std::string workload, kernel, note;
  double ms = 0, tflops = 0, percent = 0;
  bool ok = false;
};

}  // namespace

namespace vflash::cli {

int run_bench(int argc, char** argv) {
  Options options;
  std::vector<Workload> workloads;
  try {
    const auto parsed = parse_options(argc, argv);
    if (!parsed) {
      usage(stdout);
      return 0;
    }
    options = *parsed;
    workloads = WorkloadReader(options.file).read();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vflash bench: %s\n", e.what());
    usage(stderr);
    return 1;
  }

  if (options.list) {
    for (const Workload& w : workloads)
      std::printf("%-32s %-64s %10.1f GFLOP\n", w.name.c_str(), describe(w).c_str(), w.flops() / 1e9);
    return 0;
  }

  int device_count = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&device_count); err != cudaSuccess || device_count == 0) {
    std::fprintf(stderr, "vflash bench: no usable CUDA GPU (%s); the benchmark needs one (--list works without)\n",
                 err != cudaSuccess ? cudaGetErrorString(err) : "no device found");
    return 2;
  }

  std::vector<Row> rows;
  bool failed = false;
  try {
    int ordinal = 0;
    CUDA_CHECK(cudaGetDevice(&ordinal));
    const vflash::DeviceInfo device = vflash::query_device(ordinal);
    if (!device.present) {
      std::fprintf(stderr, "vflash bench: no usable CUDA GPU (%s)\n", device.absent_reason.c_str());
      return 2;
    }
    int l2_bytes = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, ordinal));
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    // At least twice L2, so that no input of the previous run stays cached.
    const DeviceBuffer flush(std::max<size_t>(2 * size_t(l2_bytes), 64u << 20));

    size_t largest = size_t(8192) * 8192;  // the matmul operands
    for (const Workload& w : workloads)
      largest = std::max(largest, size_t(w.total()) * w.heads_q * w.head_dim);
    const RandomBf16 random(std::min<size_t>(largest, size_t(64) << 20));

    const double peak = matmul_peak_tflops(flush, stream, random, options.budget_ms);
    std::printf("vflash bench: %s (cc %s), L2 %d MiB, vflash %s\n", device.name.c_str(),
                vflash::arch::to_string(device.cc).c_str(), l2_bytes >> 20, vflash_version());
    std::printf("bf16 matmul 8192^3 (cuBLAS): %.1f TFLOP/s\n\n", peak);
    std::printf("%-32s %-22s %10s %9s %9s\n", "workload", "kernel", "median ms", "TFLOP/s", "% matmul");
    std::fflush(stdout);

    std::vector<std::optional<std::string>> forcings;
    if (options.all_kernels) {
      for (const vflash::KernelInfo& k : vflash::cuda_kernels()) forcings.emplace_back(k.name);
    } else {
      forcings.push_back(options.kernel);  // nullopt: leave dispatch (and VFLASH_FORCE_KERNEL) alone
    }

    for (const Workload& w : workloads) {
      Problem problem(w, random, ordinal, stream);
      for (const auto& forcing : forcings) {
        Row row;
        row.workload = w.name;
        bool started = false;  // the row's name is printed; its numbers follow
        const auto finish_row = [&] {
          if (!started) std::printf("%-32s %-22s ", row.workload.c_str(), row.kernel.c_str());
          if (row.ok)
            std::printf("%10.3f %9.1f %8.1f%%\n", row.ms, row.tflops, row.percent);
          else
            std::printf("%s\n", row.note.c_str());
          std::fflush(stdout);
        };
        try {
          if (forcing) vflash::set_forced_kernel(*forcing);
          std::string why;
          const auto name = problem.kernel(device, why);
          if (!name) {
            row.kernel = forcing.value_or("(none)");
            row.note = "skipped: " + why;
            // Forcing every kernel in turn: one that does not serve this workload is no failure.
            if (!options.all_kernels) failed = true;
          } else {
            row.kernel = *name;
            // Name the case before timing it, so that a kernel that never returns is identified.
            std::printf("%-32s %-22s ", row.workload.c_str(), row.kernel.c_str());
            std::fflush(stdout);
            started = true;
            problem.prepare();
            row.ms = median_ms([&] { problem.launch(); }, flush, stream, options.budget_ms);
            row.tflops = w.flops() / row.ms / 1e9;
            row.percent = 100.0 * row.tflops / peak;
            row.ok = true;
          }
        } catch (const std::exception& e) {
          row.kernel = row.kernel.empty() ? forcing.value_or("(dispatch)") : row.kernel;
          row.note = std::string("failed: ") + e.what();
          failed = true;
          // A CUDA error that poisons the context ends the run: later rows would only repeat it.
          if (cudaDeviceSynchronize() != cudaSuccess) {
            finish_row();
            throw;
          }
        }
        finish_row();
        rows.push_back(row);
      }
      if (options.kernel || options.all_kernels) vflash::set_forced_kernel(std::nullopt);
    }
    cudaStreamDestroy(stream);

    if (options.json_out) {
      std::ofstream out(*options.json_out);
      out << "{\"device\": \"" << json_escape(device.name) << "\", \"cc\": \"" << vflash::arch::to_string(device.cc)
          << "\", \"matmul_tflops\": " << peak << ", \"rows\": [";
      for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        out << (i ? ",\n  " : "\n  ") << "{\"case\": \"" << json_escape(r.workload) << "\", \"kernel\": \""
            << json_escape(r.kernel) << "\", ";
        if (r.ok)
          out << "\"ms\": " << r.ms << ", \"tflops\": " << r.tflops << ", \"pct_matmul\": " << r.percent << "}";
        else
          out << "\"error\": \"" << json_escape(r.note) << "\"}";
      }
      out << "\n]}\n";
      if (!out) throw std::runtime_error(*options.json_out + ": cannot write");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vflash bench: %s\n", e.what());
    return 1;
  }
  return failed ? 1 : 0;
}

}  // namespace vflash::cli
