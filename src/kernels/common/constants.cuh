// Numeric constants every kernel family uses (one definition each).
#pragma once

namespace vflash::kernels {

// log2(e): scores scaled by it run the softmax in the exp2 domain.
inline constexpr float kLog2e = 1.4426950408889634f;
// ln(2): a log2-domain log-sum-exp times it is the natural one.
inline constexpr float kLn2 = 0.6931471805599453f;

}  // namespace vflash::kernels
