// Portable inner-product block kernel: the reference every SIMD path is tested against.
#include "simd/kernels.h"

namespace annlib {

void dot_block_scalar(const DotBlockArgs& a) {
  for (size_t i = 0; i < a.num_queries; ++i) {
    const float* q = a.queries + i * a.dim;
    for (size_t j = 0; j < a.num_points; ++j) {
      const float* x = a.points + j * a.dim;
      // Four partial sums keep the dependency chain short without SIMD.
      float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
      size_t d = 0;
      for (; d + 4 <= a.dim; d += 4) {
        s0 += q[d] * x[d];
        s1 += q[d + 1] * x[d + 1];
        s2 += q[d + 2] * x[d + 2];
        s3 += q[d + 3] * x[d + 3];
      }
      for (; d < a.dim; ++d) s0 += q[d] * x[d];
      a.out[i * a.out_stride + j] = (s0 + s1) + (s2 + s3);
    }
  }
}

float dot_f32_i8_scalar(const float* q, const int8_t* x, size_t dim) {
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  size_t d = 0;
  for (; d + 4 <= dim; d += 4) {
    s0 += q[d] * x[d];
    s1 += q[d + 1] * x[d + 1];
    s2 += q[d + 2] * x[d + 2];
    s3 += q[d + 3] * x[d + 3];
  }
  for (; d < dim; ++d) s0 += q[d] * x[d];
  return (s0 + s1) + (s2 + s3);
}

void dot_by_dim_scalar(const DotByDimArgs& a) {
  for (size_t i = 0; i < a.num_queries; ++i) {
    const float* query = a.queries + i * a.dim;
    float* out = a.out + i * a.out_stride;
    for (size_t j = 0; j < a.num_points; ++j) out[j] = 0.f;
    for (size_t d = 0; d < a.dim; ++d) {
      const float qd = query[d];
      const float* row = a.points_by_dim + d * a.num_points;
      for (size_t j = 0; j < a.num_points; ++j) out[j] += qd * row[j];
    }
  }
}

}  // namespace annlib
