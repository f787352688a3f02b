#include "core/autotune_stats.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <vector>

#include "core/lut16_codes.h"
#include "core/thread_pool.h"
#include "core/top_k.h"
#include "core/tree_ah_query.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

/// A true neighbour being ranked by counting.
struct CountTarget {
  size_t slot;
  int64_t id;
  int32_t pos;        // position of its leaf in the query's leaf order
  float score = 0.f;  // its ranking score
  size_t better = 0;  // entries scanned so far that beat it
};

struct RankScratch {
  QueryTables tables;
  // Spilled indexes (a selection, de-duplicated at each grid point):
  TopK candidates;
  std::vector<ScoredId> ranked;
  std::vector<uint8_t> seen;   // one byte per point
  std::vector<int32_t> slot;   // truth slot of each point, -1 otherwise
  std::vector<int64_t> touched;
  // Unspilled indexes (counting):
  std::vector<float> scores;      // ranking scores of the leaf being scanned
  std::vector<int32_t> group_sums;  // LUT16 sums of one 32-entry group
  std::vector<int32_t> leaf_pos;  // position of each leaf in the query's order, -1 beyond t1_max
  std::vector<CountTarget> targets;
};

/// Where each point's (only) entry lies, for an unspilled index: its entry and its leaf.
struct EntryMap {
  std::vector<int32_t> entry;  // -1: the point has no entry
  std::vector<int32_t> leaf;
};

/// The ranking score push() would receive for the entries of `leaf` whose LUT16 sums are
/// `sums`: the same expressions as select_from_sums (built with -ffp-contract=off, so the same
/// roundings).
inline void leaf_scores(const TreeAhView& v, const QueryTables& t, size_t leaf, int64_t e0, const int32_t* sums,
                        size_t count, float* out) {
  const float bias = t.center_dots[leaf], inv_m = t.inv_m;
  if (v.metric == Metric::kSquaredL2) {
    const float* norms = v.entry_sq_norms + e0;
    const float two_inv_m = 2.f * inv_m, two_bias = 2.f * bias;
    for (size_t i = 0; i < count; ++i) out[i] = (two_bias + static_cast<float>(sums[i]) * two_inv_m) - norms[i];
  } else {
    for (size_t i = 0; i < count; ++i) out[i] = bias + static_cast<float>(sums[i]) * inv_m;
  }
}

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
    scan_leaf(v, kt, leaf_at(t, i), t, s.candidates, nullptr, nullptr, i + 1 < t1_max ? leaf_at(t, i + 1) : SIZE_MAX);
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


