// AVX-512 inner-product block kernel: 4 queries x 4 points in zmm registers,
// the tail of each row handled with a lane mask instead of a scalar loop; one
// query streams the points row after row, sixteen at a time.
#include <immintrin.h>

#include "simd/dot_by_dim_tiling.h"
#include "simd/kernels.h"

namespace annlib {

namespace {

/// Sums of 16 accumulators, one per lane, by the tree of _mm512_reduce_add_ps applied to
/// all of them at once: 15 adds and 30 shuffles instead of 16 x 4 of each. Accumulator s
/// lands in lane kLaneOfSlot[s].
inline __m512 transposed_reduce(const __m512* v) {
  __m512 s8[8];  // (i, i + 8): accumulator j in the low half, j + 8 in the high half
  for (int j = 0; j < 8; ++j) {
    s8[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44), _mm512_shuffle_f32x4(v[j], v[j + 8], 0xEE));
  }
  __m512 s4[4];  // (i, i + 4): 128-bit blocks hold accumulators j, j + 8, j + 4, j + 12
  for (int j = 0; j < 4; ++j) {
    s4[j] = _mm512_add_ps(_mm512_shuffle_f32x4(s8[j], s8[j + 4], 0x88), _mm512_shuffle_f32x4(s8[j], s8[j + 4], 0xDD));
  }
  __m512 s2[2];  // (i, i + 2): two lanes per accumulator
  for (int j = 0; j < 2; ++j) {
    const __m512d a = _mm512_castps_pd(s4[j]), b = _mm512_castps_pd(s4[j + 2]);
    s2[j] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  return _mm512_add_ps(_mm512_shuffle_ps(s2[0], s2[1], 0x88), _mm512_shuffle_ps(s2[0], s2[1], 0xDD));  // (0, 1)
}

/// Where transposed_reduce puts accumulator s; its own inverse (it swaps bits 0-1 and 2-3 of s).
constexpr int kLaneOfSlot[16] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

template <int NQ, int NX>
inline void micro(const float* q, const float* x, size_t dim, float* out, size_t out_stride) {
  __m512 acc[NQ][NX];
  for (int i = 0; i < NQ; ++i)
    for (int j = 0; j < NX; ++j) acc[i][j] = _mm512_setzero_ps();
  size_t d = 0;
  for (; d + 16 <= dim; d += 16) {
    __m512 xv[NX];
    for (int j = 0; j < NX; ++j) xv[j] = _mm512_loadu_ps(x + j * dim + d);
    for (int i = 0; i < NQ; ++i) {
      const __m512 qv = _mm512_loadu_ps(q + i * dim + d);
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm512_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  if (d < dim) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (dim - d)) - 1u);
    __m512 xv[NX];
    for (int j = 0; j < NX; ++j) xv[j] = _mm512_maskz_loadu_ps(mask, x + j * dim + d);
    for (int i = 0; i < NQ; ++i) {
      const __m512 qv = _mm512_maskz_loadu_ps(mask, q + i * dim + d);
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm512_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  if constexpr (NQ * NX == 16) {
    // A full 4 x 4 tile: its 16 sums by one transposed tree (45 shuffles and adds, not ~130),
    // the same tree per sum, so the same bits as alone. At 128 dimensions the separate
    // reductions cost about as much as the tile's 128 FMAs: exact search of 500 SIFT queries
    // 25.5 -> 28.6 GMAC/s on one core, 384 dimensions 35 -> 36.5.
    __m512 slots[16];
    for (int i = 0; i < NQ; ++i)
      for (int j = 0; j < NX; ++j) slots[kLaneOfSlot[i * NX + j]] = acc[i][j];
    alignas(64) float sums[16];
    _mm512_store_ps(sums, transposed_reduce(slots));
    for (int i = 0; i < NQ; ++i)
      for (int j = 0; j < NX; ++j) out[i * out_stride + j] = sums[i * NX + j];
  } else {
    for (int i = 0; i < NQ; ++i)
      for (int j = 0; j < NX; ++j) out[i * out_stride + j] = _mm512_reduce_add_ps(acc[i][j]);
  }
}

template <int NX>
inline void rows(const DotBlockArgs& a, size_t j) {
  const float* x = a.points + j * a.dim;
  float* out = a.out + j;
  size_t i = 0;
  for (; i + 4 <= a.num_queries; i += 4) micro<4, NX>(a.queries + i * a.dim, x, a.dim, out + i * a.out_stride, a.out_stride);
  switch (a.num_queries - i) {
    case 3: micro<3, NX>(a.queries + i * a.dim, x, a.dim, out + i * a.out_stride, a.out_stride); break;
    case 2: micro<2, NX>(a.queries + i * a.dim, x, a.dim, out + i * a.out_stride, a.out_stride); break;
    case 1: micro<1, NX>(a.queries + i * a.dim, x, a.dim, out + i * a.out_stride, a.out_stride); break;
    default: break;
  }
}

/// One point's products with the query, one FMA chain per lane over d as in micro, not yet
/// reduced (micro's reduction is _mm512_reduce_add_ps: lanes (i, i + 8), then (i, i + 4),
/// (i, i + 2), (0, 1)).
inline __m512 point_products(const float* q, const float* x, size_t dim) {
  __m512 acc = _mm512_setzero_ps();
  size_t d = 0;
  for (; d + 16 <= dim; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(x + d), acc);
  if (d < dim) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (dim - d)) - 1u);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + d), _mm512_maskz_loadu_ps(mask, x + d), acc);
  }
  return acc;
}

