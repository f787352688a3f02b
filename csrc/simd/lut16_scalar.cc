// Portable LUT16 scan kernel: the reference every SIMD path must match bit for bit.
#include <algorithm>

#include "core/lut16_codes.h"
#include "simd/kernels.h"

namespace annlib {

namespace {

constexpr size_t kGroup = 32;

/// Scores queries q0 .. q0 + nq - 1 (nq <= kLut16MaxQueries), reading each group's codes once.
void scan(const Lut16Args& a, size_t q0, size_t nq) {
  const size_t group_bytes = a.num_blocks * 16;
  // Entries carry a +128 bias per block; int32 holds the biased sum while num_blocks < 2^23.
  const int32_t bias = static_cast<int32_t>(128 * a.num_blocks);
  for (size_t g = 0; g < a.num_groups; ++g) {
    const uint8_t* codes = a.packed_codes + g * group_bytes;
    int32_t acc[kLut16MaxQueries][kGroup] = {};
    for (size_t k = 0; k < a.num_blocks; ++k) {
      const uint8_t* block = codes + k * 16;
      for (size_t q = 0; q < nq; ++q) {
        const uint8_t* lut = a.luts[q0 + q] + k * 16;
        for (size_t m = 0; m < 16; ++m) {
          acc[q][m] += lut[block[m] & 0x0F];     // point 32g + m: low nibble
          acc[q][m + 16] += lut[block[m] >> 4];  // point 32g + m + 16: high nibble
        }
      }
    }
    for (size_t q = 0; q < nq; ++q) {
      int32_t* out = a.out[q0 + q] + g * kGroup;
      for (size_t m = 0; m < kGroup; ++m) out[m] = acc[q][m] - bias;
    }
  }
}

}  // namespace

void lut16_scalar(const Lut16Args& a) {
  for (size_t q0 = 0; q0 < a.num_queries; q0 += kLut16MaxQueries) {
    scan(a, q0, std::min(a.num_queries - q0, kLut16MaxQueries));
  }
}

uint32_t greater_mask32_scalar(const int32_t* values, int32_t cutoff) {
  uint32_t mask = 0;
  for (uint32_t i = 0; i < 32; ++i) mask |= static_cast<uint32_t>(values[i] > cutoff) << i;
  return mask;
}

void l2_mask32_scalar(const L2MaskArgs& a) {
  for (size_t g = 0; g < a.num_groups; ++g) {
    const int32_t* sums = a.sums + 32 * g;
    const float* norms = a.sq_norms + 32 * g;
    uint32_t mask = 0;
    for (uint32_t i = 0; i < 32; ++i) {
      const float score = (a.two_bias + static_cast<float>(sums[i]) * a.two_inv_m) - norms[i];
      mask |= static_cast<uint32_t>(score >= a.threshold) << i;
    }
    a.masks[g] = mask;
  }
}

float quantize_lut_scalar(const float* lut, size_t size, uint8_t* out) { return quantize_lut16(lut, size / 16, out); }

void build_lut_scalar(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block,
                      float* lut) {
  for (size_t begin = 0, k = 0; begin < dim; begin += dims_per_block, ++k) {
    const size_t end = begin + dims_per_block < dim ? begin + dims_per_block : dim;
    float acc[16] = {};
    for (size_t d = begin; d < end; ++d) {
      for (size_t j = 0; j < 16; ++j) acc[j] += query[d] * codebook_by_dim[d * 16 + j];
    }
    for (size_t j = 0; j < 16; ++j) lut[k * 16 + j] = acc[j];
  }
}

}  // namespace annlib
