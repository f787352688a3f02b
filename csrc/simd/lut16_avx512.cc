// AVX-512 LUT16 scan kernel (algorithms.md §2.4): the AVX2 scheme widened to four blocks.
// One 64-byte load of packed codes holds blocks k..k+3 (one per 128-bit lane) for the group's
// 32 points; vpshufb looks each lane up in its own block's table, loaded as 64 bytes too.
// 1..3 leftover blocks use byte-masked loads (masked-off lanes get zero codes and a zero
// table, so they add nothing); they go before the main loop, as in lut16_avx2.cc.
//
// Exactness is argued as in lut16_avx2.cc: 16-bit "tag-along" accumulators (A0 += v,
// A1 += v >> 8, even = A0 - (A1 << 8)), flushed to int32 every kChunkBlocks = 256 blocks.
// Folding the four lanes gives per-point sums of at most 255 * 256 = 65280 < 2^16, so the
// sums recovered mod 2^16 are the true ones.
#include <immintrin.h>

#include <algorithm>

#include "simd/kernels.h"

namespace annlib {

namespace {

constexpr size_t kChunkBlocks = 256;

struct Accumulators {
  __m512i lo0, lo1;  ///< points 0..15: A0 and A1
  __m512i hi0, hi1;  ///< points 16..31: A0 and A1
};

inline void accumulate(Accumulators& acc, __m512i lut, __m512i lo_codes, __m512i hi_codes) {
  const __m512i lo = _mm512_shuffle_epi8(lut, lo_codes);
  const __m512i hi = _mm512_shuffle_epi8(lut, hi_codes);
  acc.lo0 = _mm512_add_epi16(acc.lo0, lo);
  acc.lo1 = _mm512_add_epi16(acc.lo1, _mm512_srli_epi16(lo, 8));
  acc.hi0 = _mm512_add_epi16(acc.hi0, hi);
  acc.hi1 = _mm512_add_epi16(acc.hi1, _mm512_srli_epi16(hi, 8));
}

inline __m128i fold_lanes(__m512i v) {
  const __m256i h = _mm256_add_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  return _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/// Recovers 16 points' chunk sums from one A0/A1 pair, unbiases them and adds (or stores) them to out.
inline void flush_half(__m512i a0, __m512i a1, __m512i bias, bool first, int32_t* out) {
  const __m128i s0 = fold_lanes(a0);
  const __m128i odd = fold_lanes(a1);
  const __m128i even = _mm_sub_epi16(s0, _mm_slli_epi16(odd, 8));
  const __m256i points = _mm256_set_m128i(_mm_unpackhi_epi16(even, odd), _mm_unpacklo_epi16(even, odd));
  __m512i p = _mm512_sub_epi32(_mm512_cvtepu16_epi32(points), bias);
  if (!first) p = _mm512_add_epi32(p, _mm512_loadu_si512(out));
  _mm512_storeu_si512(out, p);
}

template <int NQ>
void scan(const Lut16Args& a, size_t q0) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const size_t group_bytes = a.num_blocks * 16;
  const uint8_t* luts[NQ];
  for (int q = 0; q < NQ; ++q) luts[q] = a.luts[q0 + q];
  for (size_t g = 0; g < a.num_groups; ++g) {
    const uint8_t* codes = a.packed_codes + g * group_bytes;
    for (size_t k0 = 0; k0 < a.num_blocks; k0 += kChunkBlocks) {
      const size_t k1 = std::min(k0 + kChunkBlocks, a.num_blocks);
      Accumulators acc[NQ];
      for (int q = 0; q < NQ; ++q) {
        acc[q].lo0 = acc[q].lo1 = acc[q].hi0 = acc[q].hi1 = _mm512_setzero_si512();
      }
      size_t k = k0;
      if (const size_t head = (k1 - k0) % 4) {
        // 1..3 blocks that do not fill a register go first, with byte-masked loads.
        const __mmask64 mask = (uint64_t{1} << (16 * head)) - 1;
        const __m512i c = _mm512_maskz_loadu_epi8(mask, codes + k * 16);
        const __m512i lo = _mm512_and_si512(c, nibble);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble);
        for (int q = 0; q < NQ; ++q) accumulate(acc[q], _mm512_maskz_loadu_epi8(mask, luts[q] + k * 16), lo, hi);
        k += head;
      }
      for (; k < k1; k += 4) {
        const __m512i c = _mm512_loadu_si512(codes + k * 16);
        const __m512i lo = _mm512_and_si512(c, nibble);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble);
        for (int q = 0; q < NQ; ++q) accumulate(acc[q], _mm512_loadu_si512(luts[q] + k * 16), lo, hi);
      }
      const __m512i bias = _mm512_set1_epi32(static_cast<int32_t>(128 * (k1 - k0)));
      const bool first = k0 == 0;
      for (int q = 0; q < NQ; ++q) {
        int32_t* out = a.out[q0 + q] + g * 32;
        flush_half(acc[q].lo0, acc[q].lo1, bias, first, out);
        flush_half(acc[q].hi0, acc[q].hi1, bias, first, out + 16);
      }
    }
  }
}

}  // namespace

