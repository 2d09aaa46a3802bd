// vflash C++ API. Mirrors the C ABI of <vflash/vflash.h>; failures throw
// vflash::Error carrying the status, the argument at fault and the rule.
#pragma once

#include <stdexcept>
#include <initializer_list>
#include <string>

#include "vflash/vflash.h"

namespace vflash {

enum class Status : int {
  ok = VFLASH_OK,
  invalid_argument = VFLASH_ERROR_INVALID_ARGUMENT,
  unsupported = VFLASH_ERROR_UNSUPPORTED,
  no_device = VFLASH_ERROR_NO_DEVICE,
  cuda = VFLASH_ERROR_CUDA,
  internal = VFLASH_ERROR_INTERNAL,
};

// Typed error: `argument()` names the argument ("cu_seqlens_q", "q.shape[2]", ...)
// or is empty when the failure is not about one argument.
class VFLASH_API Error : public std::runtime_error {
 public:
  Error(Status status, std::string argument, const std::string& message);
  Status status() const noexcept { return status_; }
  const std::string& argument() const noexcept { return argument_; }

 private:
  Status status_;
  std::string argument_;
};

using Tensor = vflash_tensor;

// Argument blocks with the defaults filled in (scale 1/sqrt(d), no mask, no softcap).
struct VarlenArgs : vflash_varlen_args {
  VarlenArgs() { vflash_varlen_args_init(this); }
};
struct DenseArgs : vflash_dense_args {
  DenseArgs() { vflash_dense_args_init(this); }
};
struct VarlenBwdArgs : vflash_varlen_bwd_args {
  VarlenBwdArgs() { vflash_varlen_bwd_args_init(this); }
};

// Row-major tensor descriptor (last dimension contiguous).
VFLASH_API Tensor make_tensor(void* data, vflash_dtype dtype, int device, std::initializer_list<int64_t> shape);

// Attention forward. Asynchronous on args.stream for CUDA tensors; synchronous
// on the CPU reference for host tensors.
VFLASH_API void varlen_fwd(const VarlenArgs& args);
VFLASH_API void dense_fwd(const DenseArgs& args);

// Attention backward (see vflash_varlen_bwd_args): writes args.dq, dk, dv.
// Asynchronous on args.stream for CUDA tensors; synchronous on the CPU
// reference for host tensors.
VFLASH_API void varlen_bwd(const VarlenBwdArgs& args);

// Device workspace bytes the call needs; validates the arguments.
VFLASH_API size_t varlen_workspace_size(const VarlenArgs& args);
VFLASH_API size_t dense_workspace_size(const DenseArgs& args);
VFLASH_API size_t varlen_bwd_workspace_size(const VarlenBwdArgs& args);

// Name of the kernel dispatch would choose for this call (validates).
VFLASH_API std::string varlen_kernel_name(const VarlenArgs& args);
VFLASH_API std::string dense_kernel_name(const DenseArgs& args);
VFLASH_API std::string varlen_bwd_kernel_name(const VarlenBwdArgs& args);

// `vflash doctor --json` report.
VFLASH_API std::string doctor_json();

}  // namespace vflash
