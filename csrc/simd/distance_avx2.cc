// AVX2+FMA inner-product block kernel. Register-blocked 4 queries x 3 points:
// 12 accumulators + 3 point vectors + 1 query vector fill the 16 ymm registers,
// so each step issues 12 FMAs for 7 loads and the kernel stays FMA-bound. One
// query streams the points row after row, eight at a time.
#include <immintrin.h>

#include "simd/dot_by_dim_tiling.h"
#include "simd/kernels.h"

namespace annlib {

namespace {

inline __m256i tail_mask(size_t remaining) {
  alignas(32) static const int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - remaining));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int NQ, int NX>
inline void micro(const float* q, const float* x, size_t dim, float* out, size_t out_stride) {
  __m256 acc[NQ][NX];
  for (int i = 0; i < NQ; ++i)
    for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_setzero_ps();
  size_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    __m256 xv[NX];
    for (int j = 0; j < NX; ++j) xv[j] = _mm256_loadu_ps(x + j * dim + d);
    for (int i = 0; i < NQ; ++i) {
      const __m256 qv = _mm256_loadu_ps(q + i * dim + d);
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  if (d < dim) {
    const __m256i mask = tail_mask(dim - d);
    __m256 xv[NX];
    for (int j = 0; j < NX; ++j) xv[j] = _mm256_maskload_ps(x + j * dim + d, mask);
    for (int i = 0; i < NQ; ++i) {
      const __m256 qv = _mm256_maskload_ps(q + i * dim + d, mask);
      for (int j = 0; j < NX; ++j) acc[i][j] = _mm256_fmadd_ps(qv, xv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int j = 0; j < NX; ++j) out[i * out_stride + j] = hsum(acc[i][j]);
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
/// reduced (micro's reduction is hsum: lanes (i, i + 4), then (i, i + 2), (0, 1)).
inline __m256 point_products(const float* q, const float* x, size_t dim) {
  __m256 acc = _mm256_setzero_ps();
  size_t d = 0;
  for (; d + 8 <= dim; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(x + d), acc);
  if (d < dim) {
    const __m256i mask = tail_mask(dim - d);
    acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + d, mask), _mm256_maskload_ps(x + d, mask), acc);
  }
  return acc;
}

/// Sums of 8 accumulators, one per lane, by hsum's tree applied to all of them at once.
/// Accumulator s lands in lane kLaneOfSlot[s].
inline __m256 transposed_reduce(const __m256* v) {
  __m256 s4[4];  // (i, i + 4): accumulator j in the low half, j + 4 in the high half
  for (int j = 0; j < 4; ++j) {
    s4[j] = _mm256_add_ps(_mm256_permute2f128_ps(v[j], v[j + 4], 0x20), _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
  }
  __m256 s2[2];  // (i, i + 2): two lanes per accumulator
  for (int j = 0; j < 2; ++j) {
    const __m256d a = _mm256_castps_pd(s4[j]), b = _mm256_castps_pd(s4[j + 2]);
    s2[j] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
  }
  return _mm256_add_ps(_mm256_shuffle_ps(s2[0], s2[1], 0x88), _mm256_shuffle_ps(s2[0], s2[1], 0xDD));  // (0, 1)
}

/// Where transposed_reduce puts accumulator s; its own inverse (it swaps bits 0 and 1 of s).
constexpr int kLaneOfSlot[8] = {0, 2, 1, 3, 4, 6, 5, 7};

/// One query against every point, the rows read in memory order: micro<1, 3> read three rows
/// side by side, which the hardware prefetcher follows at a fraction of one stream's bandwidth
/// (see the AVX-512 path). Each sum is micro's chain and tree: the same bits alone as in a batch.
void stream_one_query(const DotBlockArgs& a) {
  size_t j = 0;
  for (; j + 8 <= a.num_points; j += 8) {
    __m256 acc[8];
    for (int p = 0; p < 8; ++p) acc[kLaneOfSlot[p]] = point_products(a.queries, a.points + (j + p) * a.dim, a.dim);
    _mm256_storeu_ps(a.out + j, transposed_reduce(acc));
  }
  for (; j < a.num_points; ++j) a.out[j] = hsum(point_products(a.queries, a.points + j * a.dim, a.dim));
}

}  // namespace

void dot_block_avx2(const DotBlockArgs& a) {
  if (a.num_queries == 1) {
    stream_one_query(a);
    return;
  }
  size_t j = 0;
  for (; j + 3 <= a.num_points; j += 3) rows<3>(a, j);
  switch (a.num_points - j) {
    case 2: rows<2>(a, j); break;
    case 1: rows<1>(a, j); break;
    default: break;
  }
}

namespace {

/// The 8-lane path of the dimension-major kernel (simd/dot_by_dim_tiling.h).
struct ByDim8 {
  static constexpr size_t kLanes = 8;
  static constexpr int kMultiVectors = 2;  // 4 x 2 accumulators, loads and a broadcast fit 16 registers

  /// Queries i0 .. i0+NQ against the NV x 8 points from j0, in NQ x NV accumulators.
  template <int NQ, int NV>
  static void tile(const DotByDimArgs& a, size_t i0, size_t j0) {
    __m256 acc[NQ][NV];
    for (int q = 0; q < NQ; ++q)
      for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_setzero_ps();
    const float* queries = a.queries + i0 * a.dim;
    for (size_t d = 0; d < a.dim; ++d) {
      const float* row = a.points_by_dim + d * a.num_points + j0;
      __m256 p[NV];
      for (int v = 0; v < NV; ++v) p[v] = _mm256_loadu_ps(row + 8 * v);
      for (int q = 0; q < NQ; ++q) {
        const __m256 qd = _mm256_set1_ps(queries[q * a.dim + d]);
        for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_fmadd_ps(qd, p[v], acc[q][v]);
      }
    }
    for (int q = 0; q < NQ; ++q)
      for (int v = 0; v < NV; ++v) _mm256_storeu_ps(a.out + (i0 + q) * a.out_stride + j0 + 8 * v, acc[q][v]);
  }

  /// The last 1..7 points, with a lane mask.
  template <int NQ>
  static void tail(const DotByDimArgs& a, size_t i0, size_t j0) {
    const __m256i mask = tail_mask(a.num_points - j0);
    __m256 acc[NQ];
    for (int q = 0; q < NQ; ++q) acc[q] = _mm256_setzero_ps();
    const float* queries = a.queries + i0 * a.dim;
    for (size_t d = 0; d < a.dim; ++d) {
      const __m256 p = _mm256_maskload_ps(a.points_by_dim + d * a.num_points + j0, mask);
      for (int q = 0; q < NQ; ++q) acc[q] = _mm256_fmadd_ps(_mm256_set1_ps(queries[q * a.dim + d]), p, acc[q]);
    }
    for (int q = 0; q < NQ; ++q) _mm256_maskstore_ps(a.out + (i0 + q) * a.out_stride + j0, mask, acc[q]);
  }
};

}  // namespace

void dot_by_dim_avx2(const DotByDimArgs& a) { by_dim::run<ByDim8>(a); }

float dot_f32_i8_avx2(const float* q, const int8_t* x, size_t dim) {
  auto widen = [](const int8_t* bytes) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes))));
  };
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t d = 0;
  for (; d + 16 <= dim; d += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), widen(x + d), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), widen(x + d + 8), acc1);
  }
  for (; d + 8 <= dim; d += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), widen(x + d), acc0);
  const __m256 acc = _mm256_add_ps(acc0, acc1);
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
  float total = _mm_cvtss_f32(sum);
  for (; d < dim; ++d) total += q[d] * static_cast<float>(x[d]);
  return total;
}

}  // namespace annlib
