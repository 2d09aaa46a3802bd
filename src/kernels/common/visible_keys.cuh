// Which keys a query row may see: the one definition every kernel uses.
//
// Causal masks and windows are aligned bottom-right: in a sequence of q_len
// queries and k_len keys, row i sees key j when
//     i + (k_len - q_len) - left <= j <= i + (k_len - q_len) + right,
// a negative window side is unbounded, and causal is right = 0. Ranges are
// half-open, [begin, end), clamped to [0, k_len]; an empty range has
// begin == end. A window longer than the sequence behaves exactly like no
// window: the sums row + shift + window, which may pass int32's range even
// though each term fits, are never formed; every step below stays in int32
// for rows below q_len + 1024 (validation keeps that headroom under 2^31),
// which keeps the 64-bit arithmetic (and its registers) out of the kernels.
#pragma once

#include "kernels/common/host_device.hpp"

namespace vflash::kernels {

struct KeySpan {
  int begin, end;  // keys [begin, end); begin == end: none
  VFLASH_HD bool empty() const { return begin >= end; }
};

// Keys that some row of [first_row, last_row] sees (the union of the rows'
// ranges, which is one interval since both bounds grow with the row).
VFLASH_HD KeySpan visible_keys(int first_row, int last_row, int q_len, int k_len, int window_left,
                               int window_right) {
  // The diagonal key of a row: row + k_len - q_len, in (-q_len, k_len + 1024).
  const int diag_first = first_row + (k_len - q_len);
  int begin = window_left >= 0 && diag_first > window_left ? diag_first - window_left : 0;
  if (begin > k_len) begin = k_len;
  int end = k_len;
  // last_row's range ends at its diagonal + right + 1, which reaches k_len once
  // right >= q_len - last_row (compared, not summed).
  if (window_right >= 0 && window_right < q_len - last_row) end = last_row + (k_len - q_len) + window_right + 1;
  if (end < begin) end = begin;
  return {begin, end};
}

// Keys that row `row` sees.
VFLASH_HD KeySpan visible_keys(int row, int q_len, int k_len, int window_left, int window_right) {
  return visible_keys(row, row, q_len, k_len, window_left, window_right);
}

// Number of blocks of `block` items covering `count` items, without the
// int32 overflow of (count + block - 1) / block near 2^31.
VFLASH_HD int blocks_of(int count, int block) { return count / block + (count % block != 0); }

}  // namespace vflash::kernels
