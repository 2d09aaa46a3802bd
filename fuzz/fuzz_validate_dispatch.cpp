// libFuzzer target over the host-side front door: argument validation
// (validate_varlen / validate_dense), kernel selection under a pretended
// capability, the CPU reference on what validation accepts, and the
// architecture parsers. Nothing here may crash, trip a sanitizer or trap.
//
// Input decoding: a mostly consistent call is built from a few fuzzed
// parameters (so that deep rules are reached), then up to four raw field
// mutations break it anywhere. Host tensors point into allocations of exactly
// their declared extent, so ASan catches any read or write outside a tensor
// by validation or the reference. cu_seqlens arrays hold exactly
// shape[0] entries when validation may read them (host tensors, host copies).
//
// Properties checked (trap on violation): accepted params satisfy the
// documented invariants; a chosen kernel declares support for the call and its
// target runs on the pretended capability (over the build's registry and over
// synthetic tables); parsed capabilities and targets print back to themselves.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "arch.hpp"
#include "dispatch.hpp"
#include "reference/reference.hpp"
#include "validate.hpp"

namespace vflash {
namespace {

constexpr int64_t kMaxElements = 1 << 16;  // per host tensor the harness allocates

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct AlignedDelete {
  void operator()(unsigned char* p) const { ::operator delete(p, std::align_val_t(16)); }
};
using Block = std::unique_ptr<unsigned char, AlignedDelete>;

// Owns every allocation the call's tensors point into.
struct Arena {
  std::vector<Block> blocks;
  bool runnable = true;  // every host tensor got memory for its full extent

  void* alloc(size_t bytes) {
    // Exact size, so any access past it hits ASan's redzone (16-byte aligned base).
    auto* p = static_cast<unsigned char*>(::operator new(std::max<size_t>(bytes, 1), std::align_val_t(16)));
    blocks.emplace_back(p);
    return p;
  }
};

size_t elem_bytes(int32_t dtype) { return dtype == VFLASH_DTYPE_FP16 || dtype == VFLASH_DTYPE_BF16 ? 2 : 4; }

int32_t dtype_code(const vflash_tensor& t) {
  int32_t code;
  std::memcpy(&code, &t.dtype, sizeof code);
  return code;
}

// Elements from the first to one past the last addressed element, saturated;
// -1 when the descriptor is too wild to allocate for.
int64_t extent(const vflash_tensor& t) {
  if (t.ndim < 1 || t.ndim > 4) return -1;
  int64_t last = 0;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0) return -1;
    if (t.shape[i] == 0) return 0;
  }
  for (int i = 0; i < t.ndim; ++i) {
    int64_t step;
    if (t.stride[i] < 0 || __builtin_mul_overflow(t.stride[i], t.shape[i] - 1, &step) ||
        __builtin_add_overflow(last, step, &last))
      return -1;
  }
  return __builtin_add_overflow(last, 1, &last) ? -1 : last;
}

// Points a host tensor at memory of its exact extent (plus its misalignment
// offset); a too-large or wild one gets a small block and the call is not run.
void place(Arena& arena, vflash_tensor& t, size_t misalign) {
  if (t.device != VFLASH_DEVICE_CPU) {
    // Device memory is never dereferenced on the host: any address will do.
    t.data = reinterpret_cast<void*>(uintptr_t(0x7f0000000000) + misalign);
    return;
  }
  const int64_t n = extent(t);
  if (n < 0 || n > kMaxElements) {
    arena.runnable = false;
    t.data = static_cast<unsigned char*>(arena.alloc(64)) + misalign % 16;
    return;
  }
  unsigned char* p = static_cast<unsigned char*>(arena.alloc(size_t(n) * elem_bytes(dtype_code(t)) + misalign));
  // Finite values: the reference's arithmetic stays defined (NaN/inf inputs are
  // legal too, but make no difference to memory safety).
  std::memset(p, 0, size_t(n) * elem_bytes(dtype_code(t)) + misalign);
  t.data = p + misalign;
}

