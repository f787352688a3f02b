// Signatures of the SIMD kernels and their argument structs. Public within the core.
// Each kernel family has one implementation per ISA (kernel_<family>_<isa>), all
// reached through the KernelTable in dispatch.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace annlib {

/// Inner products of a block of queries with a block of points:
/// out[i * out_stride + j] = <queries[i], points[j]> for i < num_queries, j < num_points.
/// Rows are dense float32 with `dim` entries each.
struct DotBlockArgs {
  const float* queries;
  size_t num_queries;
  const float* points;
  size_t num_points;
  size_t dim;
  float* out;
  size_t out_stride;
};

using DotBlockFn = void (*)(const DotBlockArgs&);

/// Inner products of queries with points stored dimension-major:
/// out[i * out_stride + j] = sum_d queries[i * dim + d] * points_by_dim[d * num_points + j].
/// For scoring a fixed set of points (partition centers) without horizontal sums. Each
/// sum is one chain of multiply-adds in increasing d, so a query's results are the same
/// bits whether it is scored alone or in a batch; a batch reads the points once per
/// few queries instead of once per query.
struct DotByDimArgs {
  const float* queries;
  const float* points_by_dim;
  size_t num_points;
  size_t dim;
  float* out;
  size_t num_queries = 1;
  size_t out_stride = 0;  ///< used when num_queries > 1
};

using DotByDimFn = void (*)(const DotByDimArgs&);

void dot_by_dim_scalar(const DotByDimArgs& args);
void dot_by_dim_avx2(const DotByDimArgs& args);
void dot_by_dim_avx512(const DotByDimArgs& args);

/// <q, x> of a float32 query and an int8 row (dim terms): int8 reordering's score. Paths sum
/// in different orders, so their results may differ in the last bits, as dot_block's do.
using DotF32I8Fn = float (*)(const float* q, const int8_t* x, size_t dim);

float dot_f32_i8_scalar(const float* q, const int8_t* x, size_t dim);
float dot_f32_i8_avx2(const float* q, const int8_t* x, size_t dim);
float dot_f32_i8_avx512(const float* q, const int8_t* x, size_t dim);

void dot_block_scalar(const DotBlockArgs& args);
void dot_block_avx2(const DotBlockArgs& args);
void dot_block_avx512(const DotBlockArgs& args);

/// Most queries one LUT16 pass scores (register limit of the AVX2 kernel; algorithms.md §2.4).
constexpr size_t kLut16MaxQueries = 3;

/// LUT16 asymmetric-hashing scan (algorithms.md §2.4): for each query q and point p,
/// out[q][p] = sum_k (luts[q][k * 16 + code_k(p)] - 128), exact in int32 for any num_blocks
/// and identical across ISAs. The codes are read once per pass for all queries.
struct Lut16Args {
  const uint8_t* packed_codes;  ///< num_groups * num_blocks * 16 bytes, layout of pack_lut16_codes
  size_t num_groups;            ///< ceil(n / 32)
  size_t num_blocks;            ///< blocks B per point
  const uint8_t* const* luts;   ///< num_queries tables, each num_blocks x 16 uint8 entries biased by +128
  size_t num_queries;           ///< 1 .. kLut16MaxQueries
  int32_t* const* out;          ///< num_queries outputs, each num_groups * 32 int32 (padding points included)
};

using Lut16Fn = void (*)(const Lut16Args&);

void lut16_scalar(const Lut16Args& args);
void lut16_avx2(const Lut16Args& args);
void lut16_avx512(const Lut16Args& args);

/// Keeps a subset of one leaf's LUT16 entries inside the packed layout (pack_lut16_codes): the
/// entries whose bit is set (bit i of keep[g] = entry 32 g + i), in their order, become
/// ceil(kept / 32) packed groups in out, padding code 0 -- the bytes of unpacking, dropping and
/// packing again, without the unpacked copy. A delete's prune moves every kept code this way.
struct Lut16KeepArgs {
  const uint8_t* packed;  ///< num_groups * num_blocks * 16 bytes
  const uint32_t* keep;   ///< num_groups masks; padding entries' bits must be 0
  size_t num_groups;
  size_t num_blocks;
  uint8_t* out;           ///< ceil(kept / 32) * num_blocks * 16 bytes, kept = total popcount of keep
};

using Lut16KeepFn = void (*)(const Lut16KeepArgs& args);

void lut16_keep_scalar(const Lut16KeepArgs& args);
void lut16_keep_avx2(const Lut16KeepArgs& args);
void lut16_keep_avx512(const Lut16KeepArgs& args);

/// Bit i of the result is set when values[i] > cutoff, for the 32 values of one
/// LUT16 group: the candidate filter after a scan, one compare per 32 points.
using GreaterMask32Fn = uint32_t (*)(const int32_t* values, int32_t cutoff);

uint32_t greater_mask32_scalar(const int32_t* values, int32_t cutoff);
uint32_t greater_mask32_avx2(const int32_t* values, int32_t cutoff);
uint32_t greater_mask32_avx512(const int32_t* values, int32_t cutoff);

/// The candidate filter of a squared-L2 LUT16 scan over num_groups groups of 32 points:
/// bit i of masks[g] is set when, for p = 32 g + i,
/// (two_bias + float(sums[p]) * two_inv_m) - sq_norms[p] >= threshold, evaluated in that
/// order, each step rounded to float (no fused multiply-add), so every ISA sets the same
/// bits as the scalar score the selection then computes. One call per leaf.
struct L2MaskArgs {
  const int32_t* sums;     ///< 32 num_groups LUT16 sums
  const float* sq_norms;   ///< 32 num_groups reconstruction norms ||x~||^2
  size_t num_groups;
  float two_bias;          ///< 2 <q, c_leaf>
  float two_inv_m;         ///< 2 / the LUT multiplier
  float threshold;
  uint32_t* masks;         ///< num_groups outputs
};