// Unspilled index: every point has one entry, so a true neighbour's rank among the candidates
// of the first t1 leaves is one plus the number of entries there whose (score, id) beats its
// own, in TopK's order (larger score; among equal scores the smaller id). Counting those
// against the neighbours' own scores, leaf by leaf, replaces a selection of max_rank
// candidates and a sort of it at every grid point: the pass costs the LUT16 scan plus a few
// compares per entry, whatever max_rank is.
void count_one(const TreeAhView& v, const KernelTable& kt, const AhRankArgs& a, const EntryMap& map, size_t q,
               RankScratch& s) {
  const float* query = a.queries + q * v.dim;
  const int64_t* truth = a.truth + q * a.k;
  const int64_t self = a.exclude != nullptr ? a.exclude[q] : -1;
  int32_t* out = a.out_ranks + q * a.k * a.grid_size;
  int32_t* out_entry = a.out_entry_ranks + q * a.k * a.grid_size;
  const int32_t lost = static_cast<int32_t>(a.max_rank + 1);
  std::fill(out, out + a.k * a.grid_size, lost);
  std::fill(out_entry, out_entry + a.k * a.grid_size, 0);

  QueryTables& t = s.tables;
  prepare_query(v, kt, query, t);
  const size_t t1_max = static_cast<size_t>(a.t1_grid[a.grid_size - 1]);
  order_leaves(v, t1_max, t);
  for (size_t i = 0; i < t1_max; ++i) s.leaf_pos[leaf_at(t, i)] = static_cast<int32_t>(i);

  // The neighbours that can be candidates at all: live, in one of the t1_max best leaves.
  std::vector<CountTarget>& targets = s.targets;
  targets.clear();
  auto in_scan = [&](int64_t id, int32_t* pos) -> bool {
    const int32_t e = map.entry[static_cast<size_t>(id)];
    if (e < 0 || (v.live != nullptr && v.live[id] == 0)) return false;
    const size_t leaf = static_cast<size_t>(map.leaf[static_cast<size_t>(id)]);
    if (s.leaf_pos[leaf] < 0) return false;
    *pos = s.leaf_pos[leaf];
    return true;
  };
  for (size_t g = 0; g < a.k; ++g) {
    int32_t pos;
    if (truth[g] >= 0 && truth[g] != self && in_scan(truth[g], &pos)) targets.push_back(CountTarget{g, truth[g], pos});
  }
  const size_t nt = targets.size();
  // Each target's score from the LUT16 sums of its own 32-entry group (exact integers, the
  // same as the leaf scan computes).
  const uint8_t* lut_ptr = t.lut_u8.data();
  int32_t* group_sums = s.group_sums.data();
  for (size_t j = 0; j < nt; ++j) {
    const int64_t e = map.entry[static_cast<size_t>(targets[j].id)];
    const size_t leaf = static_cast<size_t>(map.leaf[static_cast<size_t>(targets[j].id)]);
    const int64_t e0 = v.leaf_offsets[leaf], within = e - e0;
    const int64_t group = v.leaf_group_offsets[leaf] + within / static_cast<int64_t>(kLut16GroupSize);
    Lut16Args args{v.packed_codes + static_cast<size_t>(group) * v.num_blocks * 16, 1, v.num_blocks, &lut_ptr, 1,
                   &group_sums};
    kt.lut16(args);
    const size_t lane = static_cast<size_t>(within % static_cast<int64_t>(kLut16GroupSize));
    leaf_scores(v, t, leaf, e, group_sums + lane, 1, &targets[j].score);
  }

  int32_t* sums = t.sums.data();
  float* scores = s.scores.data();
  constexpr float kNever = -std::numeric_limits<float>::infinity();  // no target scores -inf
  size_t next = 0;
  for (size_t i = 0; i < t1_max; ++i) {
    const size_t leaf = leaf_at(t, i);
    const int64_t e0 = v.leaf_offsets[leaf], e1 = v.leaf_offsets[leaf + 1];
    const size_t count = static_cast<size_t>(e1 - e0);
    if (count > 0 && nt > 0) {
      const int64_t g0 = v.leaf_group_offsets[leaf], g1 = v.leaf_group_offsets[leaf + 1];
      Lut16Args args{v.packed_codes + static_cast<size_t>(g0) * v.num_blocks * 16, static_cast<size_t>(g1 - g0),
                     v.num_blocks, &lut_ptr, 1, &sums};
      kt.lut16(args);
      leaf_scores(v, t, leaf, e0, sums, count, scores);
      const int32_t* ids = v.entry_ids + e0;
      // Never candidates: the query point itself, and deleted points.
      if (self >= 0 && map.leaf[static_cast<size_t>(self)] == static_cast<int32_t>(leaf)) {
        scores[map.entry[static_cast<size_t>(self)] - e0] = kNever;
      }
      if (v.live != nullptr) {
        for (size_t x = 0; x < count; ++x) {
          if (v.live[ids[x]] == 0) scores[x] = kNever;
        }
      }
      for (size_t j = 0; j < nt; ++j) {
        const float sj = targets[j].score;
        int32_t greater = 0, equal = 0;
        for (size_t x = 0; x < count; ++x) {
          greater += scores[x] > sj;
          equal += scores[x] == sj;
        }
        if (equal > 0) {  // ties: the smaller id is better (the target itself is not)
          for (size_t x = 0; x < count; ++x) greater += (scores[x] == sj) & (ids[x] < targets[j].id);
        }
        targets[j].better += static_cast<size_t>(greater);
      }
    }
    while (next < a.grid_size && static_cast<size_t>(a.t1_grid[next]) == i + 1) {
      for (size_t j = 0; j < nt; ++j) {
        const CountTarget& tg = targets[j];
        if (static_cast<size_t>(tg.pos) > i || tg.better >= a.max_rank) continue;
        const int32_t rank = static_cast<int32_t>(tg.better + 1);
        out[tg.slot * a.grid_size + next] = rank;
        out_entry[tg.slot * a.grid_size + next] = rank;
      }
      ++next;
    }
  }
  for (size_t i = 0; i < t1_max; ++i) s.leaf_pos[leaf_at(t, i)] = -1;
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
  EntryMap map;
  if (v.spilled) {
    for (auto& s : scratch) {
      s.tables.resize(v);
      s.ranked.resize(4 * (a.max_rank + 1) + 16);
      s.seen.assign(v.n, 0);
      s.slot.assign(v.n, -1);
    }
  } else {
    map.entry.assign(v.n, -1);
    map.leaf.assign(v.n, -1);
    for (size_t l = 0; l < v.num_leaves; ++l) {
      for (int64_t e = v.leaf_offsets[l]; e < v.leaf_offsets[l + 1]; ++e) {
        map.entry[static_cast<size_t>(v.entry_ids[e])] = static_cast<int32_t>(e);
        map.leaf[static_cast<size_t>(v.entry_ids[e])] = static_cast<int32_t>(l);
      }
    }
    for (auto& s : scratch) {
      s.tables.resize(v);
      s.scores.resize(s.tables.sums.size());
      s.group_sums.resize(kLut16GroupSize);
      s.leaf_pos.assign(v.num_leaves, -1);
    }
  }
  auto run = [&](size_t q, size_t worker) {
    if (v.spilled) {
      rank_one(v, kt, a, q, scratch[worker]);
    } else {
      count_one(v, kt, a, map, q, scratch[worker]);
    }
  };
  if (workers == 1) {
    for (size_t q = 0; q < a.num_queries; ++q) run(q, 0);
  } else {
    ThreadPool::instance().parallel_for(a.num_queries, workers, run);
  }
}

}  // namespace annlib
