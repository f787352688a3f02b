// Portable kernels of the anisotropic PQ encoder (tables and coordinate descent): the
// reference every SIMD path must match bit for bit (see kernels.h).
#include <algorithm>
#include <cstring>
#include <numeric>

#include "simd/kernels.h"

namespace annlib {

void pq_tables_scalar(const PqTablesArgs& a) {
  for (size_t begin = 0, k = 0; begin < a.dim; begin += a.dims_per_block, ++k) {
    const size_t end = std::min(begin + a.dims_per_block, a.dim);
    float* rn = a.residual_norm + 16 * k;
    float* par = a.parallel + 16 * k;
    size_t best = 0;
    for (size_t j = 0; j < 16; ++j) {
      float norm = 0.f, dot = 0.f;
      for (size_t d = begin; d < end; ++d) {
        const float e = a.residual[d] - a.codebook_by_dim[d * 16 + j];
        norm += e * e;
        if (a.original) dot += e * a.original[d];
      }
      rn[j] = norm;
      if (a.original) par[j] = dot * a.inv_norm;
      if (norm < rn[best]) best = j;
    }
    a.nearest[k] = static_cast<uint8_t>(best);
  }
}

void pq_order_scalar(const PqOrderArgs& a) {
  for (size_t k = 0; k < a.num_blocks; ++k) {
    uint32_t bits;  // a norm is >= 0: its bits order as it does; the complement orders descending
    std::memcpy(&bits, &a.residual_norm[16 * k + a.code[k]], sizeof bits);
    a.keys[k] = ~bits;
  }
  // (key, index) is a total order, so an unstable sort gives the stable order, without a buffer.
  std::iota(a.order, a.order + a.num_blocks, uint32_t{0});
  std::sort(a.order, a.order + a.num_blocks,
            [&](uint32_t x, uint32_t y) { return a.keys[x] < a.keys[y] || (a.keys[x] == a.keys[y] && x < y); });
}

void pq_descent_scalar(const PqDescentArgs& a) {
  float p = a.p;
  size_t stop = a.num_blocks;  // after a round with moves: the position after its last move
  for (size_t round = 0; round < a.max_rounds; ++round) {
    bool changed = false;
    size_t last = 0;
    for (size_t i = 0; i < a.num_blocks; ++i) {
      if (!changed && i == stop) break;  // the rest would repeat the last round's refusals (kernels.h)
      const size_t k = a.order[i];
      const float* rn = a.residual_norm + 16 * k;
      const float* par = a.parallel + 16 * k;
      const size_t old = a.code[k];
      const float base = p - par[old], pp = p * p, rn_old = rn[old];
      size_t best = old;
      float best_delta = 0.f;
      for (size_t j = 0; j < 16; ++j) {
        if (j == old) continue;
        const float p_new = base + par[j];
        const float d_par = p_new * p_new - pp;
        if (d_par > 0.f) continue;  // only moves that shrink the parallel error
        const float d_perp = (rn[j] - rn_old) - d_par;
        const float delta = a.eta * d_par + d_perp;
        if (delta < best_delta) {
          best_delta = delta;
          best = j;
        }
      }
      if (best != old) {
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

}  // namespace annlib
