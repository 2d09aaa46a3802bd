// Public API glue: the C++ API (throws vflash::Error) and the C ABI wrapping
// it (status codes plus a thread-local message). Arguments are checked by
// validate.cpp; host tensors go to the CPU reference, CUDA tensors to the
// kernel dispatch selects (among the forward or the backward kernels).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <tuple>

#include "dispatch.hpp"
#include "kernels/common/rows_past_end.hpp"
#include "doctor.hpp"
#include "reference/reference.hpp"
#include "validate.hpp"
#include "vflash/vflash.h"
#include "vflash/vflash.hpp"

namespace vflash {

Error::Error(Status status, std::string argument, const std::string& message)
    : std::runtime_error(message), status_(status), argument_(std::move(argument)) {}

namespace {

[[noreturn]] void cuda_fail(const std::string& what, cudaError_t err) {
  throw Error(Status::cuda, "", what + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// Makes `ordinal` the current device for the scope of a launch (the caller's
// current device may differ from the tensors' device) and restores it.
class DeviceScope {
 public:
  explicit DeviceScope(int ordinal) {
    if (const cudaError_t err = cudaGetDevice(&previous_); err != cudaSuccess) cuda_fail("cudaGetDevice", err);
    if (previous_ == ordinal) return;
    if (const cudaError_t err = cudaSetDevice(ordinal); err != cudaSuccess)
      cuda_fail("cudaSetDevice(" + std::to_string(ordinal) + ")", err);
    switched_ = true;
  }
  ~DeviceScope() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

// The device of validated CUDA params, or a no_device error.
DeviceInfo usable_device(int ordinal) {
  DeviceInfo device = query_device(ordinal);
  if (!device.present)
    fail(Status::no_device, "q.device",
         "CUDA device " + std::to_string(ordinal) + " is not usable (" + device.absent_reason + ")");
  return device;
}

// The forced kernel, read once for both the cache key and the selection: read
// twice, a concurrent vflash_force_kernel could file one kernel's decision
// under the other's key for the life of the process. An unknown name is an error.
std::optional<std::string> checked_forced_kernel() {
  std::optional<std::string> forced = forced_kernel();
  if (forced)
    if (const std::string why = unknown_kernel(*forced); !why.empty())
      fail(Status::invalid_argument, "VFLASH_FORCE_KERNEL", why);
  return forced;
}

// Dispatch decisions remembered per call shape: dispatch explains every
// candidate in words, repeated calls of one shape take the remembered choice
// instead. A key holds everything selection reads.
template <class Key>
class KernelChoices {
 public:
  // The kernel remembered for `key`, else the one `select()` decides on, then
  // remembered; none is an unsupported error naming the `kernels` it chose among.
  template <class Select>
  const KernelInfo& get(const Key& key, const DeviceInfo& device, const char* kernels, Select&& select) {
    {
      std::lock_guard lock(mutex_);
      if (auto it = chosen_.find(key); it != chosen_.end()) return *it->second;
    }
    const Decision decision = select();
    if (!decision.kernel)
      throw Error(Status::unsupported, "",
                  std::string("no ") + kernels + " of this build serves the call on " + arch::family_name(device.cc) +
                      (device.pretended ? " (pretended)" : "") + ": " + describe_rejections(decision));
    std::lock_guard lock(mutex_);
    chosen_.emplace(key, decision.kernel);
    return *decision.kernel;
  }

 private:
  std::mutex mutex_;
  std::map<Key, const KernelInfo*> chosen_;
};

// The forward kernel that serves validated CUDA params, or a typed error saying why none.
const KernelInfo& kernel_for(const FwdParams& p) {
  const DeviceInfo device = usable_device(p.device);
  const std::optional<std::string> forced = checked_forced_kernel();
  // Efficiency floors enter the key as one bit per kernel, so the cache stays
  // bounded however many distinct max_seqlen_q values a server sees.
  uint64_t below_floor = 0;
  const auto kernels = cuda_kernels();
  for (size_t i = 0; i < kernels.size() && i < 64; ++i)
    if (below_efficiency_floor(kernels[i], p)) below_floor |= uint64_t{1} << i;
  using Key = std::tuple<int, int, int, uint32_t, uint64_t, int, bool, int, int, std::string>;
  const Key key{int(p.dtype),    p.head_dim,      p.head_dim_v,     features_of(p),
                below_floor,     p.device,        device.pretended, device.cc.major,
                device.cc.minor, forced.value_or("")};
  static KernelChoices<Key> chosen;
  return chosen.get(key, device, "kernel", [&] { return select_kernel(p, device, forced); });
}

// The backward kernel that serves validated CUDA params, or a typed error saying why none.
const KernelInfo& kernel_for(const BwdParams& b) {
  const FwdParams& p = b.fwd;
  const DeviceInfo device = usable_device(p.device);
  const std::optional<std::string> forced = checked_forced_kernel();
  using Key = std::tuple<int, int, int, uint32_t, int, bool, int, int, std::string>;
  const Key key{int(p.dtype), p.head_dim,       p.head_dim_v,    features_of(b),       p.device,
                device.pretended, device.cc.major, device.cc.minor, forced.value_or("")};
  static KernelChoices<Key> chosen;
  return chosen.get(key, device, "backward kernel", [&] { return select_backward_kernel(b, device, forced); });
}

// Device workspace bytes kernel k needs for the call.
size_t workspace_need(const KernelInfo& k, const FwdParams& p) { return k.workspace_bytes ? k.workspace_bytes(p) : 0; }
size_t workspace_need(const KernelInfo& k, const BwdParams& b) {
  return k.backward_workspace_bytes ? k.backward_workspace_bytes(b) : 0;
}

// A workspace smaller than kernel k needs is an error pointing to the query
// `size_function` that reports the size.
template <class Params>
void check_workspace(const KernelInfo& k, const Params& p, size_t workspace_bytes, const char* size_function) {
  if (const size_t need = workspace_need(k, p); workspace_bytes < need)
    fail(Status::invalid_argument, "workspace_bytes",
         "must be >= " + std::to_string(need) + " for kernel " + k.name + " (see " + size_function + "), got " +
             std::to_string(workspace_bytes));
}

// Throws on a failed launch of kernel `name`: `status` is what the launch
// returned (a cudaError_t as int), else the launch's own error.
void check_launch(const char* name, int status) {
  auto err = static_cast<cudaError_t>(status);
  if (err == cudaSuccess) err = cudaGetLastError();
  if (err != cudaSuccess) cuda_fail(std::string("kernel ") + name + " failed to launch", err);
}

size_t workspace_of(const FwdParams& p) {
  return p.device == VFLASH_DEVICE_CPU ? 0 : workspace_need(kernel_for(p), p);
}
size_t workspace_of(const BwdParams& b) {
  return b.fwd.device == VFLASH_DEVICE_CPU ? 0 : workspace_need(kernel_for(b), b);
}

void forward(const FwdParams& p) {
  if (p.device == VFLASH_DEVICE_CPU) {
    cpu_forward(p);
    return;
  }
  const KernelInfo& k = kernel_for(p);
  check_workspace(k, p, p.workspace_bytes, "vflash_*_workspace_size");
  const DeviceScope scope(p.device);
  check_launch(k.name, k.launch(p));
  const auto err = static_cast<cudaError_t>(kernels::zero_rows_past_end(p));
  if (err != cudaSuccess) cuda_fail("the fill of rows past cu_seqlens_q[batch] failed to launch", err);
}

void backward(const BwdParams& b) {
  if (b.fwd.device == VFLASH_DEVICE_CPU) {
    cpu_backward(b);
    return;
  }
  const KernelInfo& k = kernel_for(b);
  check_workspace(k, b, b.fwd.workspace_bytes, "vflash_varlen_bwd_workspace_size");
  if (!k.launch_backward) throw Error(Status::internal, "", std::string("kernel ") + k.name + " has no backward launch");
  const DeviceScope scope(b.fwd.device);
  check_launch(k.name, k.launch_backward(b));
}

// Kernel names are string literals of the registry: they outlive every call.
const char* kernel_name_of(const FwdParams& p) {
  return p.device == VFLASH_DEVICE_CPU ? "cpu_reference" : kernel_for(p).name;
}
const char* kernel_name_of(const BwdParams& b) {
  return b.fwd.device == VFLASH_DEVICE_CPU ? "cpu_reference" : kernel_for(b).name;
}

// Fields appended to vflash_varlen_args after the ABI's first release read as
// 0 when the caller's struct_size ends before them; validation then sees the
// full struct.
constexpr size_t kVarlenArgsFirstSize = offsetof(vflash_varlen_args, zero_rows_past_end);

vflash_varlen_args checked(const vflash_varlen_args* args) {
  if (!args) fail(Status::invalid_argument, "args", "must not be null");
  if (args->struct_size >= sizeof(vflash_varlen_args) || args->struct_size < kVarlenArgsFirstSize) return *args;
  vflash_varlen_args full;
  std::memset(&full, 0, sizeof full);
  std::memcpy(&full, args, args->struct_size);
  full.struct_size = sizeof full;
  return full;
}
template <class Args>
const Args& checked(const Args* args) {
  if (!args) fail(Status::invalid_argument, "args", "must not be null");
  return *args;
}

thread_local std::string last_error;

// Runs `body` for the C ABI: exceptions become a status and the thread's
// last error message.
template <typename Body>
vflash_status c_call(Body&& body) noexcept {
  try {
    body();
    last_error.clear();
    return VFLASH_OK;
  } catch (const Error& e) {
    last_error = e.what();
    return static_cast<vflash_status>(e.status());
  } catch (const std::bad_alloc&) {
    last_error = "out of host memory";
  } catch (const std::exception& e) {
    last_error = std::string("internal error: ") + e.what();
  } catch (...) {
    last_error = "internal error: unknown exception";
  }
  return VFLASH_ERROR_INTERNAL;
}

Tensor tensor_of(void* data, vflash_dtype dtype, int device, int ndim, const int64_t* shape) {
  if (ndim < 1 || ndim > 4) fail(Status::invalid_argument, "ndim", "must be in [1, 4], got " + std::to_string(ndim));
  if (!shape) fail(Status::invalid_argument, "shape", "must not be null");
  if (dtype < VFLASH_DTYPE_FP16 || dtype > VFLASH_DTYPE_INT32)
    fail(Status::invalid_argument, "dtype", "unknown dtype code " + std::to_string(int(dtype)));
  Tensor t{};
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.ndim = ndim;
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] < 0)
      fail(Status::invalid_argument, "shape[" + std::to_string(i) + "]",
           "must be >= 0, got " + std::to_string(shape[i]));
    t.shape[i] = shape[i];
    t.stride[i] = stride;
    if (shape[i] > 1 && __builtin_mul_overflow(stride, shape[i], &stride))
      fail(Status::invalid_argument, "shape", "element count overflows int64");
  }
  return t;
}

// Zeroes an argument block and fills its defaults (struct_size, unbounded windows).
template <class Args>
void init_args(Args* args) {
  if (!args) return;
  std::memset(args, 0, sizeof *args);
  args->struct_size = sizeof *args;
  args->window_left = args->window_right = -1;
}

// The C ABI's workspace-size and kernel-name queries: `validate` turns the
// checked arguments into params.
template <class Args, class Validate>
vflash_status c_workspace_size(const Args* args, size_t* bytes, Validate validate) {
  return c_call([&] {
    if (!bytes) fail(Status::invalid_argument, "bytes", "must not be null");
    *bytes = workspace_of(validate(checked(args)));
  });
}
template <class Args, class Validate>
vflash_status c_kernel_name(const Args* args, const char** name, Validate validate) {
  return c_call([&] {
    if (!name) fail(Status::invalid_argument, "name", "must not be null");
    *name = kernel_name_of(validate(checked(args)));
  });
}

}  // namespace

Tensor make_tensor(void* data, vflash_dtype dtype, int device, std::initializer_list<int64_t> shape) {
  return tensor_of(data, dtype, device, int(shape.size()), shape.begin());
}

void varlen_fwd(const VarlenArgs& args) { forward(validate_varlen(args)); }
void dense_fwd(const DenseArgs& args) { forward(validate_dense(args)); }
size_t varlen_workspace_size(const VarlenArgs& args) { return workspace_of(validate_varlen(args)); }
size_t dense_workspace_size(const DenseArgs& args) { return workspace_of(validate_dense(args)); }
std::string varlen_kernel_name(const VarlenArgs& args) { return kernel_name_of(validate_varlen(args)); }
std::string dense_kernel_name(const DenseArgs& args) { return kernel_name_of(validate_dense(args)); }
void varlen_bwd(const VarlenBwdArgs& args) { backward(validate_varlen_bwd(args)); }
size_t varlen_bwd_workspace_size(const VarlenBwdArgs& args) { return workspace_of(validate_varlen_bwd(args)); }
std::string varlen_bwd_kernel_name(const VarlenBwdArgs& args) { return kernel_name_of(validate_varlen_bwd(args)); }
std::string doctor_json() { return doctor_report_json(); }

}  // namespace vflash

