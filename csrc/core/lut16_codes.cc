// LUT16 code packing and LUT fixed-point conversion (algorithms.md §2.2, §2.3).
#include "core/lut16_codes.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace annlib {

size_t lut16_num_groups(size_t n) { return (n + kLut16GroupSize - 1) / kLut16GroupSize; }

size_t lut16_packed_bytes(size_t n, size_t num_blocks) {
  return lut16_num_groups(n) * num_blocks * kLut16Codewords;
}

void pack_lut16_codes(const uint8_t* codes, size_t n, size_t num_blocks, uint8_t* packed) {
  for (size_t i = 0; i < n * num_blocks; ++i) {
    if (codes[i] > 15) {
      throw std::invalid_argument("LUT16 codes must be in 0..15, got " + std::to_string(codes[i]) +
                                  " for point " + std::to_string(i / num_blocks) + ", block " +
                                  std::to_string(i % num_blocks));
    }
  }
  const size_t group_bytes = num_blocks * kLut16Codewords;
  std::memset(packed, 0, lut16_packed_bytes(n, num_blocks));  // padding points get code 0
  for (size_t p = 0; p < n; ++p) {
    const size_t g = p / kLut16GroupSize, m = p % kLut16GroupSize;
    uint8_t* group = packed + g * group_bytes + (m & 15);
    const int shift = m < 16 ? 0 : 4;
    for (size_t k = 0; k < num_blocks; ++k) {
      group[k * kLut16Codewords] |= static_cast<uint8_t>(codes[p * num_blocks + k] << shift);
    }
  }
}

void unpack_lut16_codes(const uint8_t* packed, size_t n, size_t num_blocks, uint8_t* codes) {
  const size_t group_bytes = num_blocks * kLut16Codewords;
  for (size_t p = 0; p < n; ++p) {
    const size_t g = p / kLut16GroupSize, m = p % kLut16GroupSize;
    const uint8_t* group = packed + g * group_bytes + (m & 15);
    const int shift = m < 16 ? 0 : 4;
    for (size_t k = 0; k < num_blocks; ++k) {
      codes[p * num_blocks + k] = (group[k * kLut16Codewords] >> shift) & 0x0F;
    }
  }
}

float quantize_lut16(const float* lut, size_t num_blocks, uint8_t* out) {
  const size_t size = num_blocks * kLut16Codewords;
  // Branch-free |x| and eight independent running maxima: a sign-dependent
  // branch here mispredicts half the time and dominated small searches.
  float partial[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    for (size_t j = 0; j < 8; ++j) partial[j] = std::max(partial[j], std::fabs(lut[i + j]));
  }
  for (; i < size; ++i) partial[0] = std::max(partial[0], std::fabs(lut[i]));
  float max_abs = 0.f;
  for (float p : partial) max_abs = std::max(max_abs, p);
  float m = 127.f / max_abs;
  if (max_abs == 0.f || !std::isfinite(m)) m = 1.f;  // all-zero (or subnormal) table: entries are all 128
  for (i = 0; i < size; ++i) {
    // lrintf rounds to nearest-even in one instruction (cvtss2si); |lut * m| <= 127 up to
    // float rounding, so the clamp only guards the last ulp.
    long v = std::lrintf(lut[i] * m);
    v = v > 127 ? 127 : (v < -127 ? -127 : v);
    out[i] = static_cast<uint8_t>(v + 128);
  }
  return m;
}

}  // namespace annlib