vflash_tensor tensor(int32_t dtype, int32_t device, std::initializer_list<int64_t> shape, bool heads_major,
                     int64_t pad) {
  vflash_tensor t{};
  std::memcpy(&t.dtype, &dtype, sizeof dtype);
  t.device = device;
  t.ndim = int32_t(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  // Row-major with padding; heads-major swaps the token and head dimensions' order.
  const int nd = t.ndim;
  t.stride[nd - 1] = 1;
  if (nd >= 3) {
    const int tok = nd - 3, head = nd - 2;
    const int64_t dim = t.shape[nd - 1] + pad;
    if (heads_major) {
      t.stride[tok] = dim;
      t.stride[head] = t.shape[tok] * dim + pad;
      if (nd == 4) t.stride[0] = t.shape[head] * t.stride[head];
    } else {
      t.stride[head] = dim;
      t.stride[tok] = t.shape[head] * dim + pad;
      if (nd == 4) t.stride[0] = t.shape[tok] * t.stride[tok];
    }
  } else {
    for (int j = nd - 2; j >= 0; --j) t.stride[j] = t.stride[j + 1] * t.shape[j + 1];
  }
  return t;
}

// Changes one field of one tensor: mostly a shape or stride nudged by a small
// delta (off-by-one descriptors are the ones a missing rule would let through),
// else a small or arbitrary value, or the ndim, dtype or device.
void mutate(FuzzedDataProvider& in, vflash_tensor* const* tensors, int count) {
  vflash_tensor& t = *tensors[in.ConsumeIntegralInRange(0, count - 1)];
  const int i = in.ConsumeIntegralInRange(0, 3);
  const auto value = [&](int64_t old) -> int64_t {
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0:
      case 1: {
        int64_t v;
        return __builtin_add_overflow(old, in.ConsumeIntegralInRange<int64_t>(-3, 3), &v) ? old : v;
      }
      case 2: return in.ConsumeIntegralInRange<int64_t>(-3, 300);
      default: return in.ConsumeIntegral<int64_t>();
    }
  };
  switch (in.ConsumeIntegralInRange(0, 9)) {
    case 0: case 1: case 2: case 3: t.shape[i] = value(t.shape[i]); break;
    case 4: case 5: case 6: t.stride[i] = value(t.stride[i]); break;
    case 7: t.ndim = int32_t(value(t.ndim)); break;
    case 8: {
      const auto code = int32_t(value(dtype_code(t)));
      std::memcpy(&t.dtype, &code, sizeof code);
      break;
    }
    default: t.device = int32_t(value(t.device)); break;
  }
}

// Invariants kernels rely on (validate.hpp / params.hpp).
void check_params(const FwdParams& p) {
  check(p.heads_q > 0 && p.heads_k > 0 && p.heads_q % p.heads_k == 0);
  check(p.head_dim % 8 == 0 && p.head_dim >= 8 && p.head_dim <= 256);
  check(p.head_dim_v % 8 == 0 && p.head_dim_v >= 8 && p.head_dim_v <= 256);
  check(std::isfinite(p.softmax_scale) && p.softmax_scale >= 0.f);
  check(std::isfinite(p.softcap) && p.softcap >= 0.f);
  check(p.window_left >= -1 && p.window_right >= -1 && (!p.causal || p.window_right == 0));
  check(p.batch >= 0 && p.total_q >= 0 && p.total_k >= 0);
  check(p.max_seqlen_q >= 0 && p.max_seqlen_q <= p.total_q && p.max_seqlen_k >= 0 && p.max_seqlen_k <= p.total_k);
  // A window side that masks nothing is -1, so kernels never add a huge bound.
  check(p.causal || p.window_right < p.max_seqlen_q);
  check(p.window_left < p.max_seqlen_k);
  // Room for kernels' tile rounding in int32.
  check(p.total_q <= INT32_MAX - 1024 && p.total_k <= INT32_MAX - 1024);
  const int64_t align = p.dtype == DType::fp32 ? 4 : 8;
  for (int64_t s : {p.q_row_stride, p.q_head_stride, p.k_row_stride, p.k_head_stride, p.v_row_stride,
                    p.v_head_stride, p.o_row_stride, p.o_head_stride})
    check(s > 0 && s % align == 0);
  for (const void* ptr : {p.q, p.k, p.v, static_cast<const void*>(p.o)})
    check(reinterpret_cast<uintptr_t>(ptr) % 16 == 0);
}

