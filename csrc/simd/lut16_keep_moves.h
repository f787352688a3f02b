// What the SIMD paths of lut16_keep (kernels.h, Lut16KeepArgs) share: the byte shuffles that
// move one output group's kept entries. An output group's 32 entries come, in order, from a few
// consecutive source half-groups (16 entries: the low or the high nibbles of a block's 16 bytes),
// so the group is a short list of moves (source half, output half, 16 shuffle indices) that
// depends only on the keep masks: it is built once and applied to every block, which is where
// the time goes (num_blocks is 10-200). Instantiated in each ISA's own translation unit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd/kernels.h"

namespace annlib::lut16_keep {

/// Output entries j of half out_half take source entries 16 source_half + index[j] (0x80: none).
struct Move {
  uint32_t source_half;  ///< 2 g for group g's low nibbles, 2 g + 1 for its high ones
  uint32_t out_half;     ///< 0 or 1 within the output group
  uint8_t index[16];
};

/// Entries per packed group and bytes per block of a group (core/lut16_codes.h).
constexpr size_t kGroup = 32, kBlockBytes = 16;

/// Each move carries at least one entry, so an output group needs at most 32.
constexpr size_t kMaxMoves = 32;

/// The moves into the output group's low half: for_each_out_group emits them first.
inline size_t low_half_moves(const Move* moves, size_t num_moves) {
  size_t i = 0;
  while (i < num_moves && moves[i].out_half == 0) ++i;
  return i;
}

/// Calls apply(out_group, moves, num_moves) for every output group but those that are a whole
/// source group kept and aligned (the common run before the first removed entry), which are
/// copied as bytes. Output groups are numbered from 0; the last one may be partial.
template <class Apply>
inline void for_each_out_group(const Lut16KeepArgs& a, Apply apply) {
  const size_t group_bytes = a.num_blocks * kBlockBytes;
  Move moves[kMaxMoves];
  size_t num_moves = 0, slot = 0, out_group = 0;
  for (size_t g = 0; g < a.num_groups; ++g) {
    uint32_t mask = a.keep[g];
    if (slot == 0 && mask == ~0u) {
      std::memcpy(a.out + out_group * group_bytes, a.packed + g * group_bytes, group_bytes);
      ++out_group;
      continue;
    }
    while (mask) {
      const uint32_t bit = static_cast<uint32_t>(__builtin_ctz(mask));
      mask &= mask - 1;
      const uint32_t source_half = static_cast<uint32_t>(2 * g) + (bit >> 4);
      const uint32_t out_half = static_cast<uint32_t>(slot >> 4);
      if (num_moves == 0 || moves[num_moves - 1].source_half != source_half ||
          moves[num_moves - 1].out_half != out_half) {
        Move& m = moves[num_moves++];
        m.source_half = source_half;
        m.out_half = out_half;
        std::memset(m.index, 0x80, sizeof m.index);
      }
      moves[num_moves - 1].index[slot & 15] = static_cast<uint8_t>(bit & 15);
      if (++slot == kGroup) {
        apply(out_group++, moves, num_moves);
        num_moves = 0;
        slot = 0;
      }
    }
  }
  if (slot) apply(out_group, moves, num_moves);
}

}  // namespace annlib::lut16_keep
