// LUT16 code packing and LUT fixed-point conversion (algorithms.md §2.2, §2.3). Public within the core.
// ISA-free: the scan kernels that read this layout live in simd/lut16_<isa>.cc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace annlib {

/// Points per packed group: one 16-byte chunk per block holds 32 4-bit codes.
constexpr size_t kLut16GroupSize = 32;

/// Codewords per block (4-bit codes).
constexpr size_t kLut16Codewords = 16;

/// Number of 32-point groups needed for `n` points: ceil(n / 32).
size_t lut16_num_groups(size_t n);

/// Bytes of the packed layout for `n` points and `num_blocks` blocks: ceil(n / 32) * num_blocks * 16.
size_t lut16_packed_bytes(size_t n, size_t num_blocks);

/// Packs 4-bit codes into the LUT16 scan layout (§2.3).
///
/// @param codes      n x num_blocks, row-major, one code (0..15) per byte.
/// @param n          number of points.
/// @param num_blocks number of blocks B (subspaces) per point.
/// @param packed     lut16_packed_bytes(n, num_blocks) bytes. Group g (points 32g..32g+31) occupies
///                   num_blocks * 16 contiguous bytes, block-major; byte m of block k's 16 bytes holds
///                   code_k(32g + m) in its low nibble and code_k(32g + m + 16) in its high nibble.
///                   Padding points past n get code 0. Scans read it fastest 64-byte aligned
///                   (one AVX-512 load per 4 blocks; unaligned cost ~25% when streaming from DRAM).
/// @throws std::invalid_argument if a code is larger than 15.
void pack_lut16_codes(const uint8_t* codes, size_t n, size_t num_blocks, uint8_t* packed);

/// Inverse of pack_lut16_codes: writes n x num_blocks codes (one per byte) into `codes`.
void unpack_lut16_codes(const uint8_t* packed, size_t n, size_t num_blocks, uint8_t* codes);

/// Converts a float LUT to the biased fixed-point form the kernels read (§2.2).
///
/// entry = round(lut * m) + 128 with m = 127 / max |lut| over the whole table (one multiplier per
/// query keeps block sums comparable); m = 1 when the table is all zero or 127 / max overflows.
/// Decoding: sum_k (entry_k - 128) / m approximates sum_k lut[k][code_k], within 0.5 / m per block.
///
/// @param lut        num_blocks x 16 floats, row-major.
/// @param num_blocks number of blocks B.
/// @param out        num_blocks x 16 bytes.
/// @return the multiplier m.
float quantize_lut16(const float* lut, size_t num_blocks, uint8_t* out);

}  // namespace annlib
