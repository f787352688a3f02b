// Search over a partitioned (k-means tree) index whose points are stored as
// 4-bit anisotropic PQ codes of their residuals, scored with LUT16, then
// rescored exactly ("reordered"). algorithms.md sections 2 and 3.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/metric.h"
#include "core/point_filter.h"

namespace annlib {

/// Non-owning view of a built index; the arrays live in Python (or a mapped file).
///
/// Entries are point copies stored in leaves: without spilling there is one
/// entry per point, with SOAR up to two. Entry e of leaf l lies in
/// [leaf_offsets[l], leaf_offsets[l+1]); its codes sit in leaf l's packed
/// block, which starts at group leaf_group_offsets[l] (groups of 32 entries).
struct TreeAhView {
  Metric metric = Metric::kDot;  ///< cosine arrives as kDot over normalised data
  size_t n = 0;                  ///< points
  size_t dim = 0;
  size_t num_leaves = 0;
  const float* centers = nullptr;          ///< num_leaves x dim
  const float* center_sq_norms = nullptr;  ///< num_leaves; used for kSquaredL2 leaf selection
  const float* centers_by_dim = nullptr;   ///< the centers dimension-major (dim x num_leaves), derived
  size_t dims_per_block = 2;
  size_t num_blocks = 0;                   ///< ceil(dim / dims_per_block)
  const float* codebook = nullptr;         ///< block k: 16 x block_dim(k) floats at 16 * k * dims_per_block
  const float* codebook_by_dim = nullptr;  ///< same codewords as dim x 16 (from transpose_codebook)
  const int64_t* leaf_offsets = nullptr;        ///< num_leaves + 1, in entries
  const int64_t* leaf_group_offsets = nullptr;  ///< num_leaves + 1, in 32-entry groups
  const int32_t* entry_ids = nullptr;           ///< point id of each entry
  size_t num_entries = 0;                       ///< length of entry_ids
  const uint8_t* packed_codes = nullptr;        ///< all leaves' packed LUT16 codes
  size_t packed_bytes = 0;                      ///< length of packed_codes
  const float* entry_sq_norms = nullptr;        ///< ||x~||^2 of each entry's reconstruction c + r~ (kSquaredL2)
  // Reordering data: float32 rows, or int8 rows with per-dimension scales and offsets and
  // optionally per-row scales (x ~ offset + row_scale * q8 * inv_scale), or both: int8 rescores the candidates, then the float32
  // rows (typically memory-mapped from the index file) rescore the best few exactly.
  const float* reorder_float = nullptr;         ///< n x dim, or nullptr
  const int8_t* reorder_int8 = nullptr;         ///< n x dim, or nullptr
  const float* reorder_int8_inv_scale = nullptr;  ///< dim: 1 / multiplier
  const float* reorder_int8_offset = nullptr;   ///< dim, or nullptr for 0 (files written before offsets)
  /// n: x ~ offset + row_scale[i] * q8 * inv_scale, or nullptr for 1 (per-dimension codes)
  const float* reorder_int8_row_scale = nullptr;
  const float* point_sq_norms = nullptr;        ///< n: ||x||^2 of the reordering rows (dequantized for int8 alone), kSquaredL2
  /// n: ||x||^2 of the dequantized int8 rows when the view has float32 rows too (kSquaredL2),
  /// whose exact norms are then point_sq_norms.
  const float* int8_sq_norms = nullptr;
  bool spilled = false;                         ///< a point may appear in two leaves
  /// n bytes, 0 = deleted point, or nullptr when every point is live. Read only where the LUT16
  /// scan forms candidates, so a deleted point never takes a slot a live one could fill.
  const uint8_t* live = nullptr;
  /// Derived: scans prefetch the next leaf (tree_ah_query.h, lut16_leaf). Only when the leaves
  /// outgrow the cache; a cached leaf gains nothing and pays for the split kernel calls.
  bool prefetch_next_leaf = false;
};

struct TreeAhParams {
  size_t k = 10;                    ///< final_num_neighbors
  size_t leaves_to_search = 1;
  size_t pre_reorder = 100;         ///< unique candidates rescored; 0 = return AH scores
  /// Views with int8 and float32 rows: the best this many (at least k) of the int8 rescoring
  /// are rescored again with the float32 rows; 0 = int8 scores only.
  size_t exact_reorder = 0;
  size_t num_threads = 0;
  double overretrieve_factor = 1.5;  ///< spilled indexes: candidates kept before de-duplication, x pre_reorder
  /// Return the ranking scores (larger is better; squared L2: 2<q,x> - |x|^2) instead of
  /// distances: merging shards by distance would lose order where |q|^2 - score rounds equal.
  bool raw_scores = false;
  /// Filtered search: a rejected point never enters the candidate selection (checked where
  /// the LUT16 scan forms candidates, only for entries that pass the score threshold).
  QueryFilters filters;
  /// Per filter of `filters`, num_leaves counts (exact or estimated) of the entries it allows in
  /// each leaf, or nullptr. With them a query scans its leaves best first, skipping those
  /// with no allowed entry, until it has passed at least leaves_to_search leaves and as many
  /// allowed entries as its first leaves_to_search leaves hold in all: the number of passing
  /// candidates of the unfiltered search.
  const int64_t* leaf_allowed = nullptr;
  /// With leaf_allowed: num_leaves sizes the walk's target counts instead of the view's own
  /// leaf sizes, or nullptr. A shard of a sharded index walks its leaves as one index over all
  /// shards would: with the whole index's sizes and allowed counts (the shard's are a part).
  const int64_t* leaf_sizes = nullptr;
};

/// Per-query counters, for the autotuner's cost model and for tests.
struct TreeAhStats {
  size_t entries_scored = 0;
  size_t candidates_reordered = 0;
  size_t candidates_rescored_exactly = 0;  ///< second stage: float32 rows read (int8 + float32 views)
  size_t leaves_scanned = 0;
  size_t filter_checks = 0;  ///< calls of a filter's allows(): entries that passed the score threshold
};

/// Rearranges the codebook so that, for every dimension d of block k, the 16
/// codewords' coordinates are contiguous: out[d * 16 + j] = codeword j of d's block,
/// coordinate d. The lookup table then builds with 16-wide vector FMAs.
void transpose_codebook(const float* codebook, size_t dim, size_t dims_per_block, float* out);

/// Checks the view's structural invariants against its sizes: leaf offsets from 0,
/// non-decreasing, ending at num_entries; ceil(count / 32) groups per leaf, filling
/// packed_bytes; entry ids in [0, n). Throws std::invalid_argument naming the first
/// violation. Returns 1 + the largest entry id (0 without entries): what per-point
/// scratch needs, which a file's n may overstate.
size_t check_tree_ah_view(const TreeAhView& view);

/// A built index ready to search: the view plus derived tables and a pool of
/// per-thread scratch space, so searches allocate nothing once warm. Safe to
/// call from several threads at once.
class TreeAhSearcher {
 public:
  explicit TreeAhSearcher(const TreeAhView& view);
  ~TreeAhSearcher();
  TreeAhSearcher(const TreeAhSearcher&) = delete;
  TreeAhSearcher& operator=(const TreeAhSearcher&) = delete;

  /// Searches num_queries queries (rows of dim floats). Writes k ids and distances
  /// per query: similarity for kDot, squared distance for kSquaredL2; id -1 and the
  /// worst distance where fewer than k points were found. Threads split the queries.
  void search(const float* queries, size_t num_queries, const TreeAhParams& params, int64_t* out_ids,
              float* out_distances, TreeAhStats* stats = nullptr) const;

  const TreeAhView& view() const { return view_; }

  struct Scratch;

 private:
  std::unique_ptr<Scratch> acquire(const TreeAhParams& params) const;
  void release(std::unique_ptr<Scratch> scratch) const;

  TreeAhView view_;
  size_t point_slots_ = 0;  // 1 + largest entry id: the size of per-point scratch
  std::vector<float> codebook_by_dim_;
  std::vector<float> centers_by_dim_;
  mutable std::mutex pool_mutex_;
  mutable std::vector<std::unique_ptr<Scratch>> pool_;
};

}  // namespace annlib
