// A positive int learnt once per device ordinal (a device attribute, a
// kernel's occupancy, a kernel attribute set) and kept for later calls, so
// that a launch does not repeat runtime queries every call.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

namespace vflash {

class PerDevice {
 public:
  // *value = the cached value, or query(device, value) (a cudaError_t) on first use.
  template <class Query>
  int get(int device, int* value, Query query) {
    if (device < 0 || device >= kMaxDevices) return cudaErrorInvalidDevice;
    int v = known_[device].load(std::memory_order_relaxed);
    if (v == 0) {
      if (int err = query(device, &v); err != cudaSuccess) return err;
      known_[device].store(v, std::memory_order_relaxed);
    }
    *value = v;
    return cudaSuccess;
  }

 private:
  static constexpr int kMaxDevices = 64;
  std::atomic<int> known_[kMaxDevices] = {};  // 0: not learnt yet
};

}  // namespace vflash
