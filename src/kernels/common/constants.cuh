// Numeric constants every kernel family uses (one definition each).
#pragma once

namespace vflash::kernels {

// log2(e): scores scaled by it run the softmax in the exp2 domain.
inline constexpr float kLog2e = 1.4426950408889634f;

}  // namespace vflash::kernels
