// AVX-512 kernels of the anisotropic PQ encoder: one zmm holds a block's 16 codewords, so a
// block's table row, its nearest codeword and a descent step are a handful of vector ops.
// Separate multiplies and adds (no FMA) keep the scalar path's bits (kernels.h).
#include <immintrin.h>

#include <algorithm>

#include "simd/kernels.h"
#include "simd/pq_descent_rounds.h"

namespace annlib {

namespace {

/// The lowest lane of `mask` holding the least value of v over the lanes in mask (mask != 0).
inline unsigned masked_argmin(__m512 v, __mmask16 mask) {
  const __m512 inf = _mm512_set1_ps(__builtin_inff());
  const float least = _mm512_reduce_min_ps(_mm512_mask_mov_ps(inf, mask, v));
  const __mmask16 at = _mm512_mask_cmp_ps_mask(mask, v, _mm512_set1_ps(least), _CMP_EQ_OQ);
  return at ? static_cast<unsigned>(__builtin_ctz(static_cast<unsigned>(at))) : 0;  // 0: NaN (never in the core)
}

}  // namespace

void pq_tables_avx512(const PqTablesArgs& a) {
  for (size_t begin = 0, k = 0; begin < a.dim; begin += a.dims_per_block, ++k) {
    const size_t end = std::min(begin + a.dims_per_block, a.dim);
    __m512 norm = _mm512_setzero_ps(), dot = _mm512_setzero_ps();
    if (a.original) {
      for (size_t d = begin; d < end; ++d) {
        const __m512 e = _mm512_sub_ps(_mm512_set1_ps(a.residual[d]), _mm512_loadu_ps(a.codebook_by_dim + d * 16));
        norm = _mm512_add_ps(norm, _mm512_mul_ps(e, e));
        dot = _mm512_add_ps(dot, _mm512_mul_ps(e, _mm512_set1_ps(a.original[d])));
      }
      _mm512_storeu_ps(a.parallel + 16 * k, _mm512_mul_ps(dot, _mm512_set1_ps(a.inv_norm)));
    } else {
      for (size_t d = begin; d < end; ++d) {
        const __m512 e = _mm512_sub_ps(_mm512_set1_ps(a.residual[d]), _mm512_loadu_ps(a.codebook_by_dim + d * 16));
        norm = _mm512_add_ps(norm, _mm512_mul_ps(e, e));
      }
    }
    _mm512_storeu_ps(a.residual_norm + 16 * k, norm);
    a.nearest[k] = static_cast<uint8_t>(masked_argmin(norm, 0xFFFF));
  }
}

// The rank of block i is the number of blocks before it in the order: smaller keys, and equal
// keys at lower indices. 16 keys per compare; n^2 / 16 compares beat a branchy sort at n ~ 200.
void pq_order_avx512(const PqOrderArgs& a) {
  const size_t n = a.num_blocks, chunks = (n + 15) / 16;
  for (size_t k = 0; k < n; ++k) a.keys[k] = pq_descent::order_key(a, k);
  for (size_t k = n; k < 16 * chunks; ++k) a.keys[k] = 0xFFFFFFFFu;  // padding: never below a key
  // Four blocks per pass over the keys: each chunk is loaded once for four compares, and the four
  // counts are independent chains. Chunks wholly before / after a block's own compare <= / <.
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m512i key[4];
    unsigned rank[4] = {0, 0, 0, 0};
    for (int q = 0; q < 4; ++q) key[q] = _mm512_set1_epi32(static_cast<int>(a.keys[i + q]));
    const size_t first = i / 16, last = (i + 3) / 16;  // the chunks holding blocks i .. i+3
    for (size_t c = 0; c < chunks; ++c) {
      const __m512i v = _mm512_loadu_si512(a.keys + 16 * c);
      if (c < first) {
        for (int q = 0; q < 4; ++q) rank[q] += __builtin_popcount(_mm512_cmple_epu32_mask(v, key[q]));
      } else if (c > last) {
        for (int q = 0; q < 4; ++q) rank[q] += __builtin_popcount(_mm512_cmplt_epu32_mask(v, key[q]));
      } else {
        for (int q = 0; q < 4; ++q) {
          const size_t b = i + q, own = b / 16;
          if (c < own) {
            rank[q] += __builtin_popcount(_mm512_cmple_epu32_mask(v, key[q]));
          } else if (c > own) {
            rank[q] += __builtin_popcount(_mm512_cmplt_epu32_mask(v, key[q]));
          } else {
            const __mmask16 below = static_cast<__mmask16>((1u << (b % 16)) - 1);
            rank[q] += __builtin_popcount(static_cast<unsigned>(_mm512_cmplt_epu32_mask(v, key[q])) |
                                          static_cast<unsigned>(_mm512_mask_cmpeq_epu32_mask(below, v, key[q])));
          }
        }
      }
    }
    for (int q = 0; q < 4; ++q) a.order[rank[q]] = static_cast<uint32_t>(i + q);
  }
  for (; i < n; ++i) {
    const __m512i key = _mm512_set1_epi32(static_cast<int>(a.keys[i]));
    const size_t own = i / 16;
    unsigned rank = 0;
    for (size_t c = 0; c < own; ++c) {
      rank += __builtin_popcount(_mm512_cmple_epu32_mask(_mm512_loadu_si512(a.keys + 16 * c), key));
    }
    const __m512i v = _mm512_loadu_si512(a.keys + 16 * own);
    const __mmask16 below = static_cast<__mmask16>((1u << (i % 16)) - 1);
    rank += __builtin_popcount(static_cast<unsigned>(_mm512_cmplt_epu32_mask(v, key)) |
                               static_cast<unsigned>(_mm512_mask_cmpeq_epu32_mask(below, v, key)));
    for (size_t c = own + 1; c < chunks; ++c) {
      rank += __builtin_popcount(_mm512_cmplt_epu32_mask(_mm512_loadu_si512(a.keys + 16 * c), key));
    }
    a.order[rank] = static_cast<uint32_t>(i);
  }
}

void pq_descent_avx512(const PqDescentArgs& a) {
  const __m512 eta = _mm512_set1_ps(a.eta), zero = _mm512_setzero_ps();
  pq_descent::rounds(a, [&](size_t k, unsigned old, float p) {
    const float* rn = a.residual_norm + 16 * k;
    const float* par = a.parallel + 16 * k;
    const __m512 p_new = _mm512_add_ps(_mm512_set1_ps(p - par[old]), _mm512_loadu_ps(par));
    const __m512 d_par = _mm512_sub_ps(_mm512_mul_ps(p_new, p_new), _mm512_set1_ps(p * p));
    const __m512 d_perp = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(rn), _mm512_set1_ps(rn[old])), d_par);
    const __m512 delta = _mm512_add_ps(_mm512_mul_ps(eta, d_par), d_perp);
    // Moves that shrink the parallel error and lower the loss, the current code excluded.
    const __mmask16 ok =
        _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(d_par, zero, _CMP_LE_OQ), delta, zero, _CMP_LT_OQ) &
        static_cast<__mmask16>(~(1u << old));
    return ok ? masked_argmin(delta, ok) : old;
  });
}

}  // namespace annlib
