// Exact (brute-force) k-NN search: the oracle every approximate index is tested against.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/metric.h"
#include "core/point_filter.h"

namespace annlib {

struct ExactSearchArgs {
  const float* data = nullptr;           ///< n x dim, row-major
  size_t n = 0;
  size_t dim = 0;
  const float* data_sq_norms = nullptr;  ///< n squared norms; required for kSquaredL2
  const float* queries = nullptr;        ///< num_queries x dim
  size_t num_queries = 0;
  size_t k = 0;
  Metric metric = Metric::kDot;
  size_t num_threads = 0;                ///< 0 = all hardware threads
  int64_t* out_ids = nullptr;            ///< num_queries x k; -1 where fewer than k points exist
  float* out_distances = nullptr;        ///< similarity (dot) or squared distance (L2), best first
  /// Filtered search: a point a query's filter rejects is never kept (asked only for points
  /// whose score would enter that query's top-k).
  QueryFilters filters;
};

/// Blocked exact search: queries in blocks that stay in L2, the data streamed in
/// tiles through the active dot_block kernel, a TopK per query. Work is split
/// over query blocks, and also over data shards when there are fewer query
/// blocks than threads (so one query still uses every core).
void exact_search(const ExactSearchArgs& args);

}  // namespace annlib
