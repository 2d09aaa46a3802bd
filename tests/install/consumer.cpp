// Consumer of the installed C++ API: a GQA varlen call on host tensors (the CPU
// reference; a GPU is not needed) and a rejected call, whose vflash::Error
// names the argument. Exit status 0 on success.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <vflash/vflash.hpp>

int main() {
  constexpr int64_t heads_q = 4, heads_k = 1, d = 16, total = 7;
  std::vector<int32_t> cu{0, 3, 7};
  std::vector<float> q(total * heads_q * d), k(total * heads_k * d), v(total * heads_k * d),
      out(total * heads_q * d, NAN);
  for (size_t i = 0; i < q.size(); ++i) q[i] = float(std::sin(0.37 * double(i)));
  for (size_t i = 0; i < k.size(); ++i) k[i] = float(std::cos(0.21 * double(i)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(std::sin(0.13 * double(i) + 1));

  vflash::VarlenArgs a;
  a.q = vflash::make_tensor(q.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {total, heads_q, d});
  a.k = vflash::make_tensor(k.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {total, heads_k, d});
  a.v = vflash::make_tensor(v.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {total, heads_k, d});
  a.out = vflash::make_tensor(out.data(), VFLASH_DTYPE_FP32, VFLASH_DEVICE_CPU, {total, heads_q, d});
  a.cu_seqlens_q = a.cu_seqlens_k = vflash::make_tensor(cu.data(), VFLASH_DTYPE_INT32, VFLASH_DEVICE_CPU, {3});
  a.max_seqlen_q = a.max_seqlen_k = 4;
  vflash::varlen_fwd(a);

  // Direct computation (no mask, one KV head shared by all query heads).
  double max_err = 0;
  for (int s = 0; s < 2; ++s)
    for (int i = cu[s]; i < cu[s + 1]; ++i)
      for (int h = 0; h < heads_q; ++h) {
        std::vector<double> p;
        double m = -INFINITY, sum = 0;
        for (int j = cu[s]; j < cu[s + 1]; ++j) {
          double dot = 0;
          for (int c = 0; c < d; ++c) dot += double(q[(i * heads_q + h) * d + c]) * k[j * d + c];
          p.push_back(dot / std::sqrt(double(d)));
          m = std::max(m, p.back());
        }
        for (double& x : p) sum += x = std::exp(x - m);
        for (int c = 0; c < d; ++c) {
          double o = 0;
          for (size_t j = 0; j < p.size(); ++j) o += p[j] / sum * v[(cu[s] + j) * d + c];
          const double err = std::abs(o - out[(i * heads_q + h) * d + c]);
          max_err = std::isnan(err) ? INFINITY : std::max(max_err, err);
        }
      }

  bool rejected = false;
  try {
    a.max_seqlen_q = -1;
    vflash::varlen_fwd(a);
  } catch (const vflash::Error& e) {
    rejected = e.status() == vflash::Status::invalid_argument &&
               std::string(e.what()).find("max_seqlen_q") != std::string::npos;
    std::printf("rejected as expected: %s\n", e.what());
  }
  a.max_seqlen_q = 4;
  std::printf("vflash %s (C++): kernel %s, max error %.2e\n", vflash_version(),
              vflash::varlen_kernel_name(a).c_str(), max_err);
  return max_err < 1e-5 && rejected ? 0 : 1;
}
