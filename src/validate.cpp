// Validation of the public arguments (see validate.hpp). The rules, in the
// order they are checked; each failure names the argument and the rule:
//
//  1. struct_size >= sizeof(the args struct of this ABI). (The C entry points
//     first widen a vflash_varlen_args of the struct's first release, which
//     ends before zero_rows_past_end, reading the missing field as 0.)
//  2. Descriptors: ndim is 3 for q/k/v/out varlen (total, heads, d), 4 dense
//     (batch, seqlen, heads, d); lse 2 varlen (heads_q, total_q), 3 dense
//     (batch, heads_q, seqlen_q); cu_seqlens 1. Shapes >= 0; dtype codes known.
//  3. Data pointers of q, k, v, out and cu_seqlens are non-null unless the
//     tensor has no element (frameworks hand out null for empty tensors; an
//     empty tensor is never addressed). lse is optional: null data = absent.
//  4. Devices: -1 (host) or a CUDA ordinal, the same for every tensor.
//  5. Dtypes: q, k, v, out equal; fp16/bf16/fp32 on the host, fp16/bf16 on
//     CUDA (fp32 there: unsupported); lse float32; cu_seqlens int32.
//  6. Shapes: heads > 0, heads_q % heads_k == 0, k and v agree on tokens and
//     heads, k's head dim equals q's, out = (total_q, heads_q, d_v), lse =
//     (heads_q, total_q); dense: batch > 0 and equal in every tensor.
//     cu_seqlens_q/k have length batch + 1 >= 2 (batch 0 is an error).
//  7. Head dims d and d_v: > 0 (else invalid), and multiples of 8 in [8, 256]
//     (else unsupported: valid attention that no backend serves).
//  8. Index widths: kernels index tokens, sequences and heads in int32, so
//     total_q, total_k (dense: batch * seqlen) must be <= 2^31 - 1 - 1024
//     (kernels round token counts up to whole tiles, (n + block - 1) / block,
//     in int32: the margin keeps that sum from wrapping), batch <= 2^31 - 1;
//     heads_q <= 65535 (CUDA grid y/z limit) and
//     batch * heads_q <= 2^31 - 1 (one grid dimension), and
//     (total_q + batch) * heads_q <= 2^31 - 1 (kernels number their work, a
//     block of a sequence's rows times a head, in int32: a sequence adds at
//     most one partial block, so this bounds every kernel's count). Element offsets are
//     int64: every tensor's largest element offset, and its byte extent, must
//     fit int64 and the address range must not wrap. Failures: unsupported
//     for the int32 limits, invalid_argument for int64/address overflow.
//  9. Layout (strides in elements): the last dimension has stride 1. A
//     dimension of extent <= 1 is never used to address memory, so its stride
//     is ignored (and replaced in FwdParams by the tensor's span, a positive,
//     aligned value). Every other stride is positive, and the layout must be
//     nested, which makes it injective (no two index tuples share an element):
//     sorting those dimensions by stride, each stride is >= the span of the
//     dimensions inside it (the span of the innermost dimension is its extent,
//     then span += stride * (extent - 1)). Any order of the token, head and
//     batch dimensions is allowed (e.g. heads-major). This rejects only
//     interleaved layouts no framework produces.
// 10. Alignment: q, k, v, out data pointers are 16-byte aligned and their
//     strides (of dimensions of extent > 1) are multiples of 16 bytes (8
//     elements of fp16/bf16), so kernels may use 16-byte loads and stores; lse
//     and cu_seqlens are aligned to 4 bytes; lse's token dimension and
//     cu_seqlens are contiguous (stride 1).
// 11. max_seqlen_q/k >= 0. They are upper bounds (FlashAttention's meaning):
//     any value at least the longest sequence is accepted, even one past the
//     token count; FwdParams holds min(max_seqlen, total), since no sequence
//     is longer than its tensor, so kernels never size grids from a loose bound.
// 12. cu_seqlens content, checked wherever it is readable here: the data
//     itself for host tensors, and the *_host copies whenever given (CUDA
//     memory is never dereferenced). Structure first, for q and k: starts at
//     0, non-decreasing, last entry <= the tensor's token count (as
//     FlashAttention: trailing tokens past the last sequence are ignored,
//     their output rows are not written); then every sequence length <=
//     max_seqlen (a failure blames max_seqlen: the structure is sound).
// 13. softmax_scale finite and >= 0 (0 selects 1/sqrt(d)); softcap finite and
//     >= 0 (0 = off); window_left/right >= -1 (-1 = unbounded). causal sets
//     window_right = 0 and keeps window_left. A window side at least as long
//     as any sequence masks nothing, and FwdParams holds -1 for it:
//     window_right >= max_seqlen_q (query i's last key is i + Lk - Lq + right
//     >= Lk - 1 once right >= Lq - 1) and window_left >= max_seqlen_k (its
//     first key i + Lk - Lq - left <= 0 once left >= Lk - 1), with the
//     clamped max_seqlen; kernels then never add a huge window to an index.
// 14. workspace non-null when workspace_bytes > 0, and 16-byte aligned (kernels
//     keep tile lists there with vector accesses).
//
//
// The backward (vflash_varlen_bwd_args), in this order:
// 15. struct_size >= sizeof(vflash_varlen_bwd_args).
// 16. The forward's arguments (q, k, v, out, lse, cu_seqlens, max_seqlen,
//     softmax_scale, causal, window, softcap, workspace) follow rules 2-14
//     under the same names; lse is required: its data is non-null unless
//     total_q is 0.
// 17. dout is described as out is: (total_q, heads_q, d_v), q's dtype and
//     device, 16-byte aligned rows (rules 2-4, 9, 10); dq, dk, dv likewise as
//     q, k, v. deterministic is any int (nonzero: on).
//
// Not checked: that out does not overlap q/k/v/lse (strided views of one
// buffer may interleave legitimately, and exact disjointness of strided views
// is not cheap to decide), nor that the workspace is large enough (dispatch
// knows the kernel's need).
#include "validate.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace vflash {

