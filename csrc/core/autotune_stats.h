// The autotuner's statistics pass over a tree-AH index (algorithms.md 5.2): for each
// tuning query and each of its true neighbors, the neighbor's rank among the
// de-duplicated LUT16 (AH) candidates of the t1 best partitions, for every t1 of a
// grid, in one scan of the partitions per query. Scores are computed exactly as
// TreeAhSearcher::search computes them, so a neighbor with rank r <= t2 is among the
// candidates that search(leaves_to_search = t1, pre_reorder = t2) reorders.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tree_ah_search.h"

namespace annlib {

struct AhRankArgs {
  const TreeAhSearcher* searcher = nullptr;
  const float* queries = nullptr;  ///< num_queries x dim (normalised by the caller for cosine)
  size_t num_queries = 0;
  const int64_t* truth = nullptr;  ///< num_queries x k true neighbor ids; negative = no neighbor
  size_t k = 0;
  const int64_t* exclude = nullptr;  ///< num_queries ids never counted (the query point itself), or nullptr; -1 = none
  const int64_t* t1_grid = nullptr;  ///< ascending leaves_to_search values in [1, num_leaves]
  size_t grid_size = 0;
  size_t max_rank = 0;  ///< deepest rank recorded; deeper or unprobed neighbors get max_rank + 1
  size_t num_threads = 0;
  int32_t* out_ranks = nullptr;  ///< num_queries x k x grid_size, 1-based rank among unique candidates
  /// num_queries x k x grid_size, 1-based position of the neighbor's best copy among all candidate
  /// entries (spilled copies counted), 0 = beyond; the search keeps ceil(overretrieve * t2) entries.
  int32_t* out_entry_ranks = nullptr;
};

void ah_ranks(const AhRankArgs& args);

}  // namespace annlib