/// One query against every point, the rows read in memory order. micro<1, 4> read four rows
/// side by side, which the hardware prefetcher follows at half the bandwidth of one stream
/// (1M x 128 SIFT, bench/RESULTS.md issue 15). Each sum is micro's chain and tree, so a query
/// gets the same bits alone as in a batch.
void stream_one_query(const DotBlockArgs& a) {
  size_t j = 0;
  for (; j + 16 <= a.num_points; j += 16) {
    __m512 acc[16];
    for (int p = 0; p < 16; ++p) acc[kLaneOfSlot[p]] = point_products(a.queries, a.points + (j + p) * a.dim, a.dim);
    _mm512_storeu_ps(a.out + j, transposed_reduce(acc));
  }
  for (; j < a.num_points; ++j) a.out[j] = _mm512_reduce_add_ps(point_products(a.queries, a.points + j * a.dim, a.dim));
}

}  // namespace

void dot_block_avx512(const DotBlockArgs& a) {
  if (a.num_queries == 1) {
    stream_one_query(a);
    return;
  }
  size_t j = 0;
  for (; j + 4 <= a.num_points; j += 4) rows<4>(a, j);
  switch (a.num_points - j) {
    case 3: rows<3>(a, j); break;
    case 2: rows<2>(a, j); break;
    case 1: rows<1>(a, j); break;
    default: break;
  }
}

namespace {

/// The 16-lane path of the dimension-major kernel (simd/dot_by_dim_tiling.h).
struct ByDim16 {
  static constexpr size_t kLanes = 16;
  static constexpr int kMultiVectors = 4;  // 4 x 4 accumulators: half the 32 registers

  /// Queries i0 .. i0+NQ against the NV x 16 points from j0, in NQ x NV accumulators.
  template <int NQ, int NV>
  static void tile(const DotByDimArgs& a, size_t i0, size_t j0) {
    __m512 acc[NQ][NV];
    for (int q = 0; q < NQ; ++q)
      for (int v = 0; v < NV; ++v) acc[q][v] = _mm512_setzero_ps();
    const float* queries = a.queries + i0 * a.dim;
    for (size_t d = 0; d < a.dim; ++d) {
      const float* row = a.points_by_dim + d * a.num_points + j0;
      __m512 p[NV];
      for (int v = 0; v < NV; ++v) p[v] = _mm512_loadu_ps(row + 16 * v);
      for (int q = 0; q < NQ; ++q) {
        const __m512 qd = _mm512_set1_ps(queries[q * a.dim + d]);
        for (int v = 0; v < NV; ++v) acc[q][v] = _mm512_fmadd_ps(qd, p[v], acc[q][v]);
      }
    }
    for (int q = 0; q < NQ; ++q)
      for (int v = 0; v < NV; ++v) _mm512_storeu_ps(a.out + (i0 + q) * a.out_stride + j0 + 16 * v, acc[q][v]);
  }

  /// The last 1..15 points, with a lane mask.
  template <int NQ>
  static void tail(const DotByDimArgs& a, size_t i0, size_t j0) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (a.num_points - j0)) - 1u);
    __m512 acc[NQ];
    for (int q = 0; q < NQ; ++q) acc[q] = _mm512_setzero_ps();
    const float* queries = a.queries + i0 * a.dim;
    for (size_t d = 0; d < a.dim; ++d) {
      const __m512 p = _mm512_maskz_loadu_ps(mask, a.points_by_dim + d * a.num_points + j0);
      for (int q = 0; q < NQ; ++q) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(queries[q * a.dim + d]), p, acc[q]);
    }
    for (int q = 0; q < NQ; ++q) _mm512_mask_storeu_ps(a.out + (i0 + q) * a.out_stride + j0, mask, acc[q]);
  }
};

}  // namespace

void dot_by_dim_avx512(const DotByDimArgs& a) { by_dim::run<ByDim16>(a); }

float dot_f32_i8_avx512(const float* q, const int8_t* x, size_t dim) {
  auto widen = [](__m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)); };
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t d = 0;
  for (; d + 32 <= dim; d += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + d))), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16),
                           widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + d + 16))), acc1);
  }
  for (; d < dim; d += 16) {
    const __mmask16 mask = dim - d >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (dim - d)) - 1u);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + d), widen(_mm_maskz_loadu_epi8(mask, x + d)), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

}  // namespace annlib
