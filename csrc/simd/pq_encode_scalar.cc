// Portable kernels of the anisotropic PQ encoder (tables and coordinate descent): the
// reference every SIMD path must match bit for bit (see kernels.h).
#include <algorithm>
#include <numeric>

#include "simd/kernels.h"
#include "simd/pq_descent_rounds.h"

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
  for (size_t k = 0; k < a.num_blocks; ++k) a.keys[k] = pq_descent::order_key(a, k);
  // (key, index) is a total order, so an unstable sort gives the stable order, without a buffer.
  std::iota(a.order, a.order + a.num_blocks, uint32_t{0});
  std::sort(a.order, a.order + a.num_blocks,
            [&](uint32_t x, uint32_t y) { return a.keys[x] < a.keys[y] || (a.keys[x] == a.keys[y] && x < y); });
}

void pq_descent_scalar(const PqDescentArgs& a) {
  pq_descent::rounds(a, [&](size_t k, unsigned old, float p) {
    const float* rn = a.residual_norm + 16 * k;
    const float* par = a.parallel + 16 * k;
    const float base = p - par[old], pp = p * p, rn_old = rn[old];
    unsigned best = old;
    float best_delta = 0.f;
    for (unsigned j = 0; j < 16; ++j) {
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
    return best;
  });
}

}  // namespace annlib