using namespace vflash;

extern "C" {

void vflash_varlen_args_init(vflash_varlen_args* args) { init_args(args); }

void vflash_dense_args_init(vflash_dense_args* args) { init_args(args); }

void vflash_varlen_bwd_args_init(vflash_varlen_bwd_args* args) { init_args(args); }

vflash_status vflash_tensor_make(vflash_tensor* t, void* data, vflash_dtype dtype, int32_t device, int32_t ndim,
                                 const int64_t* shape) {
  return c_call([&] {
    if (!t) fail(Status::invalid_argument, "t", "must not be null");
    *t = tensor_of(data, dtype, device, ndim, shape);
  });
}

vflash_status vflash_varlen_fwd(const vflash_varlen_args* args) {
  return c_call([&] { forward(validate_varlen(checked(args))); });
}

vflash_status vflash_dense_fwd(const vflash_dense_args* args) {
  return c_call([&] { forward(validate_dense(checked(args))); });
}

vflash_status vflash_varlen_bwd(const vflash_varlen_bwd_args* args) {
  return c_call([&] { backward(validate_varlen_bwd(checked(args))); });
}

vflash_status vflash_varlen_bwd_workspace_size(const vflash_varlen_bwd_args* args, size_t* bytes) {
  return c_workspace_size(args, bytes, validate_varlen_bwd);
}

vflash_status vflash_varlen_bwd_kernel_name(const vflash_varlen_bwd_args* args, const char** name) {
  return c_kernel_name(args, name, validate_varlen_bwd);
}

vflash_status vflash_varlen_workspace_size(const vflash_varlen_args* args, size_t* bytes) {
  return c_workspace_size(args, bytes, validate_varlen);
}

vflash_status vflash_dense_workspace_size(const vflash_dense_args* args, size_t* bytes) {
  return c_workspace_size(args, bytes, validate_dense);
}

vflash_status vflash_varlen_kernel_name(const vflash_varlen_args* args, const char** name) {
  return c_kernel_name(args, name, validate_varlen);
}

vflash_status vflash_dense_kernel_name(const vflash_dense_args* args, const char** name) {
  return c_kernel_name(args, name, validate_dense);
}

const char* vflash_last_error(void) { return last_error.c_str(); }

const char* vflash_status_string(vflash_status status) {
  switch (status) {
    case VFLASH_OK: return "ok";
    case VFLASH_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case VFLASH_ERROR_UNSUPPORTED: return "unsupported";
    case VFLASH_ERROR_NO_DEVICE: return "no usable CUDA device";
    case VFLASH_ERROR_CUDA: return "CUDA error";
    case VFLASH_ERROR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

vflash_status vflash_force_kernel(const char* name) {
  return c_call([&] {
    if (!name) {
      set_forced_kernel(std::nullopt);
      return;
    }
    if (const std::string why = unknown_kernel(name); !why.empty()) fail(Status::invalid_argument, "name", why);
    set_forced_kernel(std::string(name));
  });
}

vflash_status vflash_pretend_capability(const char* capability) {
  return c_call([&] {
    if (!capability) {
      set_pretended_capability(std::nullopt);
      return;
    }
    const auto cc = arch::parse_capability(capability);
    if (!cc)
      fail(Status::invalid_argument, "capability",
           "'" + std::string(capability) + "' is not a compute capability (e.g. \"10.3\", \"103\", \"sm_103\")");
    set_pretended_capability(cc);
  });
}

vflash_status vflash_doctor_json(char* buf, size_t len, size_t* needed) {
  return c_call([&] {
    if (!buf && len > 0) fail(Status::invalid_argument, "buf", "must not be null when len > 0");
    const std::string json = doctor_report_json();
    if (needed) *needed = json.size() + 1;
    if (len == 0) return;
    const size_t n = std::min(len - 1, json.size());
    std::memcpy(buf, json.data(), n);
    buf[n] = '\0';
  });
}

const char* vflash_version(void) { return VFLASH_VERSION_STRING; }

}  // extern "C"
