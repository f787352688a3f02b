// AVX2 LUT16 scan kernel (algorithms.md §2.4). One 32-byte load of packed codes covers
// two adjacent blocks (k in lane 0, k+1 in lane 1) for the group's 32 points; one vpshufb
// per nibble half looks up all 32 entries against the two blocks' 16-entry tables.
//
// Exactness: results are summed in 16-bit lanes with the "tag-along" trick. Each uint16 lane
// holds an even point's byte plus 256 x the next (odd) point's byte, so A0 += v gives
// even + 256*odd (mod 2^16) and A1 += v >> 8 gives odd alone; even = A0 - (A1 << 8).
// A chunk spans at most kChunkBlocks = 256 blocks, so every per-point sum of biased entries,
// even after folding the two lanes together, is <= 255 * 256 = 65280 < 2^16: A1 never wraps
// and the even sums recovered mod 2^16 are the true sums. Each chunk is widened to int32,
// unbiased by 128 per block, and added to the output, so any num_blocks is exact.
//
// No software prefetch: the codes stream sequentially and explicit prefetching 0.5-4 KiB ahead
// measured no gain (or a loss) from L3 and from DRAM.
#include <immintrin.h>

#include <algorithm>

#include "simd/kernels.h"

namespace annlib {

namespace {

constexpr size_t kChunkBlocks = 256;

/// Lookups of one block pair for one query, added to that query's accumulators.
struct Accumulators {
  __m256i lo0, lo1;  ///< points 0..15: A0 and A1
  __m256i hi0, hi1;  ///< points 16..31: A0 and A1
};

// One temporary reused for both halves: with 3 queries the 12 accumulators, the two code
// vectors and the table must fit the 16 ymm registers (GCC spilled with two temporaries).
inline void accumulate(Accumulators& acc, __m256i lut, __m256i lo_codes, __m256i hi_codes) {
  __m256i r = _mm256_shuffle_epi8(lut, lo_codes);
  acc.lo0 = _mm256_add_epi16(acc.lo0, r);
  r = _mm256_srli_epi16(r, 8);
  acc.lo1 = _mm256_add_epi16(acc.lo1, r);
  r = _mm256_shuffle_epi8(lut, hi_codes);
  acc.hi0 = _mm256_add_epi16(acc.hi0, r);
  r = _mm256_srli_epi16(r, 8);
  acc.hi1 = _mm256_add_epi16(acc.hi1, r);
}

/// Recovers 16 points' chunk sums from one A0/A1 pair, unbiases them and adds (or stores) them to out.
inline void flush_half(__m256i a0, __m256i a1, __m256i bias, bool first, int32_t* out) {
  // The two lanes hold different blocks of the same points: fold them (exact, see banner).
  const __m128i s0 = _mm_add_epi16(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
  const __m128i odd = _mm_add_epi16(_mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1));
  const __m128i even = _mm_sub_epi16(s0, _mm_slli_epi16(odd, 8));
  __m256i p0 = _mm256_sub_epi32(_mm256_cvtepu16_epi32(_mm_unpacklo_epi16(even, odd)), bias);
  __m256i p1 = _mm256_sub_epi32(_mm256_cvtepu16_epi32(_mm_unpackhi_epi16(even, odd)), bias);
  __m256i* o = reinterpret_cast<__m256i*>(out);
  if (!first) {
    p0 = _mm256_add_epi32(p0, _mm256_loadu_si256(o));
    p1 = _mm256_add_epi32(p1, _mm256_loadu_si256(o + 1));
  }
  _mm256_storeu_si256(o, p0);
  _mm256_storeu_si256(o + 1, p1);
}

template <int NQ>
void scan(const Lut16Args& a, size_t q0) {
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const size_t group_bytes = a.num_blocks * 16;
  const uint8_t* luts[NQ];
  for (int q = 0; q < NQ; ++q) luts[q] = a.luts[q0 + q];
  for (size_t g = 0; g < a.num_groups; ++g) {
    const uint8_t* codes = a.packed_codes + g * group_bytes;
    for (size_t k0 = 0; k0 < a.num_blocks; k0 += kChunkBlocks) {
      const size_t k1 = std::min(k0 + kChunkBlocks, a.num_blocks);
      Accumulators acc[NQ];
      for (int q = 0; q < NQ; ++q) {
        acc[q].lo0 = acc[q].lo1 = acc[q].hi0 = acc[q].hi1 = _mm256_setzero_si256();
      }
      size_t k = k0;
      if ((k1 - k0) % 2 != 0) {
        // Odd block count: the chunk's first block alone in lane 0. Lane 1 gets zero codes and
        // a zero table, so its lookups are 0 and add nothing. Done before the main loop rather
        // than after it: as a tail it made GCC spill the accumulators every iteration.
        const __m256i c = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + k * 16)));
        const __m256i lo = _mm256_and_si256(c, nibble);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
        for (int q = 0; q < NQ; ++q) {
          const __m128i lut = _mm_loadu_si128(reinterpret_cast<const __m128i*>(luts[q] + k * 16));
          accumulate(acc[q], _mm256_zextsi128_si256(lut), lo, hi);
        }
        ++k;
      }
      for (; k < k1; k += 2) {
        const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + k * 16));
        const __m256i lo = _mm256_and_si256(c, nibble);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
        for (int q = 0; q < NQ; ++q) {
          accumulate(acc[q], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(luts[q] + k * 16)), lo, hi);
        }
      }
      const __m256i bias = _mm256_set1_epi32(static_cast<int32_t>(128 * (k1 - k0)));
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

