// TMA tensor-map encoding for the Hopper kernel (see tensor_map.hpp).
#include "tensor_map.hpp"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>


namespace vflash::hopper {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      return PFN_cuTensorMapEncodeTiled_v12000{nullptr};
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

}  // namespace

int encode_head_tensor(CUtensorMap* map, CUtensorMapDataType type, const void* base, int dim, int heads,
                       int64_t rows, int batches, int64_t head_stride, int64_t row_stride, int64_t batch_stride,
                       int chunk, int box_heads, int box_rows) {
  constexpr int64_t kElem = 2;
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || (head_stride * kElem) % 16 != 0 ||
      (row_stride * kElem) % 16 != 0 || (batch_stride * kElem) % 16 != 0)
    return cudaErrorInvalidValue;
  const PFN_cuTensorMapEncodeTiled_v12000 encode = encode_fn();
  if (encode == nullptr) return cudaErrorNotSupported;
  // A single-batch (varlen) map still needs a well-formed batch stride.
  if (batches == 1) batch_stride = rows * row_stride;
  const cuuint64_t dims[4] = {cuuint64_t(dim), cuuint64_t(heads), cuuint64_t(rows), cuuint64_t(batches)};
  const cuuint64_t strides[3] = {cuuint64_t(head_stride * kElem), cuuint64_t(row_stride * kElem),
                                 cuuint64_t(batch_stride * kElem)};
  const cuuint32_t box[4] = {cuuint32_t(chunk), cuuint32_t(box_heads), cuuint32_t(box_rows), 1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  const CUtensorMapSwizzle swizzle = chunk == 64   ? CU_TENSOR_MAP_SWIZZLE_128B
                                     : chunk == 32 ? CU_TENSOR_MAP_SWIZZLE_64B
                                                   : CU_TENSOR_MAP_SWIZZLE_32B;
  const CUresult r = encode(map, type, 4, const_cast<void*>(base), dims, strides, box, unit,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace vflash::hopper
