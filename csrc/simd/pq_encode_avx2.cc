// AVX2 kernels of the anisotropic PQ encoder: a block's 16 codewords in two ymm (codewords
// 0-7 and 8-15). Separate multiplies and adds (no FMA) keep the scalar path's bits (kernels.h).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "simd/kernels.h"
#include "simd/pq_descent_rounds.h"

namespace annlib {

namespace {

/// The least lane value of lo and hi, broadcast.
inline __m256 min16(__m256 lo, __m256 hi) {
  __m256 m = _mm256_min_ps(lo, hi);
  m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
  m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm256_min_ps(m, _mm256_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
}

/// Bit j set where lane j of (lo, hi) equals the broadcast m.
inline unsigned equal16(__m256 lo, __m256 hi, __m256 m) {
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(lo, m, _CMP_EQ_OQ))) |
         (static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(hi, m, _CMP_EQ_OQ))) << 8);
}

}  // namespace

void pq_tables_avx2(const PqTablesArgs& a) {
  for (size_t begin = 0, k = 0; begin < a.dim; begin += a.dims_per_block, ++k) {
    const size_t end = std::min(begin + a.dims_per_block, a.dim);
    __m256 n0 = _mm256_setzero_ps(), n1 = _mm256_setzero_ps();
    if (a.original) {
      __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
      for (size_t d = begin; d < end; ++d) {
        const __m256 r = _mm256_set1_ps(a.residual[d]), x = _mm256_set1_ps(a.original[d]);
        const __m256 e0 = _mm256_sub_ps(r, _mm256_loadu_ps(a.codebook_by_dim + d * 16));
        const __m256 e1 = _mm256_sub_ps(r, _mm256_loadu_ps(a.codebook_by_dim + d * 16 + 8));
        n0 = _mm256_add_ps(n0, _mm256_mul_ps(e0, e0));
        n1 = _mm256_add_ps(n1, _mm256_mul_ps(e1, e1));
        t0 = _mm256_add_ps(t0, _mm256_mul_ps(e0, x));
        t1 = _mm256_add_ps(t1, _mm256_mul_ps(e1, x));
      }
      const __m256 inv = _mm256_set1_ps(a.inv_norm);
      _mm256_storeu_ps(a.parallel + 16 * k, _mm256_mul_ps(t0, inv));
      _mm256_storeu_ps(a.parallel + 16 * k + 8, _mm256_mul_ps(t1, inv));
    } else {
      for (size_t d = begin; d < end; ++d) {
        const __m256 r = _mm256_set1_ps(a.residual[d]);
        const __m256 e0 = _mm256_sub_ps(r, _mm256_loadu_ps(a.codebook_by_dim + d * 16));
        const __m256 e1 = _mm256_sub_ps(r, _mm256_loadu_ps(a.codebook_by_dim + d * 16 + 8));
        n0 = _mm256_add_ps(n0, _mm256_mul_ps(e0, e0));
        n1 = _mm256_add_ps(n1, _mm256_mul_ps(e1, e1));
      }
    }
    _mm256_storeu_ps(a.residual_norm + 16 * k, n0);
    _mm256_storeu_ps(a.residual_norm + 16 * k + 8, n1);
    const unsigned at = equal16(n0, n1, min16(n0, n1));  // 0 only for NaN tables (the core gets finite input)
    a.nearest[k] = static_cast<uint8_t>(at ? __builtin_ctz(at) : 0);
  }
}

// As pq_order_avx512, 8 keys per compare. AVX2 compares signed: keys are stored with the sign
// bit flipped, which orders them as unsigned.
void pq_order_avx2(const PqOrderArgs& a) {
  const size_t n = a.num_blocks, chunks = (n + 7) / 8;
  int32_t* keys = reinterpret_cast<int32_t*>(a.keys);
  for (size_t k = 0; k < n; ++k) keys[k] = static_cast<int32_t>(pq_descent::order_key(a, k) ^ 0x80000000u);
  for (size_t k = n; k < 8 * chunks; ++k) keys[k] = INT32_MAX;  // padding: never below a key
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (size_t i = 0; i < n; ++i) {
    const __m256i key = _mm256_set1_epi32(keys[i]);
    const size_t own = i / 8;
    unsigned rank = 0;
    for (size_t c = 0; c < own; ++c) {  // key_j <= key_i: not key_j > key_i
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + 8 * c));
      rank += 8 - __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(v, key))));
    }
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + 8 * own));
    const __m256i below = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(i % 8)), lanes);
    const __m256i before = _mm256_or_si256(_mm256_cmpgt_epi32(key, v),
                                           _mm256_and_si256(below, _mm256_cmpeq_epi32(v, key)));
    rank += __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(before)));
    for (size_t c = own + 1; c < chunks; ++c) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys + 8 * c));
      rank += __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(key, w))));
    }
    a.order[rank] = static_cast<uint32_t>(i);
  }
}

void pq_descent_avx2(const PqDescentArgs& a) {
  const __m256 eta = _mm256_set1_ps(a.eta), zero = _mm256_setzero_ps(), inf = _mm256_set1_ps(__builtin_inff());
  const __m256i lanes_lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i lanes_hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
  pq_descent::rounds(a, [&](size_t k, unsigned old, float p) {
    const float* rn = a.residual_norm + 16 * k;
    const float* par = a.parallel + 16 * k;
    const __m256 base = _mm256_set1_ps(p - par[old]), pp = _mm256_set1_ps(p * p), rn_old = _mm256_set1_ps(rn[old]);
    const __m256 p0 = _mm256_add_ps(base, _mm256_loadu_ps(par));
    const __m256 p1 = _mm256_add_ps(base, _mm256_loadu_ps(par + 8));
    const __m256 dp0 = _mm256_sub_ps(_mm256_mul_ps(p0, p0), pp);
    const __m256 dp1 = _mm256_sub_ps(_mm256_mul_ps(p1, p1), pp);
    const __m256 q0 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(rn), rn_old), dp0);
    const __m256 q1 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(rn + 8), rn_old), dp1);
    const __m256 delta0 = _mm256_add_ps(_mm256_mul_ps(eta, dp0), q0);
    const __m256 delta1 = _mm256_add_ps(_mm256_mul_ps(eta, dp1), q1);
    // Moves that shrink the parallel error and lower the loss, the current code excluded.
    // (p_new of j = o need not round to p exactly: o is masked out by index, not by value.)
    const __m256i o = _mm256_set1_epi32(static_cast<int>(old));
    const __m256 ok0 = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(lanes_lo, o)),
                                        _mm256_and_ps(_mm256_cmp_ps(dp0, zero, _CMP_LE_OQ),
                                                      _mm256_cmp_ps(delta0, zero, _CMP_LT_OQ)));
    const __m256 ok1 = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(lanes_hi, o)),
                                        _mm256_and_ps(_mm256_cmp_ps(dp1, zero, _CMP_LE_OQ),
                                                      _mm256_cmp_ps(delta1, zero, _CMP_LT_OQ)));
    const unsigned ok = static_cast<unsigned>(_mm256_movemask_ps(ok0)) |
                        (static_cast<unsigned>(_mm256_movemask_ps(ok1)) << 8);
    if (!ok) return old;
    const __m256 m0 = _mm256_blendv_ps(inf, delta0, ok0), m1 = _mm256_blendv_ps(inf, delta1, ok1);
    return static_cast<unsigned>(__builtin_ctz(equal16(m0, m1, min16(m0, m1)) & ok));
  });
}

}  // namespace annlib