void lut16_avx2(const Lut16Args& a) {
  for (size_t q0 = 0; q0 < a.num_queries; q0 += kLut16MaxQueries) {
    switch (std::min(a.num_queries - q0, kLut16MaxQueries)) {
      case 3: scan<3>(a, q0); break;
      case 2: scan<2>(a, q0); break;
      default: scan<1>(a, q0); break;
    }
  }
}

void l2_mask32_avx2(const L2MaskArgs& a) {
  const __m256 bias = _mm256_set1_ps(a.two_bias), scale = _mm256_set1_ps(a.two_inv_m), thr = _mm256_set1_ps(a.threshold);
  for (size_t g = 0; g < a.num_groups; ++g) {
    uint32_t mask = 0;
    for (size_t i = 0; i < 4; ++i) {
      const size_t p = 32 * g + 8 * i;
      const __m256 s = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sums + p)));
      const __m256 score = _mm256_sub_ps(_mm256_add_ps(bias, _mm256_mul_ps(s, scale)), _mm256_loadu_ps(a.sq_norms + p));
      mask |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(score, thr, _CMP_GE_OQ))) << (8 * i);
    }
    a.masks[g] = mask;
  }
}

uint32_t greater_mask32_avx2(const int32_t* values, int32_t cutoff) {
  const __m256i c = _mm256_set1_epi32(cutoff);
  uint32_t mask = 0;
  for (int i = 0; i < 4; ++i) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + 8 * i));
    mask |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(v, c)))) << (8 * i);
  }
  return mask;
}

float quantize_lut_avx2(const float* lut, size_t size, uint8_t* out) {
  // size is a multiple of 16 (whole LUT16 tables); same arithmetic as quantize_lut16.
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 vmax = _mm256_setzero_ps();
  for (size_t i = 0; i < size; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(lut + i)));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float max_abs = _mm_cvtss_f32(m4);
  float m = 127.f / max_abs;
  if (max_abs == 0.f || !(m - m == 0.f)) m = 1.f;  // zero or subnormal table (m infinite)
  const __m256 vm = _mm256_set1_ps(m);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127), bias = _mm256_set1_epi32(128);
  for (size_t i = 0; i < size; i += 16) {
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(lut + i), vm));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(lut + i + 8), vm));
    a = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(a, lo), hi), bias);
    b = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(b, lo), hi), bias);
    // 0..255 after the bias: pack to 16-bit then unsigned-saturate to bytes, fixing AVX2's lane order.
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
    const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), bytes);
  }
  return m;
}

void build_lut_avx2(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block,
                    float* lut) {
  for (size_t begin = 0, k = 0; begin < dim; begin += dims_per_block, ++k) {
    const size_t end = std::min(begin + dims_per_block, dim);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (size_t d = begin; d < end; ++d) {
      const __m256 qd = _mm256_set1_ps(query[d]);
      lo = _mm256_fmadd_ps(qd, _mm256_loadu_ps(codebook_by_dim + d * 16), lo);
      hi = _mm256_fmadd_ps(qd, _mm256_loadu_ps(codebook_by_dim + d * 16 + 8), hi);
    }
    _mm256_storeu_ps(lut + k * 16, lo);
    _mm256_storeu_ps(lut + k * 16 + 8, hi);
  }
}

}  // namespace annlib
