#include "core/autotune_stats.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/lut16_codes.h"
#include "core/thread_pool.h"
#include "core/top_k.h"
#include "core/tree_ah_query.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

struct RankScratch {
  QueryTables tables;
  TopK candidates;
  std::vector<ScoredId> ranked;
  std::vector<uint8_t> seen;   // one byte per point
  std::vector<int32_t> slot;   // truth slot of each point, -1 otherwise
  std::vector<int64_t> touched;
};

void rank_one(const TreeAhView& v, const KernelTable& kt, const AhRankArgs& a, size_t q, RankScratch& s) {
  const float* query = a.queries + q * v.dim;
  const int64_t* truth = a.truth + q * a.k;
  const int64_t self = a.exclude != nullptr ? a.exclude[q] : -1;
  int32_t* out = a.out_ranks + q * a.k * a.grid_size;
  const int32_t lost = static_cast<int32_t>(a.max_rank + 1);
  std::fill(out, out + a.k * a.grid_size, lost);
  int32_t* out_entry = a.out_entry_ranks + q * a.k * a.grid_size;
  std::fill(out_entry, out_entry + a.k * a.grid_size, 0);
  for (size_t g = 0; g < a.k; ++g) {
    if (truth[g] >= 0) s.slot[static_cast<size_t>(truth[g])] = static_cast<int32_t>(g);
  }

  // The same tables and leaf order as the search, for the deepest grid point.
  QueryTables& t = s.tables;
  prepare_query(v, kt, query, t);
  const size_t t1_max = static_cast<size_t>(a.t1_grid[a.grid_size - 1]);
  order_leaves(v, t1_max, t);

  const size_t depth = a.max_rank + (self >= 0 ? 1 : 0);
  s.candidates.reset(v.spilled ? 2 * depth : depth);
  size_t next = 0;  // next grid checkpoint
  for (size_t i = 0; i < t1_max; ++i) {
    scan_leaf(v, kt, leaf_at(t, i), t, s.candidates);
    // Checkpoint(s): ranks of the true neighbors among the unique candidates so far.
    while (next < a.grid_size && static_cast<size_t>(a.t1_grid[next]) == i + 1) {
      const size_t found = s.candidates.sorted(s.ranked.data());
      size_t unique = 0, entry = 0;
      s.touched.clear();
      for (size_t e = 0; e < found && unique < a.max_rank; ++e) {
        const int64_t id = s.ranked[e].id;
        if (id == self) continue;
        ++entry;
        const size_t uid = static_cast<size_t>(id);
        if (s.seen[uid]) continue;
        s.seen[uid] = 1;
        s.touched.push_back(id);
        ++unique;
        const int32_t g = s.slot[uid];
        if (g >= 0) {
          out[static_cast<size_t>(g) * a.grid_size + next] = static_cast<int32_t>(unique);
          out_entry[static_cast<size_t>(g) * a.grid_size + next] = static_cast<int32_t>(entry);
        }
      }
      for (int64_t id : s.touched) s.seen[static_cast<size_t>(id)] = 0;
      ++next;
    }
  }
  for (size_t g = 0; g < a.k; ++g) {
    if (truth[g] >= 0) s.slot[static_cast<size_t>(truth[g])] = -1;
  }
}

}  // namespace

void ah_ranks(const AhRankArgs& a) {
  const TreeAhView& v = a.searcher->view();
  if (a.grid_size == 0 || a.max_rank == 0) throw std::invalid_argument("ah_ranks: empty grid or max_rank 0");
  for (size_t j = 0; j < a.grid_size; ++j) {
    if (a.t1_grid[j] < 1 || static_cast<size_t>(a.t1_grid[j]) > v.num_leaves || (j > 0 && a.t1_grid[j] < a.t1_grid[j - 1])) {
      throw std::invalid_argument("ah_ranks: t1_grid must be ascending within [1, num_leaves]");
    }
  }
  for (size_t i = 0; i < a.num_queries * a.k; ++i) {
    if (a.truth[i] >= static_cast<int64_t>(v.n)) throw std::invalid_argument("ah_ranks: truth id out of range");
  }
  if (a.num_queries == 0) return;
  const KernelTable& kt = kernels();
  const size_t workers = std::min(resolve_num_threads(a.num_threads), a.num_queries);
  std::vector<RankScratch> scratch(workers);
  for (auto& s : scratch) {
    s.tables.resize(v);
    s.ranked.resize(4 * (a.max_rank + 1) + 16);
    s.seen.assign(v.n, 0);
    s.slot.assign(v.n, -1);
  }
  auto run = [&](size_t q, size_t worker) { rank_one(v, kt, a, q, scratch[worker]); };
  if (workers == 1) {
    for (size_t q = 0; q < a.num_queries; ++q) run(q, 0);
  } else {
    ThreadPool::instance().parallel_for(a.num_queries, workers, run);
  }
}

}  // namespace annlib