[[noreturn]] void fail(Status status, const std::string& argument, const std::string& rule) {
  throw Error(status, argument, argument + ": " + rule);
}

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
// Token counts leave this much headroom below int32's limit: kernels round
// them up to whole tiles ((n + block - 1) / block, blocks of <= 256 rows) in int32.
constexpr int64_t kTileHeadroom = 1024;
constexpr int64_t kMaxTokens = kInt32Max - kTileHeadroom;
constexpr int64_t kMaxHeads = 65535;
constexpr int64_t kHeadDimStep = 8;
constexpr int64_t kMaxHeadDim = 256;
constexpr uint64_t kVectorBytes = 16;

std::string num(int64_t x) { return std::to_string(x); }

// The dtype field as the caller stored it. Read as an integer: a C caller may
// store any int there, and loading an out-of-range value as the enum is UB.
int32_t dtype_code(const vflash_tensor& t) {
  static_assert(sizeof(vflash_dtype) == sizeof(int32_t));
  int32_t code;
  std::memcpy(&code, &t.dtype, sizeof code);
  return code;
}

bool known_dtype(int32_t code) { return code >= VFLASH_DTYPE_FP16 && code <= VFLASH_DTYPE_INT32; }

const char* dtype_name(vflash_dtype t) {
  switch (t) {
    case VFLASH_DTYPE_FP16: return "fp16";
    case VFLASH_DTYPE_BF16: return "bf16";
    case VFLASH_DTYPE_FP32: return "fp32";
    case VFLASH_DTYPE_INT32: return "int32";
  }
  return "unknown";
}

int64_t dtype_bytes(vflash_dtype t) { return t == VFLASH_DTYPE_FP16 || t == VFLASH_DTYPE_BF16 ? 2 : 4; }

// One tensor argument and the names of its dimensions.
// Names are built only on failure: validation does not allocate on success.
struct Arg {
  const vflash_tensor& t;
  const char* name;
  int ndim;
  const char* dims;  // e.g. "(total_q, heads_q, d)"
  bool required;

  bool present() const { return required || t.data != nullptr; }
  std::string field(const char* f) const { return std::string(name) + "." + f; }
  std::string shape(int i) const { return std::string(name) + ".shape[" + num(i) + "]"; }
  std::string stride(int i) const { return std::string(name) + ".stride[" + num(i) + "]"; }
  bool empty() const {
    for (int i = 0; i < ndim; ++i)
      if (t.shape[i] == 0) return true;
    return false;
  }
};

