// vflash._C: the Python binding of the C ABI (<vflash/vflash.h>).
//
// Arrays arrive through DLPack (nanobind ndarray: torch, CuPy, numpy, anything
// with __dlpack__) and are described to the library as vflash_tensor views;
// nothing is copied. The Python layer (vflash/__init__.py) allocates outputs
// with the caller's framework and passes the stream and a workspace allocator,
// so the library itself never allocates and never synchronises.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "vflash/vflash.h"

namespace nb = nanobind;

namespace {

// Inputs may be read-only (e.g. numpy views); outputs must be writable.
using InArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<>;

// Failures of the library become Python exceptions carrying its message:
// dtype problems TypeError, other argument problems ValueError, CUDA and
// internal failures RuntimeError.
[[noreturn]] void raise_status(vflash_status status) {
  const std::string message = vflash_last_error();
  switch (status) {
    case VFLASH_ERROR_INVALID_ARGUMENT:
    case VFLASH_ERROR_UNSUPPORTED:
      // The library names the argument first ("k.dtype: must equal q.dtype (fp16), ...");
      // a rule about a dtype is a type error in Python's terms.
      if (message.substr(0, message.find(": ")).ends_with(".dtype")) throw nb::type_error(message.c_str());
      throw nb::value_error(message.c_str());
    default:
      throw std::runtime_error(message.empty() ? vflash_status_string(status) : message);
  }
}

void check(vflash_status status) {
  if (status != VFLASH_OK) raise_status(status);
}

std::string dtype_name(nb::dlpack::dtype t) {
  using code = nb::dlpack::dtype_code;
  std::string kind;
  switch (static_cast<code>(t.code)) {
    case code::Int: kind = "int"; break;
    case code::UInt: kind = "uint"; break;
    case code::Float: kind = "float"; break;
    case code::Bfloat: kind = "bfloat"; break;
    case code::Complex: kind = "complex"; break;
    case code::Bool: kind = "bool"; break;
    default: kind = "dlpack-code-" + std::to_string(t.code) + "-"; break;  // fp8, fp4 and other exotic codes
  }
  std::string name = kind + std::to_string(t.bits);
  if (t.lanes != 1) name += "x" + std::to_string(t.lanes);
  return name;
}

vflash_dtype to_vflash_dtype(nb::dlpack::dtype t, const char* argument) {
  using code = nb::dlpack::dtype_code;
  if (t.lanes == 1) {
    if (t.code == static_cast<uint8_t>(code::Float) && t.bits == 16) return VFLASH_DTYPE_FP16;
    if (t.code == static_cast<uint8_t>(code::Bfloat) && t.bits == 16) return VFLASH_DTYPE_BF16;
    if (t.code == static_cast<uint8_t>(code::Float) && t.bits == 32) return VFLASH_DTYPE_FP32;
    if (t.code == static_cast<uint8_t>(code::Int) && t.bits == 32) return VFLASH_DTYPE_INT32;
  }
  throw nb::type_error((std::string(argument) + ": dtype " + dtype_name(t) +
                        " is not supported (float16, bfloat16, float32 on the CPU; int32 for cu_seqlens)")
                           .c_str());
}

// A vflash_tensor view of a DLPack array; `argument` names it in errors.
template <typename Array>
vflash_tensor describe(const Array& a, const char* argument) {
  vflash_tensor t{};
  if (a.ndim() > 4)
    throw nb::value_error(
        (std::string(argument) + ": has " + std::to_string(a.ndim()) + " dimensions, at most 4 are accepted")
            .c_str());
  if (a.device_type() == nb::device::cpu::value) {
    t.device = VFLASH_DEVICE_CPU;
  } else if (a.device_type() == nb::device::cuda::value) {
    t.device = a.device_id();
  } else {
    throw nb::value_error(
        (std::string(argument) + ": lives on a device that is neither the CPU nor a CUDA GPU").c_str());
  }
  t.data = const_cast<void*>(static_cast<const void*>(a.data()));
  t.dtype = to_vflash_dtype(a.dtype(), argument);
  t.ndim = static_cast<int32_t>(a.ndim());
  for (size_t i = 0; i < a.ndim(); ++i) {
    t.shape[i] = a.shape(i);
    t.stride[i] = a.stride(i);
  }
  if (a.size() == 0) {
    // An empty array addresses nothing; exporters report arbitrary strides for
    // it (numpy gives 0), so describe it as row-major.
    int64_t stride = 1;
    for (size_t i = a.ndim(); i-- > 0;) {
      t.stride[i] = stride;
      stride *= std::max<int64_t>(t.shape[i], 1);
    }
  }
  return t;
}

// An absent optional tensor (data == NULL).
vflash_tensor absent() { return vflash_tensor{}; }

// Argument `name` as an ndarray (writable unless Array is InArray). Arrays are
// taken as plain objects and converted here so that a refusal names the
// argument and, where it can tell, the rule (a read-only output, a byte order
// DLPack cannot carry), instead of nanobind's "incompatible function arguments".
template <typename Array>
Array as_array(nb::handle h, const char* name) {
  Array a;
  if (nb::try_cast(h, a)) return a;
  const std::string arg(name);
  if constexpr (!std::is_same_v<Array, InArray>) {
    InArray read_only;
    if (nb::try_cast(h, read_only))
      throw nb::value_error((arg + ": must be writable (vflash writes the result into it), got a read-only array").c_str());
  }
  if (nb::hasattr(h, "dtype")) {
    const nb::object dtype = h.attr("dtype");
    if (nb::hasattr(dtype, "isnative") && !nb::cast<bool>(dtype.attr("isnative")))
      throw nb::type_error((arg + ": must be in the machine's byte order (DLPack has no other), got dtype " +
                            nb::cast<std::string>(nb::repr(dtype)))
                               .c_str());
  }
  throw nb::type_error((arg + ": must be an array exporting DLPack or the buffer protocol (torch, CuPy, numpy), got " +
                        nb::cast<std::string>(nb::str(nb::type_name(h.type()))))
                           .c_str());
}

std::optional<OutArray> as_optional_out(const nb::object& h, const char* name) {
  if (h.is_none()) return std::nullopt;
  return as_array<OutArray>(h, name);
}

// Mask and scaling options shared by the varlen and dense entries.
struct Options {
  float softmax_scale;
  bool causal;
  int window_left, window_right;
  float softcap;
  uintptr_t stream;
};

// Fills what the varlen and dense argument blocks share: tensors and options.
template <typename Args>
void apply(Args& args, const InArray& q, const InArray& k, const InArray& v, std::optional<OutArray>& out,
           std::optional<OutArray>& lse, const Options& o) {
  args.q = describe(q, "q");
  args.k = describe(k, "k");
  args.v = describe(v, "v");
  args.out = out ? describe(*out, "out") : absent();
  args.lse = lse ? describe(*lse, "lse") : absent();
  args.softmax_scale = o.softmax_scale;
  args.causal = o.causal ? 1 : 0;
  args.window_left = o.window_left;
  args.window_right = o.window_right;
  args.softcap = o.softcap;
  args.stream = reinterpret_cast<void*>(o.stream);
}

vflash_varlen_args varlen_args(const InArray& q, const InArray& k, const InArray& v, const InArray& cu_seqlens_q,
                               const InArray& cu_seqlens_k, int max_seqlen_q, int max_seqlen_k,
                               std::optional<OutArray>& out, std::optional<OutArray>& lse, const Options& o) {
  vflash_varlen_args args;
  vflash_varlen_args_init(&args);
  apply(args, q, k, v, out, lse, o);
  args.cu_seqlens_q = describe(cu_seqlens_q, "cu_seqlens_q");
  args.cu_seqlens_k = describe(cu_seqlens_k, "cu_seqlens_k");
  args.max_seqlen_q = max_seqlen_q;
  args.max_seqlen_k = max_seqlen_k;
  return args;
}

vflash_dense_args dense_args(const InArray& q, const InArray& k, const InArray& v, std::optional<OutArray>& out,
                             std::optional<OutArray>& lse, const Options& o) {
  vflash_dense_args args;
  vflash_dense_args_init(&args);
  apply(args, q, k, v, out, lse, o);
  return args;
}

// The arrays of one call, converted in argument order (the first refusal is
// the one reported), held until the call returns.
struct DenseArrays {
  InArray q, k, v;
  std::optional<OutArray> out, lse;
  DenseArrays(nb::handle q_, nb::handle k_, nb::handle v_, const nb::object& out_, const nb::object& lse_)
      : q(as_array<InArray>(q_, "q")),
        k(as_array<InArray>(k_, "k")),
        v(as_array<InArray>(v_, "v")),
        out(as_optional_out(out_, "out")),
        lse(as_optional_out(lse_, "lse")) {}
};

struct VarlenArrays {
  InArray q, k, v, cu_q, cu_k;
  std::optional<OutArray> out, lse;
  VarlenArrays(nb::handle q_, nb::handle k_, nb::handle v_, nb::handle cu_q_, nb::handle cu_k_,
               const nb::object& out_, const nb::object& lse_)
      : q(as_array<InArray>(q_, "q")),
        k(as_array<InArray>(k_, "k")),
        v(as_array<InArray>(v_, "v")),
        cu_q(as_array<InArray>(cu_q_, "cu_seqlens_q")),
        cu_k(as_array<InArray>(cu_k_, "cu_seqlens_k")),
        out(as_optional_out(out_, "out")),
        lse(as_optional_out(lse_, "lse")) {}
};

// The arrays of one backward call, converted in argument order.
struct BackwardArrays {
  InArray dout, q, k, v, out, lse, cu_q, cu_k;
  OutArray dq, dk, dv;
  BackwardArrays(nb::handle dout_, nb::handle q_, nb::handle k_, nb::handle v_, nb::handle out_, nb::handle lse_,
                 nb::handle cu_q_, nb::handle cu_k_, nb::handle dq_, nb::handle dk_, nb::handle dv_)
      : dout(as_array<InArray>(dout_, "dout")),
        q(as_array<InArray>(q_, "q")),
        k(as_array<InArray>(k_, "k")),
        v(as_array<InArray>(v_, "v")),
        out(as_array<InArray>(out_, "out")),
        lse(as_array<InArray>(lse_, "lse")),
        cu_q(as_array<InArray>(cu_q_, "cu_seqlens_q")),
        cu_k(as_array<InArray>(cu_k_, "cu_seqlens_k")),
        dq(as_array<OutArray>(dq_, "dq")),
        dk(as_array<OutArray>(dk_, "dk")),
        dv(as_array<OutArray>(dv_, "dv")) {}
};

// Queries the workspace the call needs, asks `allocate(bytes)` for it (the
// caller's framework allocates on its stream), runs the call with the GIL
// released, and keeps the workspace object alive until the call is enqueued.
template <typename Args>
void run(Args& args, vflash_status (*size_of)(const Args*, size_t*), vflash_status (*forward)(const Args*),
         const nb::object& allocate) {
  size_t bytes = 0;
  check(size_of(&args, &bytes));
  nb::object workspace;
  if (bytes > 0) {
    if (allocate.is_none())
      throw std::runtime_error("vflash: this call needs " + std::to_string(bytes) +
                               " bytes of workspace but no allocator was given");
    workspace = allocate(bytes);
    auto buffer = nb::cast<OutArray>(workspace);
    args.workspace = buffer.data();
    args.workspace_bytes = buffer.nbytes();
  }
  vflash_status status;
  {
    nb::gil_scoped_release released;
    status = forward(&args);
  }
  check(status);
}

// The kernel `name_of` reports for the call ("cpu_reference" for host arrays).
template <typename Args>
std::string kernel_name(const Args& args, vflash_status (*name_of)(const Args*, const char**)) {
  const char* name = nullptr;
  check(name_of(&args, &name));
  return name;
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "vflash: packed variable-length FlashAttention, forward and backward (C ABI binding)";

  m.def(
      "varlen_fwd",
      [](nb::handle q, nb::handle k, nb::handle v, nb::handle cu_seqlens_q, nb::handle cu_seqlens_k,
         int max_seqlen_q, int max_seqlen_k, nb::object out, nb::object lse, float softmax_scale, bool causal,
         int window_left, int window_right, float softcap, uintptr_t stream, nb::object allocate,
         bool zero_rows_past_end) {
        VarlenArrays a(q, k, v, cu_seqlens_q, cu_seqlens_k, out, lse);
        auto args = varlen_args(a.q, a.k, a.v, a.cu_q, a.cu_k, max_seqlen_q, max_seqlen_k, a.out, a.lse,
                                {softmax_scale, causal, window_left, window_right, softcap, stream});
        args.zero_rows_past_end = zero_rows_past_end ? 1 : 0;
        run(args, &vflash_varlen_workspace_size, &vflash_varlen_fwd, allocate);
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("cu_seqlens_q"), nb::arg("cu_seqlens_k"),
      nb::arg("max_seqlen_q"), nb::arg("max_seqlen_k"), nb::arg("out").none(), nb::arg("lse").none(),
      nb::arg("softmax_scale"), nb::arg("causal"), nb::arg("window_left"), nb::arg("window_right"),
      nb::arg("softcap"), nb::arg("stream"), nb::arg("allocate").none(), nb::arg("zero_rows_past_end") = false,
      "Packed varlen attention into `out` (and `lse`); `softmax_scale` 0 means 1/sqrt(d); "
      "`zero_rows_past_end`: rows past cu_seqlens_q[-1] are written as rows without keys (0, lse -inf).");

  m.def(
      "varlen_bwd",
      [](nb::handle dout, nb::handle q, nb::handle k, nb::handle v, nb::handle out, nb::handle lse,
         nb::handle cu_seqlens_q, nb::handle cu_seqlens_k, int max_seqlen_q, int max_seqlen_k, nb::handle dq,
         nb::handle dk, nb::handle dv, float softmax_scale, bool causal, int window_left, int window_right,
         float softcap, bool deterministic, uintptr_t stream, nb::object allocate) {
        BackwardArrays a(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, dq, dk, dv);
        vflash_varlen_bwd_args args;
        vflash_varlen_bwd_args_init(&args);
        args.dout = describe(a.dout, "dout");
        args.q = describe(a.q, "q");
        args.k = describe(a.k, "k");
        args.v = describe(a.v, "v");
        args.out = describe(a.out, "out");
        args.lse = describe(a.lse, "lse");
        args.cu_seqlens_q = describe(a.cu_q, "cu_seqlens_q");
        args.cu_seqlens_k = describe(a.cu_k, "cu_seqlens_k");
        args.dq = describe(a.dq, "dq");
        args.dk = describe(a.dk, "dk");
        args.dv = describe(a.dv, "dv");
        args.max_seqlen_q = max_seqlen_q;
        args.max_seqlen_k = max_seqlen_k;
        args.softmax_scale = softmax_scale;
        args.causal = causal ? 1 : 0;
        args.window_left = window_left;
        args.window_right = window_right;
        args.softcap = softcap;
        args.deterministic = deterministic ? 1 : 0;
        args.stream = reinterpret_cast<void*>(stream);
        run(args, &vflash_varlen_bwd_workspace_size, &vflash_varlen_bwd, allocate);
      },
      nb::arg("dout"), nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("lse"),
      nb::arg("cu_seqlens_q"), nb::arg("cu_seqlens_k"), nb::arg("max_seqlen_q"), nb::arg("max_seqlen_k"),
      nb::arg("dq"), nb::arg("dk"), nb::arg("dv"), nb::arg("softmax_scale"), nb::arg("causal"),
      nb::arg("window_left"), nb::arg("window_right"), nb::arg("softcap"), nb::arg("deterministic"),
      nb::arg("stream"), nb::arg("allocate").none(),
      "Backward of packed varlen attention into `dq`, `dk`, `dv` from the forward's `out` and `lse`.");

  m.def(
      "dense_fwd",
      [](nb::handle q, nb::handle k, nb::handle v, nb::object out, nb::object lse, float softmax_scale, bool causal,
         int window_left, int window_right, float softcap, uintptr_t stream, nb::object allocate) {
        DenseArrays a(q, k, v, out, lse);
        auto args = dense_args(a.q, a.k, a.v, a.out, a.lse, {softmax_scale, causal, window_left, window_right, softcap, stream});
        run(args, &vflash_dense_workspace_size, &vflash_dense_fwd, allocate);
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out").none(), nb::arg("lse").none(),
      nb::arg("softmax_scale"), nb::arg("causal"), nb::arg("window_left"), nb::arg("window_right"),
      nb::arg("softcap"), nb::arg("stream"), nb::arg("allocate").none(),
      "Dense (batch, seqlen, heads, d) attention into `out` (and `lse`).");

  m.def(
      "varlen_kernel_name",
      [](nb::handle q, nb::handle k, nb::handle v, nb::handle cu_seqlens_q, nb::handle cu_seqlens_k,
         int max_seqlen_q, int max_seqlen_k, nb::object out, nb::object lse, float softmax_scale, bool causal,
         int window_left, int window_right, float softcap) {
        VarlenArrays a(q, k, v, cu_seqlens_q, cu_seqlens_k, out, lse);
        auto args = varlen_args(a.q, a.k, a.v, a.cu_q, a.cu_k, max_seqlen_q, max_seqlen_k, a.out, a.lse,
                                {softmax_scale, causal, window_left, window_right, softcap, 0});
        return kernel_name(args, &vflash_varlen_kernel_name);
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("cu_seqlens_q"), nb::arg("cu_seqlens_k"),
      nb::arg("max_seqlen_q"), nb::arg("max_seqlen_k"), nb::arg("out").none(), nb::arg("lse").none(),
      nb::arg("softmax_scale"), nb::arg("causal"), nb::arg("window_left"), nb::arg("window_right"),
      nb::arg("softcap"), "Name of the kernel the varlen call would run (\"cpu_reference\" for host arrays).");

  m.def(
      "dense_kernel_name",
      [](nb::handle q, nb::handle k, nb::handle v, nb::object out, nb::object lse, float softmax_scale, bool causal,
         int window_left, int window_right, float softcap) {
        DenseArrays a(q, k, v, out, lse);
        auto args = dense_args(a.q, a.k, a.v, a.out, a.lse, {softmax_scale, causal, window_left, window_right, softcap, 0});
        return kernel_name(args, &vflash_dense_kernel_name);
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out").none(), nb::arg("lse").none(),
      nb::arg("softmax_scale"), nb::arg("causal"), nb::arg("window_left"), nb::arg("window_right"),
      nb::arg("softcap"), "Name of the kernel the dense call would run (\"cpu_reference\" for host arrays).");

  m.def(
      "force_kernel", [](std::optional<std::string> name) { check(vflash_force_kernel(name ? name->c_str() : nullptr)); },
      nb::arg("name").none(), "Make dispatch consider only this kernel (None clears).");
  m.def(
      "pretend_capability",
      [](std::optional<std::string> cc) { check(vflash_pretend_capability(cc ? cc->c_str() : nullptr)); },
      nb::arg("capability").none(), "Make dispatch decide as if the device had this capability (None clears).");
  m.def("doctor_json", [] {
    size_t needed = 0;
    check(vflash_doctor_json(nullptr, 0, &needed));
    std::string text(needed, '\0');
    check(vflash_doctor_json(text.data(), text.size(), &needed));
    text.resize(text.find('\0'));
    return text;
  }, "The `vflash doctor --json` report.");
  m.def("version", [] { return std::string(vflash_version()); });
  m.attr("ABI_VERSION") = VFLASH_ABI_VERSION;
}
