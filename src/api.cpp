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

// The kernel that serves validated CUDA params, or a typed error saying why none.
const KernelInfo& kernel_for(const FwdParams& p) {
  const DeviceInfo device = query_device(p.device);
  if (!device.present)
    fail(Status::no_device, "q.device",
         "CUDA device " + std::to_string(p.device) + " is not usable (" + device.absent_reason + ")");
  // Dispatch explains every candidate in words; repeated calls of one shape
  // take the remembered choice instead. The key holds everything selection reads.
  // Efficiency floors enter as one bit per kernel, so the map stays bounded
  // however many distinct max_seqlen_q values a server sees.
  // One read of the forcing for both the key and the selection: read twice, a
  // concurrent vflash_force_kernel could file one kernel's decision under the
  // other's key for the life of the process.
  const std::optional<std::string> forced = forced_kernel();
  if (forced)
    if (const std::string why = unknown_kernel(*forced); !why.empty())
      fail(Status::invalid_argument, "VFLASH_FORCE_KERNEL", why);
  uint64_t below_floor = 0;
  const auto kernels = cuda_kernels();
  for (size_t i = 0; i < kernels.size() && i < 64; ++i)
    if (below_efficiency_floor(kernels[i], p)) below_floor |= uint64_t{1} << i;
  using Key = std::tuple<int, int, int, uint32_t, uint64_t, int, bool, int, int, std::string>;
  const Key key{int(p.dtype),    p.head_dim,      p.head_dim_v,     features_of(p),
                below_floor,     p.device,        device.pretended, device.cc.major,
                device.cc.minor, forced.value_or("")};
  static std::mutex mutex;
  static std::map<Key, const KernelInfo*> chosen;
  {
    std::lock_guard lock(mutex);
    if (auto it = chosen.find(key); it != chosen.end()) return *it->second;
  }
  const Decision decision = select_kernel(p, device, forced);
  if (!decision.kernel)
    throw Error(Status::unsupported, "",
                "no kernel of this build serves the call on " + arch::family_name(device.cc) +
                    (device.pretended ? " (pretended)" : "") + ": " + describe_rejections(decision));
  std::lock_guard lock(mutex);
  chosen.emplace(key, decision.kernel);
  return *decision.kernel;
}

// The backward kernel that serves validated CUDA params, or a typed error
// saying why none; decisions remembered per call shape as for the forward.
const KernelInfo& backward_kernel_for(const BwdParams& b) {
  const FwdParams& p = b.fwd;
  const DeviceInfo device = query_device(p.device);
  if (!device.present)
    fail(Status::no_device, "q.device",
         "CUDA device " + std::to_string(p.device) + " is not usable (" + device.absent_reason + ")");
  const std::optional<std::string> forced = forced_kernel();
  if (forced)
    if (const std::string why = unknown_kernel(*forced); !why.empty())
      fail(Status::invalid_argument, "VFLASH_FORCE_KERNEL", why);
  using Key = std::tuple<int, int, int, uint32_t, int, bool, int, int, std::string>;
  const Key key{int(p.dtype), p.head_dim,       p.head_dim_v,    features_of(b),       p.device,
                device.pretended, device.cc.major, device.cc.minor, forced.value_or("")};
  static std::mutex mutex;
  static std::map<Key, const KernelInfo*> chosen;
  {
    std::lock_guard lock(mutex);
    if (auto it = chosen.find(key); it != chosen.end()) return *it->second;
  }
  const Decision decision = select_backward_kernel(b, device, forced);
  if (!decision.kernel)
    throw Error(Status::unsupported, "",
                "no backward kernel of this build serves the call on " + arch::family_name(device.cc) +
                    (device.pretended ? " (pretended)" : "") + ": " + describe_rejections(decision));
  std::lock_guard lock(mutex);
  chosen.emplace(key, decision.kernel);
  return *decision.kernel;
}

size_t workspace_of(const BwdParams& b) {
  if (b.fwd.device == VFLASH_DEVICE_CPU) return 0;
  const KernelInfo& k = backward_kernel_for(b);
  return k.backward_workspace_bytes ? k.backward_workspace_bytes(b) : 0;
}

void backward(const BwdParams& b) {
  if (b.fwd.device == VFLASH_DEVICE_CPU) {
    cpu_backward(b);
    return;
  }
  const KernelInfo& k = backward_kernel_for(b);
  if (const size_t need = k.backward_workspace_bytes ? k.backward_workspace_bytes(b) : 0;
      b.fwd.workspace_bytes < need)
    fail(Status::invalid_argument, "workspace_bytes",
         "must be >= " + std::to_string(need) + " for kernel " + k.name +
             " (see vflash_varlen_bwd_workspace_size), got " + std::to_string(b.fwd.workspace_bytes));
  if (!k.launch_backward) throw Error(Status::internal, "", std::string("kernel ") + k.name + " has no backward launch");
  const DeviceScope scope(b.fwd.device);
  auto err = static_cast<cudaError_t>(k.launch_backward(b));
  if (err == cudaSuccess) err = cudaGetLastError();
  if (err != cudaSuccess) cuda_fail(std::string("kernel ") + k.name + " failed to launch", err);
}