// Whether `k` may serve `p` by its declared data (what dispatch must ensure).
bool declares_support(const KernelInfo& k, const FwdParams& p) {
  if (!(k.dtypes & dtype_bit(p.dtype)) || (features_of(p) & ~k.features)) return false;
  for (const HeadDimRule& r : k.head_dims)
    if (p.head_dim >= r.d_min && p.head_dim <= r.d_max && (p.head_dim - r.d_min) % r.d_step == 0 &&
        p.head_dim_v >= r.dv_min && p.head_dim_v <= r.dv_max && (p.head_dim_v - r.dv_min) % r.dv_step == 0 &&
        (!r.same_dv || p.head_dim == p.head_dim_v))
      return true;
  return false;
}

void check_decision(const Decision& d, const FwdParams& p, arch::Capability cc) {
  if (d.kernel) {
    const auto target = arch::parse_target(d.loadable_target);
    check(target.has_value() && arch::runs_on(*target, cc));
    check(declares_support(*d.kernel, p));
  }
  (void)describe_rejections(d);
}

// Selection over the build's registry and over a synthetic table whose
// targets, dtypes, features and ranks come from the input.
void fuzz_dispatch(const FwdParams& p, FuzzedDataProvider& in) {
  DeviceInfo device;
  device.present = true;
  device.pretended = true;  // pure selection: no CUDA call
  device.ordinal = 0;
  device.name = "(fuzz)";
  device.cc = {in.ConsumeIntegralInRange(1, 13), in.ConsumeIntegralInRange(0, 9)};
  check_decision(select_kernel(p, device), p, device.cc);

  static const char* const kTargetWords[] = {"sm_75",     "sm_80",       "sm_86",  "sm_90",        "sm_90a",
                                             "sm_100",    "sm_100a",     "sm_100f", "sm_103a",     "sm_110",
                                             "sm_120",    "sm_121a",     "compute_75", "compute_90a", "compute_100f",
                                             "compute_120", "sm_", "garbage"};
  static const HeadDimRule kRules[] = {{8, 256, 8, 8, 256, 8, false}, {64, 128, 64, 64, 128, 64, true},
                                       {72, 80, 8, 72, 80, 8, true}, {192, 192, 1, 128, 192, 64, false}};
  std::vector<std::string> targets(3);
  std::vector<KernelInfo> table(3);
  for (size_t i = 0; i < table.size(); ++i) {
    for (int n = in.ConsumeIntegralInRange(0, 4); n > 0; --n) {
      if (!targets[i].empty()) targets[i] += ';';
      targets[i] += in.ConsumeBool() ? kTargetWords[in.ConsumeIntegralInRange<size_t>(0, std::size(kTargetWords) - 1)]
                                     : in.ConsumeRandomLengthString(12);
    }
    const size_t rule = in.ConsumeIntegralInRange<size_t>(0, std::size(kRules) - 1);
    // Members are initialised in declaration order, so the fuzzer's bytes are consumed in this order.
    table[i] = KernelInfo{.name = "synthetic",
                          .description = "fuzzed kernel declaration",
                          .rank = in.ConsumeIntegralInRange(0, 3),
                          .targets = targets[i].c_str(),
                          .dtypes = in.ConsumeIntegralInRange<uint32_t>(0, 7),
                          .features = in.ConsumeIntegral<uint32_t>() & kAllFeatures,
                          .head_dims = std::span<const HeadDimRule>(&kRules[rule], 1)};
  }
  check_decision(select_kernel_from(table, p, device), p, device.cc);
}

void fuzz_arch(const std::string& text, FuzzedDataProvider& in) {
  if (const auto cc = arch::parse_capability(text)) {
    check(arch::parse_capability(arch::to_string(*cc)) == cc);
    (void)arch::family_name(*cc);
  }
  if (const auto t = arch::parse_target(text)) check(arch::parse_target(arch::to_string(*t)) == t);
  const auto targets = arch::parse_target_list(text);
  const arch::Capability cc{in.ConsumeIntegralInRange(0, 130), in.ConsumeIntegralInRange(0, 12)};
  for (const auto& t : targets) {
    (void)arch::runs_on(t, cc);
    (void)arch::explain_runs_on(t, cc);
  }
  if (const auto best = arch::preferred_target(targets, cc)) check(arch::runs_on(*best, cc));
}

