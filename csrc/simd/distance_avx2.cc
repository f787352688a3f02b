// AVX2+FMA inner-product block kernel. Register-blocked 4 queries x 3 points:
// 12 accumulators + 3 point vectors + 1 query vector fill the 16 ymm registers,
// so each step issues 12 FMAs for 7 loads and the kernel stays FMA-bound.
#include <immintrin.h>

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

template <int NV>
inline void by_dim_block(const DotByDimArgs& a, size_t j0) {
  __m256 acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  for (size_t d = 0; d < a.dim; ++d) {
    const __m256 qd = _mm256_set1_ps(a.query[d]);
    const float* row = a.points_by_dim + d * a.num_points + j0;
    for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(row + 8 * v), acc[v]);
  }
  for (int v = 0; v < NV; ++v) _mm256_storeu_ps(a.out + j0 + 8 * v, acc[v]);
}

}  // namespace

void dot_by_dim_avx2(const DotByDimArgs& a) {
  // Eight independent accumulators of 8 points cover the FMA latency; no horizontal sums.
  size_t j = 0;
  for (; j + 64 <= a.num_points; j += 64) by_dim_block<8>(a, j);
  // The remaining whole vectors in one pass, so their accumulators also run side by side.
  switch ((a.num_points - j) / 8) {
    case 7: by_dim_block<7>(a, j); break;
    case 6: by_dim_block<6>(a, j); break;
    case 5: by_dim_block<5>(a, j); break;
    case 4: by_dim_block<4>(a, j); break;
    case 3: by_dim_block<3>(a, j); break;
    case 2: by_dim_block<2>(a, j); break;
    case 1: by_dim_block<1>(a, j); break;
    default: break;
  }
  j += (a.num_points - j) / 8 * 8;
  if (j < a.num_points) {
    const __m256i mask = tail_mask(a.num_points - j);
    __m256 acc = _mm256_setzero_ps();
    for (size_t d = 0; d < a.dim; ++d) {
      acc = _mm256_fmadd_ps(_mm256_set1_ps(a.query[d]), _mm256_maskload_ps(a.points_by_dim + d * a.num_points + j, mask), acc);
    }
    _mm256_maskstore_ps(a.out + j, mask, acc);
  }
}

}  // namespace annlib