void lut16_avx512(const Lut16Args& a) {
  for (size_t q0 = 0; q0 < a.num_queries; q0 += kLut16MaxQueries) {
    switch (std::min(a.num_queries - q0, kLut16MaxQueries)) {
      case 3: scan<3>(a, q0); break;
      case 2: scan<2>(a, q0); break;
      default: scan<1>(a, q0); break;
    }
  }
}

void l2_mask32_avx512(const L2MaskArgs& a) {
  const __m512 bias = _mm512_set1_ps(a.two_bias), scale = _mm512_set1_ps(a.two_inv_m), thr = _mm512_set1_ps(a.threshold);
  for (size_t g = 0; g < a.num_groups; ++g) {
    uint32_t mask = 0;
    for (size_t i = 0; i < 2; ++i) {
      const size_t p = 32 * g + 16 * i;
      const __m512 s = _mm512_cvtepi32_ps(_mm512_loadu_si512(a.sums + p));
      const __m512 score = _mm512_sub_ps(_mm512_add_ps(bias, _mm512_mul_ps(s, scale)), _mm512_loadu_ps(a.sq_norms + p));
      mask |= static_cast<uint32_t>(_mm512_cmp_ps_mask(score, thr, _CMP_GE_OQ)) << (16 * i);
    }
    a.masks[g] = mask;
  }
}

uint32_t greater_mask32_avx512(const int32_t* values, int32_t cutoff) {
  const __m512i c = _mm512_set1_epi32(cutoff);
  const uint32_t lo = _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(values), c);
  const uint32_t hi = _mm512_cmpgt_epi32_mask(_mm512_loadu_si512(values + 16), c);
  return lo | (hi << 16);
}

float quantize_lut_avx512(const float* lut, size_t size, uint8_t* out) {
  // size is a multiple of 16 (whole LUT16 tables); same arithmetic as quantize_lut16.
  __m512 vmax = _mm512_setzero_ps();
  for (size_t i = 0; i < size; i += 16) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(lut + i)));
  const float max_abs = _mm512_reduce_max_ps(vmax);
  float m = 127.f / max_abs;
  if (max_abs == 0.f || !(m - m == 0.f)) m = 1.f;  // zero or subnormal table (m infinite)
  const __m512 vm = _mm512_set1_ps(m);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), bias = _mm512_set1_epi32(128);
  for (size_t i = 0; i < size; i += 16) {
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(lut + i), vm));
    v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), bias);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi32_epi8(v));
  }
  return m;
}

void build_lut_avx512(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block,
                      float* lut) {
  for (size_t begin = 0, k = 0; begin < dim; begin += dims_per_block, ++k) {
    const size_t end = std::min(begin + dims_per_block, dim);
    __m512 acc = _mm512_setzero_ps();
    for (size_t d = begin; d < end; ++d) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(query[d]), _mm512_loadu_ps(codebook_by_dim + d * 16), acc);
    }
    _mm512_storeu_ps(lut + k * 16, acc);
  }
}

}  // namespace annlib
