#include "core/autotune_stats.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "core/lut16_codes.h"
#include "core/thread_pool.h"
#include "core/top_k.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

struct RankScratch {
  std::vector<float> center_dots;
  std::vector<ScoredId> leaves;
  std::vector<float> lut_float;
  std::vector<uint8_t> lut_u8;
  std::vector<int32_t> sums;
  TopK candidates;
  std::vector<ScoredId> ranked;
  std::vector<uint8_t> seen;   // one byte per point
  std::vector<int32_t> slot;   // truth slot of each point, -1 otherwise
  std::vector<int64_t> touched;
};

void rank_one(const TreeAhView& v, const KernelTable& kt, const AhRankArgs& a, size_t q, RankScratch& s) {
  const bool l2 = v.metric == Metric::kSquaredL2;
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

  // Partition selection, as in the search: the t1_max best leaves, best first.
  DotBlockArgs center_args{query, 1, v.centers, v.num_leaves, v.dim, s.center_dots.data(), v.num_leaves};
  kt.dot_block(center_args);
  for (size_t l = 0; l < v.num_leaves; ++l) {
    const float dot = s.center_dots[l];
    s.leaves[l] = ScoredId{l2 ? 2.f * dot - v.center_sq_norms[l] : dot, static_cast<int64_t>(l)};
  }
  const size_t t1_max = static_cast<size_t>(a.t1_grid[a.grid_size - 1]);
  std::partial_sort(s.leaves.begin(), s.leaves.begin() + static_cast<std::ptrdiff_t>(t1_max),
                    s.leaves.begin() + static_cast<std::ptrdiff_t>(v.num_leaves),
                    [](const ScoredId& x, const ScoredId& y) { return better(x, y); });

  // The query's lookup table, exactly as the search builds and quantizes it.
  for (size_t k = 0; k < v.num_blocks; ++k) {
    const size_t begin = k * v.dims_per_block;
    const size_t end = std::min(begin + v.dims_per_block, v.dim);
    float* lut = s.lut_float.data() + k * 16;
    for (size_t j = 0; j < 16; ++j) lut[j] = 0.f;
    for (size_t d = begin; d < end; ++d) {
      const float qd = query[d];
      const float* coords = v.codebook_by_dim + d * 16;
      for (size_t j = 0; j < 16; ++j) lut[j] += qd * coords[j];
    }
  }
  const float inv_m = 1.f / kt.quantize_lut(s.lut_float.data(), v.num_blocks * 16, s.lut_u8.data());

  const size_t depth = a.max_rank + (self >= 0 ? 1 : 0);
  s.candidates.reset(v.spilled ? 2 * depth : depth);
  const uint8_t* lut_ptr = s.lut_u8.data();
  int32_t* sums_ptr = s.sums.data();
  size_t next = 0;  // next grid checkpoint
  for (size_t i = 0; i < t1_max; ++i) {
    const size_t leaf = static_cast<size_t>(s.leaves[i].id);
    const int64_t e0 = v.leaf_offsets[leaf], e1 = v.leaf_offsets[leaf + 1];
    if (e1 > e0) {
      const int64_t g0 = v.leaf_group_offsets[leaf], g1 = v.leaf_group_offsets[leaf + 1];
      Lut16Args args{v.packed_codes + static_cast<size_t>(g0) * v.num_blocks * 16, static_cast<size_t>(g1 - g0),
                     v.num_blocks, &lut_ptr, 1, &sums_ptr};
      kt.lut16(args);
      const float bias = s.center_dots[leaf];
      const int32_t* ids = v.entry_ids + e0;
      const size_t count = static_cast<size_t>(e1 - e0);
      if (l2) {
        const float* norms = v.entry_sq_norms + e0;
        for (size_t t = 0; t < count; ++t) {
          s.candidates.push(2.f * bias + static_cast<float>(s.sums[t]) * (2.f * inv_m) - norms[t], ids[t]);
        }
      } else {
        for (size_t t = 0; t < count; ++t) s.candidates.push(bias + static_cast<float>(s.sums[t]) * inv_m, ids[t]);
      }
    }
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
  size_t max_groups = 0;
  for (size_t l = 0; l < v.num_leaves; ++l) {
    max_groups = std::max(max_groups, static_cast<size_t>(v.leaf_group_offsets[l + 1] - v.leaf_group_offsets[l]));
  }
  const KernelTable& kt = kernels();
  const size_t workers = std::min(resolve_num_threads(a.num_threads), a.num_queries);
  std::vector<RankScratch> scratch(workers);
  for (auto& s : scratch) {
    s.center_dots.resize(v.num_leaves);
    s.leaves.resize(v.num_leaves);
    s.lut_float.resize(v.num_blocks * 16);
    s.lut_u8.resize(v.num_blocks * 16);
    s.sums.resize(max_groups * kLut16GroupSize + kLut16GroupSize);
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