void check_descriptor(const Arg& a) {
  if (a.t.ndim != a.ndim)
    fail(Status::invalid_argument, a.field("ndim"),
         "must be " + num(a.ndim) + " " + a.dims + ", got " + num(a.t.ndim));
  for (int i = 0; i < a.ndim; ++i)
    if (a.t.shape[i] < 0) fail(Status::invalid_argument, a.shape(i), "must be >= 0, got " + num(a.t.shape[i]));
  if (!known_dtype(dtype_code(a.t)))
    fail(Status::invalid_argument, a.field("dtype"), "unknown dtype code " + num(dtype_code(a.t)));
  if (a.required && a.t.data == nullptr && !a.empty())
    fail(Status::invalid_argument, a.field("data"), "must not be null (the tensor has elements)");
}

// a.shape[i] must equal ref.shape[j], which means `what`.
void expect_dim(const Arg& a, int i, const Arg& ref, int j, const char* what) {
  if (a.t.shape[i] != ref.t.shape[j])
    fail(Status::invalid_argument, a.shape(i),
         "must equal " + ref.shape(j) + " (" + what + " = " + num(ref.t.shape[j]) + "), got " + num(a.t.shape[i]));
}

// Rules 8-10 for one tensor (its shape already checked). Returns the strides to
// hand to kernels: the caller's, with strides of extent <= 1 dimensions replaced
// by the tensor's span.
std::array<int64_t, 4> check_layout(const Arg& a, bool vector_aligned) {
  const vflash_tensor& t = a.t;
  const int last = a.ndim - 1;
  const int64_t elem = dtype_bytes(t.dtype);
  if (t.shape[last] > 1 && t.stride[last] != 1)
    fail(Status::invalid_argument, a.stride(last),
         "the last dimension must be contiguous (stride 1), got " + num(t.stride[last]));

  struct Dim { int64_t stride, extent; int index; };
  std::array<Dim, 4> dims{};
  int n = 0;
  for (int i = 0; i < last; ++i) {
    if (t.shape[i] <= 1) continue;
    const int64_t s = t.stride[i];
    if (s <= 0)
      fail(Status::invalid_argument, a.stride(i),
           "must be positive for a dimension of extent > 1, got " + num(s));
    if (vector_aligned && s % (int64_t(kVectorBytes) / elem) != 0)
      fail(Status::invalid_argument, a.stride(i),
           "must be a multiple of " + num(int64_t(kVectorBytes) / elem) + " elements (16 bytes) so kernels can " +
               "use 16-byte loads, got " + num(s));
    dims[n++] = {s, t.shape[i], i};
  }
  std::sort(dims.begin(), dims.begin() + n, [](const Dim& x, const Dim& y) { return x.stride < y.stride; });

  int64_t span = std::max<int64_t>(t.shape[last], 1);  // elements covered by the dimensions seen so far
  for (int j = 0; j < n; ++j) {
    if (dims[j].stride < span)
      fail(Status::invalid_argument, a.stride(dims[j].index),
           "dimensions overlap: stride " + num(dims[j].stride) + " is smaller than the span " + num(span) +
               " of the dimensions inside it (the layout must not alias elements)");
    int64_t step;
    if (__builtin_mul_overflow(dims[j].stride, dims[j].extent - 1, &step) ||
        __builtin_add_overflow(span, step, &span))
      fail(Status::invalid_argument, a.stride(dims[j].index), "element offsets overflow int64");
  }
  int64_t bytes;
  if (__builtin_mul_overflow(span, elem, &bytes))
    fail(Status::invalid_argument, a.name, "byte extent overflows int64");
  const auto addr = reinterpret_cast<uintptr_t>(t.data);
  if (!a.empty() && addr > std::numeric_limits<uintptr_t>::max() - uint64_t(bytes))
    fail(Status::invalid_argument, a.field("data"), "the tensor's extent wraps the address space");
  const uint64_t align = vector_aligned ? kVectorBytes : uint64_t(elem);
  if (addr % align != 0)
    fail(Status::invalid_argument, a.field("data"), "must be aligned to " + num(int64_t(align)) + " bytes");

  // Replacement stride for unused dimensions: positive, and aligned because the
  // span is a multiple of 8 elements whenever vector alignment is required.
  std::array<int64_t, 4> out{};
  for (int i = 0; i < a.ndim; ++i) out[i] = t.shape[i] <= 1 && i != last ? span : t.stride[i];
  return out;
}

