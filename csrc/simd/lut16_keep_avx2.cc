// AVX2 lut16_keep (kernels.h): the moves of simd/lut16_keep_moves.h applied to two blocks per
// 32-byte load (one per 128-bit lane, vpshufb shuffles within each lane); an odd last block
// goes through the 128-bit forms.
#include <immintrin.h>

#include "simd/kernels.h"
#include "simd/lut16_keep_moves.h"

namespace annlib {

void lut16_keep_avx2(const Lut16KeepArgs& a) {
  const size_t nb = a.num_blocks, group_bytes = nb * 16;
  const __m256i low = _mm256_set1_epi8(0x0F);
  lut16_keep::for_each_out_group(a, [&](size_t out_group, const lut16_keep::Move* moves, size_t num_moves) {
    __m256i index[lut16_keep::kMaxMoves];
    __m128i shift[lut16_keep::kMaxMoves];
    const uint8_t* source[lut16_keep::kMaxMoves];
    for (size_t i = 0; i < num_moves; ++i) {
      index[i] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(moves[i].index)));
      shift[i] = _mm_cvtsi32_si128(static_cast<int>(4 * (moves[i].source_half & 1)));
      source[i] = a.packed + (moves[i].source_half >> 1) * group_bytes;
    }
    const size_t low_moves = lut16_keep::low_half_moves(moves, num_moves);
    uint8_t* to = a.out + out_group * group_bytes;
    size_t k = 0;
    for (; k + 2 <= nb; k += 2) {
      auto moved = [&](size_t i) {
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(source[i] + k * 16));
        return _mm256_shuffle_epi8(_mm256_and_si256(_mm256_srl_epi16(bytes, shift[i]), low), index[i]);
      };
      // Two accumulators in registers (an array indexed by out_half would live on the stack).
      __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
      for (size_t i = 0; i < low_moves; ++i) lo = _mm256_or_si256(lo, moved(i));
      for (size_t i = low_moves; i < num_moves; ++i) hi = _mm256_or_si256(hi, moved(i));
      // The high half's values are <= 15, so a 16-bit shift moves no bit across bytes.
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(to + k * 16), _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)));
    }
    if (k < nb) {
      auto moved = [&](size_t i) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source[i] + k * 16));
        return _mm_shuffle_epi8(_mm_and_si128(_mm_srl_epi16(bytes, shift[i]), _mm256_castsi256_si128(low)),
                                _mm256_castsi256_si128(index[i]));
      };
      __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
      for (size_t i = 0; i < low_moves; ++i) lo = _mm_or_si128(lo, moved(i));
      for (size_t i = low_moves; i < num_moves; ++i) hi = _mm_or_si128(hi, moved(i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(to + k * 16), _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
    }
  });
}

}  // namespace annlib
