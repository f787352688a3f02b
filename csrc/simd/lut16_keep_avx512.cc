// AVX-512 lut16_keep (kernels.h): the moves of simd/lut16_keep_moves.h applied to four blocks
// per 64-byte load (one block per 128-bit lane; vpshufb shuffles within each lane, so one
// broadcast index vector serves all four). 1..3 leftover blocks use byte-masked loads and stores.
#include <immintrin.h>

#include "simd/kernels.h"
#include "simd/lut16_keep_moves.h"

namespace annlib {

void lut16_keep_avx512(const Lut16KeepArgs& a) {
  const size_t nb = a.num_blocks, group_bytes = nb * 16;
  const __m512i low = _mm512_set1_epi8(0x0F);
  lut16_keep::for_each_out_group(a, [&](size_t out_group, const lut16_keep::Move* moves, size_t num_moves) {
    __m512i index[lut16_keep::kMaxMoves], shift[lut16_keep::kMaxMoves];
    const uint8_t* source[lut16_keep::kMaxMoves];
    for (size_t i = 0; i < num_moves; ++i) {
      index[i] = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(moves[i].index)));
      shift[i] = _mm512_set1_epi16(static_cast<short>(4 * (moves[i].source_half & 1)));
      source[i] = a.packed + (moves[i].source_half >> 1) * group_bytes;
    }
    const size_t low_moves = lut16_keep::low_half_moves(moves, num_moves);
    uint8_t* to = a.out + out_group * group_bytes;
    auto apply = [&](size_t k, __mmask64 lanes) {
      auto moved = [&](size_t i) {
        const __m512i bytes = _mm512_maskz_loadu_epi8(lanes, source[i] + k * 16);
        return _mm512_shuffle_epi8(_mm512_and_si512(_mm512_srlv_epi16(bytes, shift[i]), low), index[i]);
      };
      // Two accumulators in registers (an array indexed by out_half would live on the stack).
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      for (size_t i = 0; i < low_moves; ++i) lo = _mm512_or_si512(lo, moved(i));
      for (size_t i = low_moves; i < num_moves; ++i) hi = _mm512_or_si512(hi, moved(i));
      // The high half's values are <= 15, so a 16-bit shift moves no bit across bytes.
      _mm512_mask_storeu_epi8(to + k * 16, lanes, _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4)));
    };
    size_t k = 0;
    for (; k + 4 <= nb; k += 4) apply(k, ~__mmask64{0});
    if (k < nb) apply(k, (__mmask64{1} << ((nb - k) * 16)) - 1);
  });
}

}  // namespace annlib