void check_head_dim(const Arg& a, int i, const char* what) {
  const int64_t d = a.t.shape[i];
  if (d <= 0) fail(Status::invalid_argument, a.shape(i), std::string(what) + " must be > 0, got " + num(d));
  if (d % kHeadDimStep != 0 || d > kMaxHeadDim)
    fail(Status::unsupported, a.shape(i),
         std::string(what) + " must be a multiple of 8 in [8, 256], got " + num(d));
}

// `value` (derived from a.shape[i]) must fit int32.
void check_int32(const Arg& a, int i, int64_t value, const char* what) {
  if (value > kInt32Max)
    fail(Status::unsupported, a.shape(i),
         std::string(what) + " must be <= 2^31 - 1 (kernels index it in int32), got " + num(value));
}

// `value` (a token count derived from a.shape[i]) must leave kernels' tile
// rounding room in int32.
void check_tokens(const Arg& a, int i, int64_t value, const char* what) {
  if (value > kMaxTokens)
    fail(Status::unsupported, a.shape(i),
         std::string(what) + " must be <= 2^31 - 1 - " + num(kTileHeadroom) + " = " + num(kMaxTokens) +
             " (kernels index tokens in int32 and round them up to whole tiles), got " + num(value));
}

// Rule 12, structure, for one cu_seqlens array of `count` entries readable at
// `cu`: `tensor` names the tensor whose `total` tokens it indexes.
void check_cu_structure(const char* name, const int32_t* cu, int64_t count, int64_t total, const char* tensor) {
  if (cu[0] != 0) fail(Status::invalid_argument, name, "must start at 0, got " + num(cu[0]));
  for (int64_t b = 1; b < count; ++b)
    if (cu[b] < cu[b - 1])
      fail(Status::invalid_argument, name,
           "must be non-decreasing, but entry " + num(b) + " (" + num(cu[b]) + ") < entry " + num(b - 1) + " (" +
               num(cu[b - 1]) + ")");
  if (cu[count - 1] > total)
    fail(Status::invalid_argument, name,
         "last entry " + num(cu[count - 1]) + " exceeds " + tensor + "'s token count " + num(total));
}

// Rule 12, lengths, for a structurally valid cu_seqlens: max_seqlen is an
// upper bound, so a longer sequence is max_seqlen's error.
void check_cu_lengths(const char* name, const int32_t* cu, int64_t count, int64_t max_seqlen, const char* max_name) {
  for (int64_t b = 0; b + 1 < count; ++b) {
    const int64_t len = int64_t(cu[b + 1]) - cu[b];
    if (len > max_seqlen)
      fail(Status::invalid_argument, max_name,
           "must be >= every sequence length (it is an upper bound), but sequence " + num(b) + " of " + name +
               " has length " + num(len) + " > " + num(max_seqlen));
  }
}

// Rule 13's normalisation: a window side that cannot mask any key of any
// sequence becomes -1, so that kernels see exactly the unwindowed call and
// never compute with a bound near int32's limit. Needs the clamped max_seqlen.
void normalise_window(FwdParams& p) {
  if (!p.causal && p.window_right >= p.max_seqlen_q) p.window_right = -1;
  if (p.window_left >= p.max_seqlen_k) p.window_left = -1;
}

// Everything the two entry points share; `varlen` selects the layout.
struct Call {
  bool varlen;
  const vflash_tensor &q, &k, &v, &out, &lse;
  float softmax_scale;
  int32_t causal, window_left, window_right;
  float softcap;
  void* workspace;
  size_t workspace_bytes;
  void* stream;
};

void check_scalars(const Call& c) {
  if (!std::isfinite(c.softmax_scale) || c.softmax_scale < 0.f)
    fail(Status::invalid_argument, "softmax_scale",
         "must be finite and >= 0 (0 selects 1/sqrt(d)), got " + std::to_string(c.softmax_scale));
  if (!std::isfinite(c.softcap) || c.softcap < 0.f)
    fail(Status::invalid_argument, "softcap", "must be finite and >= 0 (0 = off), got " + std::to_string(c.softcap));
  if (c.window_left < -1)
    fail(Status::invalid_argument, "window_left", "must be >= -1 (-1 = unbounded), got " + num(c.window_left));
  if (c.window_right < -1)
    fail(Status::invalid_argument, "window_right", "must be >= -1 (-1 = unbounded), got " + num(c.window_right));
  if (c.workspace == nullptr && c.workspace_bytes > 0)
    fail(Status::invalid_argument, "workspace", "must not be null when workspace_bytes > 0");
  if (reinterpret_cast<uintptr_t>(c.workspace) % 16 != 0)
    fail(Status::invalid_argument, "workspace", "must be aligned to 16 bytes");
}