const char* kernel_name_of(const BwdParams& b) {
  return b.fwd.device == VFLASH_DEVICE_CPU ? "cpu_reference" : backward_kernel_for(b).name;
}

size_t workspace_of(const FwdParams& p) {
  if (p.device == VFLASH_DEVICE_CPU) return 0;
  const KernelInfo& k = kernel_for(p);
  return k.workspace_bytes ? k.workspace_bytes(p) : 0;
}

void forward(const FwdParams& p) {
  if (p.device == VFLASH_DEVICE_CPU) {
    cpu_forward(p);
    return;
  }
  const KernelInfo& k = kernel_for(p);
  if (const size_t need = k.workspace_bytes ? k.workspace_bytes(p) : 0; p.workspace_bytes < need)
    fail(Status::invalid_argument, "workspace_bytes",
         "must be >= " + std::to_string(need) + " for kernel " + k.name + " (see vflash_*_workspace_size), got " +
             std::to_string(p.workspace_bytes));
  const DeviceScope scope(p.device);
  auto err = static_cast<cudaError_t>(k.launch(p));
  if (err == cudaSuccess) err = cudaGetLastError();
  if (err != cudaSuccess) cuda_fail(std::string("kernel ") + k.name + " failed to launch", err);
  err = static_cast<cudaError_t>(kernels::zero_rows_past_end(p));
  if (err != cudaSuccess) cuda_fail("the fill of rows past cu_seqlens_q[batch] failed to launch", err);
}

// Kernel names are string literals of the registry: they outlive every call.
const char* kernel_name_of(const FwdParams& p) {
  return p.device == VFLASH_DEVICE_CPU ? "cpu_reference" : kernel_for(p).name;
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
const vflash_varlen_bwd_args& checked(const vflash_varlen_bwd_args* args) {
  if (!args) fail(Status::invalid_argument, "args", "must not be null");
  return *args;
}
const vflash_dense_args& checked(const vflash_dense_args* args) {
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

void vflash_varlen_args_init(vflash_varlen_args* args) {
  if (!args) return;
  std::memset(args, 0, sizeof *args);
  args->struct_size = sizeof *args;
  args->window_left = args->window_right = -1;
}

void vflash_dense_args_init(vflash_dense_args* args) {
  if (!args) return;
  std::memset(args, 0, sizeof *args);
  args->struct_size = sizeof *args;
  args->window_left = args->window_right = -1;
}

void vflash_varlen_bwd_args_init(vflash_varlen_bwd_args* args) {
  if (!args) return;
  std::memset(args, 0, sizeof *args);
  args->struct_size = sizeof *args;
  args->window_left = args->window_right = -1;
}

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
  return c_call([&] {
    if (!bytes) fail(Status::invalid_argument, "bytes", "must not be null");
    *bytes = workspace_of(validate_varlen_bwd(checked(args)));
  });
}

vflash_status vflash_varlen_bwd_kernel_name(const vflash_varlen_bwd_args* args, const char** name) {
  return c_call([&] {
    if (!name) fail(Status::invalid_argument, "name", "must not be null");
    *name = kernel_name_of(validate_varlen_bwd(checked(args)));
  });
}

vflash_status vflash_varlen_workspace_size(const vflash_varlen_args* args, size_t* bytes) {
  return c_call([&] {
    if (!bytes) fail(Status::invalid_argument, "bytes", "must not be null");
    *bytes = workspace_of(validate_varlen(checked(args)));
  });
}

vflash_status vflash_dense_workspace_size(const vflash_dense_args* args, size_t* bytes) {
  return c_call([&] {
    if (!bytes) fail(Status::invalid_argument, "bytes", "must not be null");
    *bytes = workspace_of(validate_dense(checked(args)));
  });
}

vflash_status vflash_varlen_kernel_name(const vflash_varlen_args* args, const char** name) {
  return c_call([&] {
    if (!name) fail(Status::invalid_argument, "name", "must not be null");
    *name = kernel_name_of(validate_varlen(checked(args)));
  });
}

vflash_status vflash_dense_kernel_name(const vflash_dense_args* args, const char** name) {
  return c_call([&] {
    if (!name) fail(Status::invalid_argument, "name", "must not be null");
    *name = kernel_name_of(validate_dense(checked(args)));
  });
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