using L2Mask32Fn = void (*)(const L2MaskArgs& args);

void l2_mask32_scalar(const L2MaskArgs& args);
void l2_mask32_avx2(const L2MaskArgs& args);
void l2_mask32_avx512(const L2MaskArgs& args);

/// Quantizes a float lookup table of `size` entries (a multiple of 16) to uint8
/// entries round(lut * m) + 128 with m = 127 / max|lut| (1 for an all-zero table)
/// and returns m; every ISA gives the bytes of quantize_lut16 (algorithms.md 2.2).
using QuantizeLutFn = float (*)(const float* lut, size_t size, uint8_t* out);

float quantize_lut_scalar(const float* lut, size_t size, uint8_t* out);
float quantize_lut_avx2(const float* lut, size_t size, uint8_t* out);
float quantize_lut_avx512(const float* lut, size_t size, uint8_t* out);

/// The float LUT16 table of one query: lut[k * 16 + j] = sum over the dimensions d of
/// block k of query[d] * codebook_by_dim[d * 16 + j] (codewords laid out per dimension,
/// see transpose_codebook). ISAs may differ in the last bit (FMA vs multiply-add).
using BuildLutFn = void (*)(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block,
                            float* lut);

void build_lut_scalar(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block, float* lut);
void build_lut_avx2(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block, float* lut);
void build_lut_avx512(const float* query, const float* codebook_by_dim, size_t dim, size_t dims_per_block, float* lut);

/// The tables of the anisotropic PQ encoder for one point (algorithms.md 1.3), in float. For
/// block k and codeword j, with e_d = residual[d] - codebook_by_dim[16 d + j] over the block's
/// dimensions d in increasing order:
///   residual_norm[16 k + j] = sum_d e_d * e_d                       (||r_k - c_kj||^2)
///   parallel[16 k + j]      = (sum_d e_d * original[d]) * inv_norm   (<r_k - c_kj, x_k> / ||x||)
///   nearest[k]              = the j of the least residual_norm, the lowest j on ties.
/// parallel is not written when original is null. Every multiply and add is its own rounding
/// (no FMA) and each sum runs in increasing d, so every ISA gives the scalar path's bits.
struct PqTablesArgs {
  const float* residual;         ///< r, dim floats
  const float* original;         ///< x, dim floats, or null
  const float* codebook_by_dim;  ///< dim x 16 (transpose_codebook)
  size_t dim;
  size_t dims_per_block;
  float inv_norm;                ///< 1 / ||x||
  float* residual_norm;          ///< num_blocks x 16
  float* parallel;               ///< num_blocks x 16 (unused when original is null)
  uint8_t* nearest;              ///< num_blocks
};

using PqTablesFn = void (*)(const PqTablesArgs& args);

void pq_tables_scalar(const PqTablesArgs& args);
void pq_tables_avx2(const PqTablesArgs& args);
void pq_tables_avx512(const PqTablesArgs& args);

/// The visiting order of the encoder's descent: order[r] = the block k with the r-th largest
/// residual_norm[16 k + code[k]], ties to the lower k (a stable sort, descending). keys: scratch
/// of at least num_blocks rounded up to 16 entries. The order is unique, so every ISA gives the
/// scalar path's.
struct PqOrderArgs {
  const float* residual_norm;  ///< num_blocks x 16, all >= 0
  const uint8_t* code;         ///< num_blocks
  size_t num_blocks;
  uint32_t* keys;              ///< scratch
  uint32_t* order;             ///< num_blocks
};

using PqOrderFn = void (*)(const PqOrderArgs& args);

void pq_order_scalar(const PqOrderArgs& args);
void pq_order_avx2(const PqOrderArgs& args);
void pq_order_avx512(const PqOrderArgs& args);

/// The coordinate descent of the anisotropic PQ encoder (algorithms.md 1.3) on the tables of
/// PqTablesArgs, in float. Up to max_rounds rounds; each visits the blocks in `order` and, for
/// block k with code o, tries every j != o, with p the running <e, x/||x||>:
///   p_new = (p - par[o]) + par[j];  d_par = p_new * p_new - p * p;  skipped if d_par > 0;
///   delta = eta * d_par + ((rn[j] - rn[o]) - d_par)
/// and takes the least delta < 0 (the lowest j on ties), then p += par[j] - par[o]. Stops
/// after a round without a move. Separate roundings, so every ISA gives the scalar path's codes.
/// A round that reaches, without a move, the blocks after the last move of the round before
/// stops there: those blocks already declined to move with this same p and these codes
/// (simd/pq_descent_rounds.h, shared by every ISA).
struct PqDescentArgs {
  const float* residual_norm;  ///< num_blocks x 16
  const float* parallel;       ///< num_blocks x 16
  const uint32_t* order;       ///< num_blocks block indices, the visiting order
  size_t num_blocks;
  float eta;                   ///< parallel cost multiplier
  float p;                     ///< <e, x/||x||> of the starting codes
  size_t max_rounds;
  uint8_t* code;               ///< num_blocks codes: in, the start; out, the result
};

using PqDescentFn = void (*)(const PqDescentArgs& args);

void pq_descent_scalar(const PqDescentArgs& args);
void pq_descent_avx2(const PqDescentArgs& args);
void pq_descent_avx512(const PqDescentArgs& args);

}  // namespace annlib