// Rules 2-10 and 13-14 for q, k, v, out, lse and the scalars; fills params
// except the cu_seqlens / sequence-length fields.
FwdParams validate_call(const Call& c) {
  // Varlen tensors are dense ones without the batch dimension: `lead` shifts
  // the token/head/dim indices.
  const int lead = c.varlen ? 0 : 1;
  const int nd = 3 + lead;
  const Arg q{c.q, "q", nd, c.varlen ? "(total_q, heads_q, d)" : "(batch, seqlen_q, heads_q, d)", true};
  const Arg k{c.k, "k", nd, c.varlen ? "(total_k, heads_k, d)" : "(batch, seqlen_k, heads_k, d)", true};
  const Arg v{c.v, "v", nd, c.varlen ? "(total_k, heads_k, d_v)" : "(batch, seqlen_k, heads_k, d_v)", true};
  const Arg o{c.out, "out", nd, c.varlen ? "(total_q, heads_q, d_v)" : "(batch, seqlen_q, heads_q, d_v)", true};
  const Arg lse{c.lse, "lse", 2 + lead, c.varlen ? "(heads_q, total_q)" : "(batch, heads_q, seqlen_q)", false};
  for (const Arg* a : {&q, &k, &v, &o, &lse})
    if (a->present()) check_descriptor(*a);
  const bool has_lse = lse.present();

  // Devices.
  const int device = c.q.device;
  if (device < VFLASH_DEVICE_CPU)
    fail(Status::invalid_argument, "q.device", "must be -1 (host) or a CUDA ordinal >= 0, got " + num(device));
  for (const Arg* a : {&k, &v, &o, &lse})
    if (a->present() && a->t.device != device)
      fail(Status::invalid_argument, a->field("device"),
           "must equal q.device (" + num(device) + "), got " + num(a->t.device));

  // Dtypes.
  const vflash_dtype dt = c.q.dtype;
  if (dt == VFLASH_DTYPE_INT32)
    fail(Status::invalid_argument, "q.dtype", "must be fp16, bf16 or fp32, got int32");
  for (const Arg* a : {&k, &v, &o})
    if (a->t.dtype != dt)
      fail(Status::invalid_argument, a->field("dtype"),
           std::string("must equal q.dtype (") + dtype_name(dt) + "), got " + dtype_name(a->t.dtype));
  if (dt == VFLASH_DTYPE_FP32 && device != VFLASH_DEVICE_CPU)
    fail(Status::unsupported, "q.dtype", "fp32 is served only on the host (device -1); CUDA tensors must be fp16 or bf16");
  if (has_lse && c.lse.dtype != VFLASH_DTYPE_FP32)
    fail(Status::invalid_argument, "lse.dtype", std::string("must be fp32, got ") + dtype_name(c.lse.dtype));

  // Shapes.
  const int tok = lead, hd = lead + 1, dim = lead + 2;
  if (!c.varlen) {
    if (c.q.shape[0] == 0) fail(Status::invalid_argument, q.shape(0), "batch must be > 0");
    for (const Arg* a : {&k, &v, &o}) expect_dim(*a, 0, q, 0, "batch");
  }
  const int64_t heads_q = c.q.shape[hd], heads_k = c.k.shape[hd];
  if (heads_q == 0) fail(Status::invalid_argument, q.shape(hd), "heads_q must be > 0");
  if (heads_k == 0) fail(Status::invalid_argument, k.shape(hd), "heads_k must be > 0");
  expect_dim(k, dim, q, dim, "d");
  expect_dim(v, tok, k, tok, "tokens of k");
  expect_dim(v, hd, k, hd, "heads_k");
  expect_dim(o, tok, q, tok, "tokens of q");
  expect_dim(o, hd, q, hd, "heads_q");
  expect_dim(o, dim, v, dim, "d_v");
  if (heads_q % heads_k != 0)
    fail(Status::invalid_argument, k.shape(hd),
         "heads_q (" + num(heads_q) + ") must be a multiple of heads_k (" + num(heads_k) + ")");
  if (has_lse) {
    if (!c.varlen) expect_dim(lse, 0, q, 0, "batch");
    expect_dim(lse, lead, q, hd, "heads_q");
    expect_dim(lse, lead + 1, q, tok, "tokens of q");
  }
  check_head_dim(q, dim, "head dim d");
  check_head_dim(v, dim, "head dim d_v");

  // int32 index limits.
  if (heads_q > kMaxHeads)
    fail(Status::unsupported, q.shape(hd), "heads_q must be <= 65535 (CUDA grid limit), got " + num(heads_q));
  const int64_t batch = c.varlen ? 0 : c.q.shape[0];
  if (c.varlen) {
    check_tokens(q, 0, c.q.shape[0], "total_q");
    check_tokens(k, 0, c.k.shape[0], "total_k");
  } else {
    check_int32(q, 0, batch, "batch");
    check_tokens(q, 1, c.q.shape[1], "seqlen_q");
    check_tokens(k, 1, c.k.shape[1], "seqlen_k");
    // Rows of all sequences are numbered b * seqlen + r.
    check_tokens(q, 1, batch * c.q.shape[1], "batch * seqlen_q");
    check_tokens(k, 1, batch * c.k.shape[1], "batch * seqlen_k");
    check_int32(q, hd, batch * heads_q, "batch * heads_q");
    check_int32(q, hd, (batch * c.q.shape[1] + batch) * heads_q, "(batch * seqlen_q + batch) * heads_q");
  }

  // Layout and alignment.
  const auto qs = check_layout(q, true);
  const auto ks = check_layout(k, true);
  const auto vs = check_layout(v, true);
  const auto os = check_layout(o, true);
  const auto ls = has_lse ? check_layout(lse, false) : std::array<int64_t, 4>{};

  check_scalars(c);

  FwdParams p;
  p.dtype = dt == VFLASH_DTYPE_FP16 ? DType::fp16 : dt == VFLASH_DTYPE_BF16 ? DType::bf16 : DType::fp32;
  p.q = c.q.data;
  p.k = c.k.data;
  p.v = c.v.data;
  p.o = c.out.data;
  p.lse = has_lse ? static_cast<float*>(c.lse.data) : nullptr;
  if (!c.varlen) {
    p.q_batch_stride = qs[0];
    p.k_batch_stride = ks[0];
    p.v_batch_stride = vs[0];
    p.o_batch_stride = os[0];
    if (has_lse) p.lse_batch_stride = ls[0];
  }
  p.q_row_stride = qs[tok];
  p.q_head_stride = qs[hd];
  p.k_row_stride = ks[tok];
  p.k_head_stride = ks[hd];
  p.v_row_stride = vs[tok];
  p.v_head_stride = vs[hd];
  p.o_row_stride = os[tok];
  p.o_head_stride = os[hd];
  if (has_lse) p.lse_head_stride = ls[lead];
  p.batch = int32_t(batch);
  p.heads_q = int32_t(heads_q);
  p.heads_k = int32_t(heads_k);
  p.head_dim = int32_t(c.q.shape[dim]);
  p.head_dim_v = int32_t(c.v.shape[dim]);
  p.total_q = c.varlen ? c.q.shape[0] : batch * c.q.shape[1];
  p.total_k = c.varlen ? c.k.shape[0] : batch * c.k.shape[1];
  p.softmax_scale = c.softmax_scale == 0.f ? float(1.0 / std::sqrt(double(p.head_dim))) : c.softmax_scale;
  p.causal = c.causal != 0;
  p.window_left = c.window_left;
  p.window_right = p.causal ? 0 : c.window_right;
  p.softcap = c.softcap;
  p.device = device;
  p.stream = c.stream;
  p.workspace = c.workspace;
  p.workspace_bytes = c.workspace_bytes;
  return p;
}

