// AVX-512 inner-product block kernel: 4 queries x 4 points in zmm registers,
// the tail of each row handled with a lane mask instead of a scalar loop.
#include <immintrin.h>

#include "simd/kernels.h"

namespace annlib {

namespace {

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
  for (int i = 0; i < NQ; ++i)
    for (int j = 0; j < NX; ++j) out[i * out_stride + j] = _mm512_reduce_add_ps(acc[i][j]);
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

void dot_block_avx512(const DotBlockArgs& a) {
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

template <int NV>
inline void by_dim_block(const DotByDimArgs& a, size_t j0) {
  __m512 acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_ps();
  for (size_t d = 0; d < a.dim; ++d) {
    const __m512 qd = _mm512_set1_ps(a.query[d]);
    const float* row = a.points_by_dim + d * a.num_points + j0;
    for (int v = 0; v < NV; ++v) acc[v] = _mm512_fmadd_ps(qd, _mm512_loadu_ps(row + 16 * v), acc[v]);
  }
  for (int v = 0; v < NV; ++v) _mm512_storeu_ps(a.out + j0 + 16 * v, acc[v]);
}

}  // namespace

void dot_by_dim_avx512(const DotByDimArgs& a) {
  // Eight independent accumulators of 16 points cover the FMA latency; no horizontal sums.
  size_t j = 0;
  for (; j + 128 <= a.num_points; j += 128) by_dim_block<8>(a, j);
  // The remaining whole vectors in one pass, so their accumulators also run side by side.
  switch ((a.num_points - j) / 16) {
    case 7: by_dim_block<7>(a, j); break;
    case 6: by_dim_block<6>(a, j); break;
    case 5: by_dim_block<5>(a, j); break;
    case 4: by_dim_block<4>(a, j); break;
    case 3: by_dim_block<3>(a, j); break;
    case 2: by_dim_block<2>(a, j); break;
    case 1: by_dim_block<1>(a, j); break;
    default: break;
  }
  j += (a.num_points - j) / 16 * 16;
  if (j < a.num_points) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (a.num_points - j)) - 1u);
    __m512 acc = _mm512_setzero_ps();
    for (size_t d = 0; d < a.dim; ++d) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(a.query[d]), _mm512_maskz_loadu_ps(mask, a.points_by_dim + d * a.num_points + j), acc);
    }
    _mm512_mask_storeu_ps(a.out + j, mask, acc);
  }
}

}  // namespace annlib
