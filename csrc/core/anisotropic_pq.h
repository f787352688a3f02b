// Product quantization with 16 centers per block (4-bit codes) and the anisotropic,
// score-aware encoding of ScaNN (algorithms.md sections 1.1 and 1.3): codebook
// training, encoding, decoding and the loss. Public within the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace annlib {

struct KernelTable;

/// Number of centers per block: 4-bit codes, as the LUT16 kernel expects.
constexpr size_t kPqCentersPerBlock = 16;

/// The codebooks of all blocks. Block k covers dimensions [block_offset(k), block_offset(k) + block_dim(k));
/// every block has dims_per_block dimensions except possibly the last, which takes the remainder.
struct PqCodebook {
  size_t dim = 0;             ///< full dimension d
  size_t dims_per_block = 0;  ///< [dimensions_per_block]
  size_t num_blocks = 0;      ///< ceil(dim / dims_per_block)
  /// For block k, 16 x block_dim(k) floats (row j = codeword j) starting at center_offset(k); blocks concatenated,
  /// 16 * dim floats in all.
  std::vector<float> centers;

  /// First dimension of block k.
  size_t block_offset(size_t k) const { return k * dims_per_block; }
  /// Dimensions in block k (dims_per_block, or fewer for the last block).
  size_t block_dim(size_t k) const {
    const size_t begin = block_offset(k);
    return dim - begin < dims_per_block ? dim - begin : dims_per_block;
  }
  /// Offset of block k's codewords in `centers`.
  size_t center_offset(size_t k) const { return kPqCentersPerBlock * block_offset(k); }
  /// Codeword j of block k (block_dim(k) floats).
  const float* codeword(size_t k, size_t j) const { return centers.data() + center_offset(k) + j * block_dim(k); }
};

/// The geometry of a codebook with empty centers; throws std::invalid_argument if dim or dims_per_block is 0.
PqCodebook make_pq_layout(size_t dim, size_t dims_per_block);

struct PqOptions {
  size_t dims_per_block = 2;  ///< [dimensions_per_block]
  size_t iterations = 10;     ///< k-means iterations per block [max_clustering_iterations]
  uint64_t seed = 0;          ///< each block's k-means gets a seed derived from this and the block index
  size_t num_threads = 0;     ///< 0 = all hardware threads; does not change the result
};

/// Trains the 16 codewords of every block by plain squared-L2 k-means on that block's slice of `residuals`
/// (n x dim), as open-source ScaNN does (algorithms.md 1.3, "Codebook training"). Blocks are trained in
/// parallel, each single-threaded, so the result does not depend on num_threads.
/// Throws std::invalid_argument if n < 16, dim == 0 or dims_per_block == 0.
PqCodebook train_pq(const float* residuals, size_t n, size_t dim, const PqOptions& opts);

/// Largest value parallel_cost_multiplier returns: used when T^2 >= ||x||^2, where the large-d formula
/// diverges (every query that could score above T is parallel to x). Large enough that the parallel error
/// dominates, finite so that eta * 0 stays 0 in the encoder.
constexpr double kMaxParallelCostMultiplier = 1e6;

/// eta = h_parallel / h_perpendicular of algorithms.md 1.1 (ScaNN's ComputeParallelCostMultiplier):
/// eta = (dim - 1) * (T^2 / sq_norm) / (1 - T^2 / sq_norm).
/// \param threshold T [anisotropic_quantization_threshold]; NaN or <= 0 means isotropic and returns 1.
/// \param sq_norm   squared norm of the original point x.
/// Returns kMaxParallelCostMultiplier when T^2 >= sq_norm (including sq_norm == 0) or when eta exceeds it.
double parallel_cost_multiplier(double threshold, double sq_norm, size_t dim);

/// Encodes residuals r (n x dim; the vector to encode: x, or x - partition center) into codes (n x num_blocks,
/// values 0..15) minimising the score-aware loss measured along the ORIGINAL point x (n x dim, may equal
/// residuals): L = ||e||^2 + (eta - 1) <e, x/||x||>^2, e = r - r~, eta from x's own norm.
/// Coordinate descent of algorithms.md 1.3: start from the nearest codeword per block, visit blocks by
/// descending residual norm, for each try all codewords that do not increase the parallel error, take the
/// best decrease; at most 10 rounds, stop after a round without change. eta <= 1 (threshold NaN or <= 0,
/// or small against ||x||: no descent move can lower the loss then)
/// is plain nearest-codeword encoding. Ties go to the lower codeword. Parallel over points.
/// Tables and descent run in float in the SIMD kernels pq_tables / pq_descent of the active
/// ISA (every ISA gives the same codes); they differ from encode_pq_reference's double only where
/// float rounding flips a near tie (tests/test_encoder.py measures how often on real data).
void encode_pq(const PqCodebook& cb, const float* residuals, const float* originals, size_t n, double threshold,
               size_t num_threads, uint8_t* codes);

/// encode_pq with the kernels of `kt` (kernels_for(isa); tests compare ISAs).
void encode_pq(const PqCodebook& cb, const float* residuals, const float* originals, size_t n, double threshold,
               size_t num_threads, uint8_t* codes, const KernelTable& kt);

/// encode_pq of m index entries without a residual matrix: entry i encodes r = data[points[i]] -
/// centers[leaves[i]] along x = data[points[i]] (rows of dim = cb.dim floats; indices unchecked).
/// When sq_norms is not null, sq_norms[i] = ||centers[leaves[i]] + r~||^2, the squared norm of the
/// entry's reconstruction (squared_norms of that vector: squared-L2 scoring reads it).
void encode_pq_entries(const PqCodebook& cb, const float* data, const float* centers, const int64_t* points,
                       const int64_t* leaves, size_t m, double threshold, size_t num_threads, uint8_t* codes,
                       float* sq_norms);

/// The same encoding in scalar double, as first written: the reference encode_pq is tested against.
void encode_pq_reference(const PqCodebook& cb, const float* residuals, const float* originals, size_t n,
                         double threshold, size_t num_threads, uint8_t* codes);

/// Reconstruction r~ (n x dim) from codes (n x num_blocks).
void decode_pq(const PqCodebook& cb, const uint8_t* codes, size_t n, float* out);

/// Sum over points of ||e||^2 + (eta - 1) <e, x/||x||>^2 with e = x - x~ (a zero x contributes ||e||^2).
/// \param originals x (n x dim); \param reconstructions x~ (n x dim); \param eta one eta for all points.
double score_aware_loss(const float* originals, const float* reconstructions, size_t n, size_t dim, double eta);

}  // namespace annlib
