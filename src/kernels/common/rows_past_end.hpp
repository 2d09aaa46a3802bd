// Writing the rows of a varlen output that belong to no sequence (see
// FwdParams::zero_rows_past_end), for every kernel, on the call's stream.
#pragma once

#include "params.hpp"

namespace vflash::kernels {

// Launches the fill when p asks for it (a no-op otherwise); a cudaError_t.
int zero_rows_past_end(const FwdParams& p);

}  // namespace vflash::kernels
