// What every ISA's encoder kernels share (kernels.h, PqOrderArgs and PqDescentArgs): the sort key
// of a block and the round structure of the coordinate descent. A path supplies only the step,
// the evaluation of one block's 16 codewords; instantiated in each ISA's own translation unit, so
// it is compiled with that ISA's flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd/kernels.h"

namespace annlib::pq_descent {

/// Block k's sort key: the complement of its current residual norm's bits. A norm is >= 0, so
/// its bits order as it does and their complement orders descending.
inline uint32_t order_key(const PqOrderArgs& a, size_t k) {
  uint32_t bits;
  std::memcpy(&bits, &a.residual_norm[16 * k + a.code[k]], sizeof bits);
  return ~bits;
}

/// The rounds of PqDescentArgs. step(k, old, p) is block k's best codeword under the running p:
/// the least delta < 0 over the moves that shrink the parallel error (the lowest on ties), or
/// `old` when none lowers the loss. The move's branch is rarely taken after the first round, so
/// the next block's step starts on the old p. A round that reaches, without a move, the position
/// after the previous round's last move stops: the rest would repeat refusals with this same p.
template <class Step>
inline void rounds(const PqDescentArgs& a, Step step) {
  float p = a.p;
  size_t stop = a.num_blocks;  // after a round with moves: the position after its last move
  for (size_t round = 0; round < a.max_rounds; ++round) {
    bool changed = false;
    size_t last = 0;
    for (size_t i = 0; i < a.num_blocks; ++i) {
      if (!changed && i == stop) break;
      const size_t k = a.order[i];
      const unsigned old = a.code[k];
      const unsigned best = step(k, old, p);
      if (best != old) {
        const float* par = a.parallel + 16 * k;
        p += par[best] - par[old];
        a.code[k] = static_cast<uint8_t>(best);
        changed = true;
        last = i;
      }
    }
    if (!changed) break;
    stop = last + 1;
  }
}

}  // namespace annlib::pq_descent