// The checks both argument blocks share: struct_size, then everything but the
// layout-specific sequence description.
template <typename Args>
FwdParams validate_common(const Args& args, bool varlen, const char* struct_name) {
  if (args.struct_size < sizeof(Args))
    fail(Status::invalid_argument, "struct_size",
         std::string("must be >= sizeof(") + struct_name + ") (" + num(int64_t(sizeof(Args))) + "), got " +
             num(int64_t(args.struct_size)) + "; call " + struct_name + "_init");
  const Call call{varlen, args.q, args.k, args.v, args.out, args.lse, args.softmax_scale, args.causal,
                  args.window_left, args.window_right, args.softcap, args.workspace, args.workspace_bytes,
                  args.stream};
  return validate_call(call);
}

}  // namespace

FwdParams validate_varlen(const vflash_varlen_args& args) {
  FwdParams p = validate_common(args, true, "vflash_varlen_args");

  const Arg cq{args.cu_seqlens_q, "cu_seqlens_q", 1, "(batch + 1)", true};
  const Arg ck{args.cu_seqlens_k, "cu_seqlens_k", 1, "(batch + 1)", true};
  for (const Arg* a : {&cq, &ck}) {
    check_descriptor(*a);
    if (a->t.device != p.device)
      fail(Status::invalid_argument, a->field("device"),
           "must equal q.device (" + num(p.device) + "), got " + num(a->t.device));
    if (a->t.dtype != VFLASH_DTYPE_INT32)
      fail(Status::invalid_argument, a->field("dtype"), std::string("must be int32, got ") + dtype_name(a->t.dtype));
  }
  const int64_t count = args.cu_seqlens_q.shape[0];
  if (count < 2)
    fail(Status::invalid_argument, cq.shape(0), "must be batch + 1 >= 2 (batch 0 is an error), got " + num(count));
  expect_dim(ck, 0, cq, 0, "batch + 1");
  const int64_t batch = count - 1;
  check_int32(cq, 0, batch, "batch");
  check_int32(cq, 0, batch * p.heads_q, "batch * heads_q");
  check_int32(cq, 0, (p.total_q + batch) * p.heads_q, "(total_q + batch) * heads_q");
  for (const Arg* a : {&cq, &ck}) check_layout(*a, false);

  if (args.max_seqlen_q < 0)
    fail(Status::invalid_argument, "max_seqlen_q",
         "must be >= 0 (an upper bound of the sequence lengths), got " + num(args.max_seqlen_q));
  if (args.max_seqlen_k < 0)
    fail(Status::invalid_argument, "max_seqlen_k",
         "must be >= 0 (an upper bound of the sequence lengths), got " + num(args.max_seqlen_k));

  // Every readable copy, q's and k's: structure of all of them before any length.
  const auto* dq = static_cast<const int32_t*>(args.cu_seqlens_q.data);
  const auto* dk = static_cast<const int32_t*>(args.cu_seqlens_k.data);
  struct Content { const char* name; const int32_t* cu; bool is_q; };
  std::array<Content, 4> contents{};
  size_t n = 0;
  if (p.device == VFLASH_DEVICE_CPU) {
    contents[n++] = {"cu_seqlens_q", dq, true};
    contents[n++] = {"cu_seqlens_k", dk, false};
  }
  if (args.cu_seqlens_q_host) contents[n++] = {"cu_seqlens_q_host", args.cu_seqlens_q_host, true};
  if (args.cu_seqlens_k_host) contents[n++] = {"cu_seqlens_k_host", args.cu_seqlens_k_host, false};
  for (size_t i = 0; i < n; ++i)
    check_cu_structure(contents[i].name, contents[i].cu, count, contents[i].is_q ? p.total_q : p.total_k,
                       contents[i].is_q ? "q" : "k");
  for (size_t i = 0; i < n; ++i)
    check_cu_lengths(contents[i].name, contents[i].cu, count,
                     contents[i].is_q ? args.max_seqlen_q : args.max_seqlen_k,
                     contents[i].is_q ? "max_seqlen_q" : "max_seqlen_k");

  p.cu_seqlens_q = dq;
  p.cu_seqlens_k = dk;
  p.batch = int32_t(batch);
  p.zero_rows_past_end = args.zero_rows_past_end != 0;
  // Totals are below int32's limit (rule 8): the clamped bounds fit int32.
  p.max_seqlen_q = int32_t(std::min<int64_t>(args.max_seqlen_q, p.total_q));
  p.max_seqlen_k = int32_t(std::min<int64_t>(args.max_seqlen_k, p.total_k));
  normalise_window(p);
  return p;
}