void fuzz_call(FuzzedDataProvider& in) {
  const bool varlen = in.ConsumeBool();
  const int32_t dtype = in.ConsumeIntegralInRange(0, 3);
  const int32_t device = in.ConsumeIntegralInRange(-1, 1);
  const int batch = in.ConsumeIntegralInRange(0, 4);
  const int heads_k = in.ConsumeIntegralInRange(1, 3);
  const int heads_q = heads_k * in.ConsumeIntegralInRange(1, 3);
  const int d = 8 * in.ConsumeIntegralInRange(1, 5);
  const int dv = in.ConsumeBool() ? d : 8 * in.ConsumeIntegralInRange(1, 5);
  const bool heads_major = in.ConsumeBool();
  const int64_t pad = in.ConsumeBool() ? 8 * in.ConsumeIntegralInRange(0, 2) : in.ConsumeIntegralInRange(0, 9);
  const bool with_lse = in.ConsumeBool();

  std::vector<int32_t> len_q(static_cast<size_t>(batch)), len_k(static_cast<size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    len_q[size_t(b)] = in.ConsumeIntegralInRange(0, 9);
    len_k[size_t(b)] = in.ConsumeIntegralInRange(0, 9);
  }
  std::vector<int32_t> cu_q{0}, cu_k{0};
  for (int b = 0; b < batch; ++b) {
    cu_q.push_back(cu_q.back() + len_q[size_t(b)]);
    cu_k.push_back(cu_k.back() + len_k[size_t(b)]);
  }
  const int32_t max_q = batch ? *std::max_element(len_q.begin(), len_q.end()) : 0;
  const int32_t max_k = batch ? *std::max_element(len_k.begin(), len_k.end()) : 0;
  const int64_t total_q = cu_q.back() + in.ConsumeIntegralInRange(0, 2), total_k = cu_k.back();
  const int dense_batch = std::max(batch, 1);

  vflash_tensor q, k, v, o, lse, cuq{}, cuk{};
  if (varlen) {
    q = tensor(dtype, device, {total_q, heads_q, d}, heads_major, pad);
    k = tensor(dtype, device, {total_k, heads_k, d}, heads_major, pad);
    v = tensor(dtype, device, {total_k, heads_k, dv}, heads_major, pad);
    o = tensor(dtype, device, {total_q, heads_q, dv}, heads_major, pad);
    lse = tensor(VFLASH_DTYPE_FP32, device, {heads_q, total_q}, false, 0);
    cuq = tensor(VFLASH_DTYPE_INT32, device, {batch + 1}, false, 0);
    cuk = tensor(VFLASH_DTYPE_INT32, device, {batch + 1}, false, 0);
  } else {
    q = tensor(dtype, device, {dense_batch, max_q, heads_q, d}, heads_major, pad);
    k = tensor(dtype, device, {dense_batch, max_k, heads_k, d}, heads_major, pad);
    v = tensor(dtype, device, {dense_batch, max_k, heads_k, dv}, heads_major, pad);
    o = tensor(dtype, device, {dense_batch, max_q, heads_q, dv}, heads_major, pad);
    lse = tensor(VFLASH_DTYPE_FP32, device, {dense_batch, heads_q, max_q}, false, 0);
  }

  vflash_tensor* const all[] = {&q, &k, &v, &o, &lse, &cuq, &cuk};
  const int n_tensors = varlen ? 7 : 5;
  for (int m = in.ConsumeIntegralInRange(0, 4); m > 0; --m) mutate(in, all, n_tensors);

  Arena arena;
  for (int i = 0; i < 5; ++i) {
    const size_t misalign = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<size_t>(0, 15);
    place(arena, *all[i], misalign);
  }
  if (!with_lse) lse.data = nullptr;
  if (in.ConsumeBool() && extent(q) == 0) q.data = nullptr;  // frameworks pass null for empty tensors

  // cu_seqlens: fuzzed or consistent content; exactly shape[0] entries where
  // validation may read them.
  std::vector<std::vector<int32_t>> cu_storage;
  const auto cu_array = [&](const std::vector<int32_t>& consistent, int64_t count) -> int32_t* {
    std::vector<int32_t> values(size_t(std::max<int64_t>(count, 1)));
    const bool fuzzed = in.ConsumeBool();
    for (size_t i = 0; i < values.size(); ++i)
      values[i] = fuzzed ? in.ConsumeIntegralInRange<int32_t>(-2, 40) : i < consistent.size() ? consistent[i] : 0;
    cu_storage.push_back(std::move(values));
    return cu_storage.back().data();
  };
  constexpr int64_t kMaxCuEntries = 64;
  const auto place_cu = [&](vflash_tensor& t, const std::vector<int32_t>& consistent) {
    if (t.device == VFLASH_DEVICE_CPU) {
      if (t.shape[0] < 0 || t.shape[0] > kMaxCuEntries) t.shape[0] = int64_t(consistent.size());
      t.data = cu_array(consistent, t.shape[0]);
    } else {
      t.data = reinterpret_cast<void*>(uintptr_t(0x7f0000100000));
    }
  };
  vflash_varlen_args va;
  vflash_varlen_args_init(&va);
  vflash_dense_args da;
  vflash_dense_args_init(&da);

  float scale = 0.f, softcap = 0.f;
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: break;
    case 1: scale = in.ConsumeFloatingPointInRange(0.f, 2.f); break;
    case 2: scale = in.ConsumeFloatingPoint<float>(); break;
  }
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: break;
    case 1: softcap = in.ConsumeFloatingPointInRange(0.f, 50.f); break;
    case 2: softcap = in.ConsumeFloatingPoint<float>(); break;
  }
  const int32_t causal = in.ConsumeBool();
  const int32_t window_left = in.ConsumeIntegralInRange(-2, 10);
  const int32_t window_right = in.ConsumeIntegralInRange(-2, 10);
  const size_t struct_size_delta = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<size_t>(0, 64);

  FwdParams p;
  try {
    if (varlen) {
      place_cu(cuq, cu_q);
      place_cu(cuk, cu_k);
      va.struct_size -= struct_size_delta;
      va.q = q, va.k = k, va.v = v, va.out = o, va.lse = lse;
      va.cu_seqlens_q = cuq, va.cu_seqlens_k = cuk;
      // Host copies: at least as many entries as the device arrays claim.
      const int64_t count = std::clamp<int64_t>(cuq.shape[0], 1, kMaxCuEntries);
      if (in.ConsumeBool()) va.cu_seqlens_q_host = cu_array(cu_q, count);
      if (in.ConsumeBool()) va.cu_seqlens_k_host = cu_array(cu_k, count);
      if (cuq.shape[0] > kMaxCuEntries) va.cu_seqlens_q_host = va.cu_seqlens_k_host = nullptr;
      va.max_seqlen_q = in.ConsumeBool() ? max_q : in.ConsumeIntegralInRange(-1, 12);
      va.max_seqlen_k = in.ConsumeBool() ? max_k : in.ConsumeIntegralInRange(-1, 12);
      va.softmax_scale = scale, va.softcap = softcap, va.causal = causal;
      va.window_left = window_left, va.window_right = window_right;
      p = validate_varlen(va);
    } else {
      da.struct_size -= struct_size_delta;
      da.q = q, da.k = k, da.v = v, da.out = o, da.lse = lse;
      da.softmax_scale = scale, da.softcap = softcap, da.causal = causal;
      da.window_left = window_left, da.window_right = window_right;
      p = validate_dense(da);
    }
  } catch (const Error& e) {
    check(e.status() == Status::invalid_argument || e.status() == Status::unsupported);
    check(!e.argument().empty() && std::string(e.what()).rfind(e.argument() + ": ", 0) == 0);
    return;
  }
  check_params(p);
  fuzz_dispatch(p, in);
  if (p.device == VFLASH_DEVICE_CPU && arena.runnable && p.total_q * p.total_k * p.heads_q <= (1 << 16)) cpu_forward(p);
}

}  // namespace
}  // namespace vflash

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeBool()) {
    const std::string text = in.ConsumeRandomLengthString(32);
    vflash::fuzz_arch(text, in);
  } else {
    vflash::fuzz_call(in);
  }
  return 0;
}
