// TMA tensor maps over a (batch, rows, heads, dim) tensor with free strides,
// encoded on the host for each call through the driver entry point (no
// libcuda link, no allocation, no synchronisation).
#pragma once

#include <cuda.h>

#include <cstdint>

namespace vflash::hopper {

// Encodes a rank-4 map (dim, heads, rows, batches) of 16-bit elements whose
// boxes are [box_rows][box_heads][chunk]: chunk columns of box_heads adjacent
// heads for each of box_rows rows, swizzled by chunk * 2 bytes. Strides are in elements. Returns a cudaError_t as int: TMA needs the
// base 16-byte aligned and every stride a multiple of 16 bytes.
int encode_head_tensor(CUtensorMap* map, CUtensorMapDataType type, const void* base, int dim, int heads,
                       int64_t rows, int batches, int64_t head_stride, int64_t row_stride, int64_t batch_stride,
                       int chunk, int box_heads, int box_rows);

}  // namespace vflash::hopper