FwdParams validate_dense(const vflash_dense_args& args) {
  FwdParams p = validate_common(args, false, "vflash_dense_args");
  p.seqlen_q = int32_t(args.q.shape[1]);
  p.seqlen_k = int32_t(args.k.shape[1]);
  p.max_seqlen_q = p.seqlen_q;
  p.max_seqlen_k = p.seqlen_k;
  normalise_window(p);
  return p;
}

namespace {

// Rule 17 for one gradient-side tensor: described like `like` (the tensor of
// the forward view it mirrors), on q's device, of q's dtype. Returns the
// strides kernels use.
std::array<int64_t, 4> check_like(const Arg& a, const Arg& like, int device, vflash_dtype dtype) {
  check_descriptor(a);
  if (a.t.device != device)
    fail(Status::invalid_argument, a.field("device"), "must equal q.device (" + num(device) + "), got " + num(a.t.device));
  if (a.t.dtype != dtype)
    fail(Status::invalid_argument, a.field("dtype"),
         std::string("must equal q.dtype (") + dtype_name(dtype) + "), got " + dtype_name(a.t.dtype));
  for (int i = 0; i < a.ndim; ++i) {
    if (a.t.shape[i] != like.t.shape[i])
      fail(Status::invalid_argument, a.shape(i),
           "must equal " + like.shape(i) + " (" + num(like.t.shape[i]) + "), got " + num(a.t.shape[i]));
  }
  return check_layout(a, true);
}

}  // namespace

