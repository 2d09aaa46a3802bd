// `vflash bench`, stage 1 (parse): the workload file, read with nlohmann-json.
#include "bench_workloads.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_core.hpp"

namespace vflash::bench {

double Workload::flops() const { return attention_flops(seqlens, heads_q, head_dim, causal); }

int64_t Workload::total() const {
  int64_t t = 0;
  for (const int s : seqlens) t += s;
  return t;
}

int Workload::max_seqlen() const { return seqlens.empty() ? 0 : *std::max_element(seqlens.begin(), seqlens.end()); }

std::string Workload::describe() const {
  char buf[160];
  if (dense)
    std::snprintf(buf, sizeof buf, "dense b=%d s=%d h=%d d=%d%s", batch, seqlen, heads_q, head_dim,
                  causal ? " causal" : "");
  else
    std::snprintf(buf, sizeof buf, "varlen %zu seqs, %lld tokens (max %d) hq=%d hk=%d d=%d%s", seqlens.size(),
                  static_cast<long long>(total()), max_seqlen(), heads_q, heads_k, head_dim, causal ? " causal" : "");
  return buf;
}

namespace {

using nlohmann::json;

// Line and column (both from 1) of byte `offset` of `text`.
std::string position(const std::string& text, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "JSON line " + std::to_string(line) + ", column " + std::to_string(column);
}

// The checks of one file, each failure naming the member at fault.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  std::vector<Workload> read() {
    std::ifstream in(file_, std::ios::binary);
    if (!in) throw std::runtime_error(file_ + ": cannot open");
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    json root;
    try {
      root = json::parse(text);
    } catch (const json::parse_error& e) {
      // e.what() is "[json.exception.parse_error.101] parse error at line L, column C: <what>".
      const std::string what = e.what();
      const size_t colon = what.find(": ");
      throw std::runtime_error(file_ + ": " + position(text, e.byte == 0 ? 0 : e.byte - 1) + ": " +
                               (colon == std::string::npos ? what : what.substr(colon + 2)));
    }
    if (!root.is_object()) fail("the document", "must be an object with \"dense\" and/or \"varlen\"");
    std::vector<Workload> out;
    for (const char* section : {"dense", "varlen"}) {
      const auto list = root.find(section);
      if (list == root.end()) continue;
      if (!list->is_array()) fail(section, "must be an array of workloads");
      for (size_t i = 0; i < list->size(); ++i) {
        where_ = std::string(section) + "[" + std::to_string(i) + "]";
        const json& item = (*list)[i];
        if (!item.is_object()) fail("", "must be an object");
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

  const json& member(const json& o, const char* key) const {
    const auto v = o.find(key);
    if (v == o.end()) fail(key, "is required");
    return *v;
  }

  // A whole number in [lo, 2^31) (8 and 8.0 alike).
  int integer(const json& v, const char* key, int lo) const {
    const double x = v.is_number() ? v.get<double>() : NAN;
    if (!(x == std::floor(x) && x >= lo && x <= 2147483647.0))
      fail(key, "must be an integer in [" + std::to_string(lo) + ", 2^31)");
    return int(x);
  }
  int integer(const json& o, const char* key) const { return integer(member(o, key), key, 1); }

  std::string text(const json& o, const char* key) const {
    const json& v = member(o, key);
    if (!v.is_string() || v.get_ref<const std::string&>().empty()) fail(key, "must be a non-empty string");
    return v.get<std::string>();
  }

  bool flag(const json& o, const char* key) const {
    const auto v = o.find(key);
    if (v == o.end()) return false;
    if (!v->is_boolean()) fail(key, "must be true or false");
    return v->get<bool>();
  }

  Workload dense(const json& o) const {
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
  std::vector<int> seqlens(const json& v) const {
    std::vector<int> out;
    if (v.is_array()) {
      for (const json& item : v) out.push_back(integer(item, "seqlens", 0));
    } else if (v.is_string()) {
      const std::string& s = v.get_ref<const std::string&>();
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

  Workload varlen(const json& o) const {
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

}  // namespace

std::vector<Workload> read_workloads(const std::string& file) { return Reader(file).read(); }

}  // namespace vflash::bench
