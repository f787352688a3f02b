// The per-query stages of a tree-AH search, shared by the search itself and the
// autotuner's statistics pass so both score candidates identically: center scores
// and the quantized lookup table, the leaf order, and the LUT16 scan of one leaf
// into a top-k selection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/point_filter.h"
#include "core/top_k.h"
#include "core/tree_ah_search.h"
#include "simd/dispatch.h"

namespace annlib {

/// Per-query tables; sized once by resize(), reused for every query.
struct QueryTables {
  std::vector<float> own_center_dots;  ///< storage when prepare_query scores the centers itself
  const float* center_dots = nullptr;  ///< <q, c_l> for every leaf: own_center_dots or a score_centers row
  std::vector<uint64_t> leaf_keys;  ///< packed (leaf score, leaf) keys; the best first after order_leaves
  std::vector<float> leaf_scores;   ///< order_leaves' scratch: every leaf's score
  std::vector<float> leaf_sample;   ///< order_leaves' scratch: every 8th leaf's score
  std::vector<float> lut_float;     ///< num_blocks x 16: <q_k, codeword j>
  std::vector<uint8_t> lut_u8;      ///< the table quantized for LUT16
  std::vector<int32_t> sums;        ///< LUT16 sums of the leaf being scanned
  float inv_m = 1.f;                ///< 1 / the LUT's quantization multiplier

  void resize(const TreeAhView& v);
};

/// Scores q against every center and builds its quantized lookup table. One table
/// serves every leaf: <q, x> = <q, c> + <q, r> (algorithms.md 3.3), and for L2 too,
/// since ||x~||^2 of the reconstruction is stored per entry (the L2 score is then
/// ||q||^2 - ||q - x~||^2, whose error shrinks with the distance, not with ||q||).
void prepare_query(const TreeAhView& v, const KernelTable& kt, const float* q, QueryTables& t);

/// Scores `count` queries (rows of dim floats) against every center into
/// out[i * num_leaves + l]: the centers are read once per few queries, and each score
/// has the same bits as prepare_query computes for that query alone.
void score_centers(const TreeAhView& v, const KernelTable& kt, const float* queries, size_t count, float* out);

/// prepare_query for a query whose center scores score_centers already computed.
void prepare_query(const TreeAhView& v, const KernelTable& kt, const float* q, const float* center_dots,
                   QueryTables& t);

/// Puts the `count` best leaves, best first, in t.leaf_keys[0, count); leaf_at reads them.
void order_leaves(const TreeAhView& v, size_t count, QueryTables& t);

inline size_t leaf_at(const QueryTables& t, size_t i) {
  return 0xFFFFFFFFu - static_cast<uint32_t>(t.leaf_keys[i]);
}

/// The LUT16 sums of `leaf` for `num_luts` query tables into sums[r] (kt.lut16's contract);
/// with a `next_leaf` (and v.prefetch_next_leaf), that leaf's codes, norms and ids are
/// prefetched a slice at a time meanwhile.
void lut16_leaf(const TreeAhView& v, const KernelTable& kt, size_t leaf, const uint8_t* const* luts, size_t num_luts,
                int32_t* const* sums, size_t next_leaf = SIZE_MAX);

/// LUT16-scores every entry of `leaf` and pushes its approximate ranking score
/// (larger is better: <q,x~> for dot, 2<q,x~> - ||x~||^2 for L2) into `selection`;
/// entries that cannot enter are rejected in the integer domain. Returns the entries scored.
/// A point `filter` (if any) rejects never enters, nor does a deleted one.
/// `filter_checks` (if given) counts the filter's allows() calls; `next_leaf` (if any) is
/// the leaf scanned next, prefetched meanwhile.
size_t scan_leaf(const TreeAhView& v, const KernelTable& kt, size_t leaf, QueryTables& t, TopK& selection,
                 const PointFilter* filter = nullptr, size_t* filter_checks = nullptr, size_t next_leaf = SIZE_MAX);

/// The selection half of scan_leaf, for sums a LUT16 kernel already wrote (several
/// queries' scans of one leaf share the code reads): pushes the entries of `leaf`
/// scored `bias + sums[i] / m` (dot) or `2 bias + 2 sums[i] / m - ||x~_i||^2` (L2)
/// into `selection`, where bias = <q, c_leaf> and inv_m = 1 / m. Returns the entries.
size_t select_from_sums(const TreeAhView& v, const KernelTable& kt, size_t leaf, const int32_t* sums, float bias,
                        float inv_m, TopK& selection, const PointFilter* filter = nullptr,
                        size_t* filter_checks = nullptr);

/// Largest leaf, in 32-entry groups (sizes the sums buffer).
size_t max_leaf_groups(const TreeAhView& v);

}  // namespace annlib