BwdParams validate_varlen_bwd(const vflash_varlen_bwd_args& args) {
  if (args.struct_size < sizeof(vflash_varlen_bwd_args))
    fail(Status::invalid_argument, "struct_size",
         "must be >= sizeof(vflash_varlen_bwd_args) (" + num(int64_t(sizeof(vflash_varlen_bwd_args))) + "), got " +
             num(int64_t(args.struct_size)) + "; call vflash_varlen_bwd_args_init");
  vflash_varlen_args forward;
  std::memset(&forward, 0, sizeof forward);
  forward.struct_size = sizeof forward;
  forward.q = args.q;
  forward.k = args.k;
  forward.v = args.v;
  forward.out = args.out;
  forward.lse = args.lse;
  forward.cu_seqlens_q = args.cu_seqlens_q;
  forward.cu_seqlens_k = args.cu_seqlens_k;
  forward.cu_seqlens_q_host = args.cu_seqlens_q_host;
  forward.cu_seqlens_k_host = args.cu_seqlens_k_host;
  forward.max_seqlen_q = args.max_seqlen_q;
  forward.max_seqlen_k = args.max_seqlen_k;
  forward.softmax_scale = args.softmax_scale;
  forward.causal = args.causal;
  forward.window_left = args.window_left;
  forward.window_right = args.window_right;
  forward.softcap = args.softcap;
  forward.workspace = args.workspace;
  forward.workspace_bytes = args.workspace_bytes;
  forward.stream = args.stream;
  BwdParams b;
  b.fwd = validate_varlen(forward);
  if (b.fwd.lse == nullptr && b.fwd.total_q > 0)
    fail(Status::invalid_argument, "lse.data",
         "must not be null: the backward reads the forward's lse, float32 (heads_q, total_q)");

  const vflash_dtype dtype = args.q.dtype;
  const int device = b.fwd.device;
  const Arg q{args.q, "q", 3, "(total_q, heads_q, d)", true};
  const Arg k{args.k, "k", 3, "(total_k, heads_k, d)", true};
  const Arg v{args.v, "v", 3, "(total_k, heads_k, d_v)", true};
  const Arg o{args.out, "out", 3, "(total_q, heads_q, d_v)", true};
  const Arg dout{args.dout, "dout", 3, "(total_q, heads_q, d_v)", true};
  const Arg dq{args.dq, "dq", 3, "(total_q, heads_q, d)", true};
  const Arg dk{args.dk, "dk", 3, "(total_k, heads_k, d)", true};
  const Arg dv{args.dv, "dv", 3, "(total_k, heads_k, d_v)", true};
  const auto dout_s = check_like(dout, o, device, dtype);
  const auto dq_s = check_like(dq, q, device, dtype);
  const auto dk_s = check_like(dk, k, device, dtype);
  const auto dv_s = check_like(dv, v, device, dtype);
  b.dout = args.dout.data;
  b.dq = args.dq.data;
  b.dk = args.dk.data;
  b.dv = args.dv.data;
  b.dout_row_stride = dout_s[0];
  b.dout_head_stride = dout_s[1];
  b.dq_row_stride = dq_s[0];
  b.dq_head_stride = dq_s[1];
  b.dk_row_stride = dk_s[0];
  b.dk_head_stride = dk_s[1];
  b.dv_row_stride = dv_s[0];
  b.dv_head_stride = dv_s[1];
  b.deterministic = args.deterministic != 0;
  return b;
}

}  // namespace vflash
