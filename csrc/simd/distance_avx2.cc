// AVX2+FMA inner-product block kernel. Register-blocked 4 queries x 3 points:
// 12 accumulators + 3 point vectors + 1 query vector fill the 16 ymm registers,
// so each step issues 12 FMAs for 7 loads and the kernel stays FMA-bound.
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

}  // namespace

void dot_block_avx2(const DotBlockArgs& a) {
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

}  // namespace annlib
