// The constants that turn a raw score s = q.k into the log2 units of the
// online softmax, for every kernel: one host function computes them from the
// call's softmax_scale and softcap.
//   no softcap: x = s * exp2_scale,                  exp2_scale = softmax_scale * log2(e)
//   softcap:    x = softcap_out * tanh(s * softcap_in) * exp2_scale,
//               softcap_in = softmax_scale / softcap, softcap_out = softcap * log2(e), exp2_scale = 1
// so that p = 2^(x - max x) = e^(scaled score - max) either way.
#pragma once

#include <cmath>

#include "kernels/common/constants.cuh"
#include "kernels/common/host_device.hpp"
#include "params.hpp"

namespace vflash::kernels {

struct ScoreConstants {
  float exp2_scale;   // multiplies a score (capped, with softcap) into log2 units
  float softcap_in;   // softmax_scale / softcap; 0 without softcap
  float softcap_out;  // softcap * log2(e); 0 without softcap
  VFLASH_HD bool has_softcap() const { return softcap_out > 0.f; }
  // softcap_out * tanh(s * softcap_in): the capped score, already in log2 units.
  VFLASH_HD float capped(float s) const { return softcap_out * tanhf(s * softcap_in); }
};

// softmax_scale > 0 and softcap >= 0 (0: off), as validation guarantees.
inline ScoreConstants score_constants(float softmax_scale, float softcap) {
  if (softcap > 0.f) return {1.f, softmax_scale / softcap, softcap * kLog2e};
  return {softmax_scale * kLog2e, 0.f, 0.f};
}

inline ScoreConstants score_constants(const FwdParams& p) { return score_constants(p.softmax_scale, p.softcap); }

}  // namespace vflash::kernels
