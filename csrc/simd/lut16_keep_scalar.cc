// Portable lut16_keep (kernels.h): each kept entry's nibbles moved one block at a time, straight
// from the layout's definition (pack_lut16_codes); the reference the SIMD paths must match.
#include <cstring>

#include "simd/kernels.h"

namespace annlib {

void lut16_keep_scalar(const Lut16KeepArgs& a) {
  const size_t group_bytes = a.num_blocks * 16;
  size_t kept = 0;
  for (size_t g = 0; g < a.num_groups; ++g) kept += static_cast<size_t>(__builtin_popcount(a.keep[g]));
  std::memset(a.out, 0, (kept + 31) / 32 * group_bytes);  // padding entries get code 0
  size_t j = 0;
  for (size_t s = 0; s < a.num_groups * 32; ++s) {
    if (!((a.keep[s / 32] >> (s % 32)) & 1u)) continue;
    const uint8_t* from = a.packed + (s / 32) * group_bytes + (s % 16);
    uint8_t* to = a.out + (j / 32) * group_bytes + (j % 16);
    const int from_shift = (s % 32) < 16 ? 0 : 4, to_shift = (j % 32) < 16 ? 0 : 4;
    for (size_t k = 0; k < a.num_blocks; ++k) {
      to[k * 16] |= static_cast<uint8_t>(((from[k * 16] >> from_shift) & 0x0F) << to_shift);
    }
    ++j;
  }
}

}  // namespace annlib
