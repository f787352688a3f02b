#include "core/tree_ah_search.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "core/tree_ah_query.h"
#include "core/top_k.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

constexpr size_t kQueriesPerTask = 4;
// Queries of a leaf-major task scored against the centers in one call: the kernel reads each
// range of centers once per call (simd/dot_by_dim_tiling.h), 1 MiB of L3 traffic per call at
// 2000 x 128, so the more queries per call, the less per query.
constexpr size_t kCenterScoringQueries = 32;
// Queries whose leaf scans one leaf-major task shares: the more queries, the more of
// them probe each leaf, whose codes are then read once per task; each costs about
// 32 pre_reorder + 1 KiB bytes of scratch.
constexpr size_t kLeafMajorChunk = 256;
// Calls with fewer queries per thread than this scan query by query.
constexpr size_t kLeafMajorMinQueries = 16;

}  // namespace

/// Everything one worker needs; pooled by the searcher so searches allocate nothing.
struct TreeAhSearcher::Scratch {
  std::vector<float> center_dots;  // kCenterScoringQueries x num_leaves: a few queries' center scores
  QueryTables tables;
  TopK candidates;
  std::vector<ScoredId> ranked;
  std::vector<uint32_t> seen;  // per point: 1 + position among the unique candidates, 0 = unseen
  TopK final_top;
  std::vector<float> query_scaled;
  TreeAhStats stats;
  // Leaf-major tasks, per query i of the chunk: its quantized LUT and 1/m, the center
  // scores of its chosen leaves (at i * leaves_to_search + j) and its candidates; and
  // the probes (leaf << 32 | i * leaves_to_search + j), sorted by leaf.
  std::vector<uint8_t> chunk_luts;
  std::vector<float> chunk_inv_m;
  std::vector<float> chunk_bias;
  std::vector<TopK> chunk_candidates;
  std::vector<uint64_t> probes;
  std::vector<int32_t> chunk_sums;  // kLut16MaxQueries scans of the largest leaf

  void reserve_leaf_major(const TreeAhView& v, size_t chunk, size_t leaves_to_search);
};

namespace {

float dot_scalar(const float* a, const float* b, size_t n) {
  float s = 0.f;
  for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

size_t wanted_candidates(const TreeAhParams& p) { return p.pre_reorder > 0 ? p.pre_reorder : p.k; }

/// Size of the AH candidate selection: spilled copies of one point can fill it twice, so
/// over-retrieve, then de-duplicate down to `wanted` unique points (ScaNN's overretrieve_factor).
size_t selection_size(const TreeAhView& v, const TreeAhParams& p) {
  const size_t wanted = wanted_candidates(p);
  return v.spilled ? static_cast<size_t>(std::ceil(static_cast<double>(wanted) * p.overretrieve_factor)) : wanted;
}

/// Probe slots per query in a leaf-major task: every leaf when the call has per-leaf filter counts.
size_t probe_stride(const TreeAhView& v, const TreeAhParams& p) {
  return p.leaf_allowed != nullptr ? v.num_leaves : p.leaves_to_search;
}

/// Calls score(id) for the ids of candidates[0 .. count), whose rows (row_bytes each, at
/// rows + id * row_bytes) are scattered in memory: a few rows are fetched ahead, so the
/// loads (or, for memory-mapped rows, the page reads) overlap instead of paying one latency
/// per candidate. So are the per_id[k][id] values score() reads (squared norms, row scales),
/// one more scattered miss per candidate each.
template <typename Score>
void prefetched_rows(const ScoredId* candidates, size_t count, const char* rows, size_t row_bytes,
                     std::initializer_list<const float*> per_id, Score&& score) {
  // About 32 cache lines in flight: four float32 rows of 128 dimensions, sixteen int8 ones.
  const size_t ahead = std::max<size_t>(4, 32 * 64 / row_bytes);
  auto prefetch_row = [&](size_t i) {
    const char* row = rows + static_cast<size_t>(candidates[i].id) * row_bytes;
    for (size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(row + off);
  };
  // The per-id values are one line each: all of them are asked for at once, ahead of the rows.
  for (const float* values : per_id) {
    if (values == nullptr) continue;
    for (size_t i = 0; i < count; ++i) __builtin_prefetch(values + candidates[i].id);
  }
  for (size_t i = 0; i < std::min(count, ahead); ++i) prefetch_row(i);
  for (size_t i = 0; i < count; ++i) {
    if (i + ahead < count) prefetch_row(i + ahead);
    score(static_cast<size_t>(candidates[i].id));
  }
}

/// Steps 4-5 of a query whose AH candidates are in `candidates`: de-duplication,
/// reordering, output.
void finish_query(const TreeAhView& v, const KernelTable& kt, const TreeAhParams& p, const float* q,
                  TopK& candidates, TreeAhSearcher::Scratch& s, int64_t* out_ids, float* out_dist) {
  const bool l2 = v.metric == Metric::kSquaredL2;
  const size_t wanted = wanted_candidates(p);
  // 4. The best `wanted` unique candidates, unordered: reordering rescores them all, so
  //    no sort is needed. Spilled copies of one point keep the better AH score; seen[]
  //    holds 1 + the kept copy's position and is cleared again before the next query.
  size_t num_ranked = candidates.unordered(s.ranked.data());
  if (v.spilled) {
    size_t unique = 0;
    for (size_t i = 0; i < num_ranked; ++i) {
      const ScoredId c = s.ranked[i];
      uint32_t& slot = s.seen[static_cast<size_t>(c.id)];
      if (slot == 0) {
        s.ranked[unique] = c;
        slot = static_cast<uint32_t>(++unique);
      } else if (better(c, s.ranked[slot - 1])) {
        s.ranked[slot - 1] = c;
      }
    }
    for (size_t i = 0; i < unique; ++i) s.seen[static_cast<size_t>(s.ranked[i].id)] = 0;
    num_ranked = unique;
  }
  if (num_ranked > wanted) {
    std::nth_element(s.ranked.data(), s.ranked.data() + wanted - 1, s.ranked.data() + num_ranked,
                     [](const ScoredId& a, const ScoredId& b) { return better(a, b); });
    num_ranked = wanted;
  }

  // 5. Reorder with exact (float) or int8 scores, or return the AH scores; with both, the
  //    int8 scores pick the best exact_reorder, which the float32 rows rescore (5b).
  float q_norm = 0.f;
  if (l2) q_norm = dot_scalar(q, q, v.dim);
  const bool int8 = v.reorder_int8 != nullptr;
  const bool exact_stage = int8 && v.reorder_float != nullptr && p.exact_reorder > 0 && p.pre_reorder > 0;
  s.final_top.reset(exact_stage ? std::max(p.k, p.exact_reorder) : p.k);
  if (p.pre_reorder > 0 && (v.reorder_float != nullptr || int8)) {
    // <q, offset + s * q8 * inv_scale> = <q, offset> + s <q * inv_scale, q8>: the first term once per query.
    float offset_dot = 0.f;
    if (int8) {
      for (size_t d = 0; d < v.dim; ++d) s.query_scaled[d] = q[d] * v.reorder_int8_inv_scale[d];
      if (v.reorder_int8_offset != nullptr) offset_dot = dot_scalar(q, v.reorder_int8_offset, v.dim);
    }
    const float* norms = int8 && v.int8_sq_norms != nullptr ? v.int8_sq_norms : v.point_sq_norms;
    const size_t row_bytes = v.dim * (int8 ? sizeof(int8_t) : sizeof(float));
    const char* rows = int8 ? reinterpret_cast<const char*>(v.reorder_int8)
                            : reinterpret_cast<const char*>(v.reorder_float);
    const float* row_scales = int8 ? v.reorder_int8_row_scale : nullptr;
    prefetched_rows(s.ranked.data(), num_ranked, rows, row_bytes, {l2 ? norms : nullptr, row_scales}, [&](size_t id) {
      float dot;
      if (int8) {
        dot = kt.dot_f32_i8(s.query_scaled.data(), v.reorder_int8 + id * v.dim, v.dim);
        if (v.reorder_int8_row_scale != nullptr) dot *= v.reorder_int8_row_scale[id];
        dot += offset_dot;
      } else {
        DotBlockArgs args{q, 1, v.reorder_float + id * v.dim, 1, v.dim, &dot, 1};
        kt.dot_block(args);
      }
      s.final_top.push(l2 ? 2.f * dot - norms[id] : dot, static_cast<int64_t>(id));
    });
    s.stats.candidates_reordered += num_ranked;
    if (exact_stage) {  // 5b.
      const size_t best = s.final_top.unordered(s.ranked.data());
      s.final_top.reset(p.k);
      prefetched_rows(s.ranked.data(), best, reinterpret_cast<const char*>(v.reorder_float), v.dim * sizeof(float),
                      {l2 ? v.point_sq_norms : nullptr}, [&](size_t id) {
                        float dot;
                        DotBlockArgs args{q, 1, v.reorder_float + id * v.dim, 1, v.dim, &dot, 1};
                        kt.dot_block(args);
                        s.final_top.push(l2 ? 2.f * dot - v.point_sq_norms[id] : dot, static_cast<int64_t>(id));
                      });
      s.stats.candidates_rescored_exactly += best;
    }
  } else {
    for (size_t i = 0; i < num_ranked; ++i) s.final_top.push(s.ranked[i].score, s.ranked[i].id);
  }
  const size_t found = s.final_top.sorted(s.ranked.data());
  for (size_t i = 0; i < found; ++i) {
    out_ids[i] = s.ranked[i].id;
    out_dist[i] = l2 && !p.raw_scores ? std::max(0.f, q_norm - s.ranked[i].score) : s.ranked[i].score;
  }
  for (size_t i = found; i < p.k; ++i) {
    out_ids[i] = -1;
    out_dist[i] = p.raw_scores ? -std::numeric_limits<float>::infinity() : worst_distance(v.metric);
  }
}

/// Orders the query's leaves (t.leaf_keys) and returns how many of the best to visit: the
/// leaves_to_search best, or, for a filter with per-leaf counts (TreeAhParams::leaf_allowed),
/// as many as it takes to pass as many allowed entries as the leaves_to_search best leaves
/// hold (at least leaves_to_search leaves). Callers skip visited leaves with no allowed entry.
size_t choose_leaves(const TreeAhView& v, const TreeAhParams& p, const int64_t* allowed, QueryTables& t) {
  if (allowed == nullptr) {
    order_leaves(v, p.leaves_to_search, t);
    return p.leaves_to_search;
  }
  // Order about as many leaves as the filter's overall fraction says the walk needs (a selection,
  // cheaper than sorting every center); sort them all only if the walk runs past them.
  auto size_of = [&](size_t leaf) {
    return p.leaf_sizes != nullptr ? p.leaf_sizes[leaf] : v.leaf_offsets[leaf + 1] - v.leaf_offsets[leaf];
  };
  int64_t total = 0, total_allowed = 0;
  for (size_t l = 0; l < v.num_leaves; ++l) {
    total += size_of(l);
    total_allowed += allowed[l];
  }
  size_t ordered = v.num_leaves;
  if (total_allowed > 0) {
    const double widen = static_cast<double>(total) / static_cast<double>(total_allowed);
    ordered = std::min(v.num_leaves, static_cast<size_t>(2.0 * widen * static_cast<double>(p.leaves_to_search)) + 1);
  }
  ordered = std::max(ordered, p.leaves_to_search);
  order_leaves(v, ordered, t);
  int64_t target = 0;
  for (size_t j = 0; j < p.leaves_to_search; ++j) {
    target += size_of(leaf_at(t, j));
  }
  int64_t passing = 0;
  size_t j = 0;
  while (j < v.num_leaves && (j < p.leaves_to_search || passing < target)) {
    if (j == ordered) {  // the keys are distinct, so the full order begins with the same leaves
      ordered = v.num_leaves;
      order_leaves(v, ordered, t);
    }
    passing += allowed[leaf_at(t, j++)];
  }
  return j;
}

/// The per-leaf allowed counts of query q's filter, or nullptr.
const int64_t* leaf_allowed_of(const TreeAhView& v, const TreeAhParams& p, const QueryFilters& filters, size_t q) {
  const int64_t f = filters.index_of(q);
  return f < 0 || p.leaf_allowed == nullptr ? nullptr : p.leaf_allowed + static_cast<size_t>(f) * v.num_leaves;
}

void search_one(const TreeAhView& v, const KernelTable& kt, const TreeAhParams& p, const float* q,
                const float* center_dots, const PointFilter* filter, const int64_t* allowed,
                TreeAhSearcher::Scratch& s, int64_t* out_ids, float* out_dist) {
  // 1-2. The lookup table (center scores come from the task's score_centers); the
  //      leaves to visit, best first.
  QueryTables& t = s.tables;
  prepare_query(v, kt, q, center_dots, t);
  const size_t num_leaves = choose_leaves(v, p, allowed, t);
  // 3. LUT16 scan of the chosen leaves into the candidate selection.
  s.candidates.reset(selection_size(v, p));
  for (size_t i = 0; i < num_leaves; ++i) {
    const size_t leaf = leaf_at(t, i);
    if (allowed != nullptr && allowed[leaf] == 0) continue;
    s.stats.entries_scored += scan_leaf(v, kt, leaf, t, s.candidates, filter, &s.stats.filter_checks,
                                        i + 1 < num_leaves ? leaf_at(t, i + 1) : SIZE_MAX);
    ++s.stats.leaves_scanned;
  }
  finish_query(v, kt, p, q, s.candidates, s, out_ids, out_dist);
}

/// Searches queries [0, count) of `queries` leaf-major: every query's leaves are chosen
/// first, then each leaf probed by any of them is scanned once, for up to
/// kLut16MaxQueries of its queries per pass of the kernel, so its codes come from memory
/// once per task instead of once per query. TopK keeps the best by (score, id) whatever
/// the push order, so the results are those of search_one.
void search_leaf_major(const TreeAhView& v, const KernelTable& kt, const TreeAhParams& p, const float* queries,
                       size_t count, const QueryFilters& filters, TreeAhSearcher::Scratch& s, int64_t* out_ids,
                       float* out_dist) {
  // Probe slots are i * per_query + j: a filtered query may visit every leaf.
  const size_t lut_bytes = v.num_blocks * 16, per_query = probe_stride(v, p);
  QueryTables& t = s.tables;
  const size_t selection = selection_size(v, p);
  s.probes.clear();
  for (size_t q0 = 0; q0 < count; q0 += kCenterScoringQueries) {
    const size_t q1 = std::min(count, q0 + kCenterScoringQueries);
    score_centers(v, kt, queries + q0 * v.dim, q1 - q0, s.center_dots.data());
    for (size_t i = q0; i < q1; ++i) {
      prepare_query(v, kt, queries + i * v.dim, s.center_dots.data() + (i - q0) * v.num_leaves, t);
      const int64_t* allowed = leaf_allowed_of(v, p, filters, i);
      const size_t visits = choose_leaves(v, p, allowed, t);
      std::copy(t.lut_u8.begin(), t.lut_u8.end(), s.chunk_luts.begin() + static_cast<std::ptrdiff_t>(i * lut_bytes));
      s.chunk_inv_m[i] = t.inv_m;
      s.chunk_candidates[i].reset(selection);
      bool seeded = false;
      for (size_t j = 0; j < visits; ++j) {
        const size_t leaf = leaf_at(t, j), slot = i * per_query + j;
        if (allowed != nullptr && allowed[leaf] == 0) continue;
        if (!seeded) {
          // The query's nearest leaf is scanned now, alone: in leaf order a query's leaves come
          // best-last as often as best-first, and without the bar its candidates set, every
          // entry of the early leaves entered the selection (nth_element was 11% of a 1M batch).
          s.stats.entries_scored += scan_leaf(v, kt, leaf, t, s.chunk_candidates[i], filters.of(i),
                                              &s.stats.filter_checks);
          ++s.stats.leaves_scanned;
          seeded = true;
          continue;
        }
        s.chunk_bias[slot] = t.center_dots[leaf];
        s.probes.push_back((static_cast<uint64_t>(leaf) << 32) | slot);
      }
    }
  }
  std::sort(s.probes.begin(), s.probes.end());
  s.stats.leaves_scanned += s.probes.size();

  const size_t sums_stride = t.sums.size();
  for (size_t a = 0; a < s.probes.size();) {
    const size_t leaf = static_cast<size_t>(s.probes[a] >> 32);
    size_t b = a;
    while (b < s.probes.size() && (s.probes[b] >> 32) == leaf) ++b;
    const size_t entries = static_cast<size_t>(v.leaf_offsets[leaf + 1] - v.leaf_offsets[leaf]);
    for (size_t c = a; entries > 0 && c < b; c += kLut16MaxQueries) {
      const size_t n = std::min(kLut16MaxQueries, b - c);
      const uint8_t* luts[kLut16MaxQueries];
      int32_t* sums[kLut16MaxQueries];
      for (size_t r = 0; r < n; ++r) {
        const size_t i = static_cast<uint32_t>(s.probes[c + r]) / per_query;
        luts[r] = s.chunk_luts.data() + i * lut_bytes;
        sums[r] = s.chunk_sums.data() + r * sums_stride;
      }
      // The first pass over a leaf brings its codes into the cache; it prefetches the next leaf.
      lut16_leaf(v, kt, leaf, luts, n, sums, c == a && b < s.probes.size() ? s.probes[b] >> 32 : SIZE_MAX);
      for (size_t r = 0; r < n; ++r) {
        const size_t slot = static_cast<uint32_t>(s.probes[c + r]), i = slot / per_query;
        s.stats.entries_scored += select_from_sums(v, kt, leaf, sums[r], s.chunk_bias[slot], s.chunk_inv_m[i],
                                                   s.chunk_candidates[i], filters.of(i), &s.stats.filter_checks);
      }
    }
    a = b;
  }
  for (size_t i = 0; i < count; ++i) {
    finish_query(v, kt, p, queries + i * v.dim, s.chunk_candidates[i], s, out_ids + i * p.k, out_dist + i * p.k);
  }
}

}  // namespace

void transpose_codebook(const float* codebook, size_t dim, size_t dims_per_block, float* out) {
  for (size_t begin = 0; begin < dim; begin += dims_per_block) {
    const size_t width = std::min(dims_per_block, dim - begin);
    const float* block = codebook + 16 * begin;
    for (size_t d = 0; d < width; ++d) {
      for (size_t j = 0; j < 16; ++j) out[(begin + d) * 16 + j] = block[j * width + d];
    }
  }
}

size_t check_tree_ah_view(const TreeAhView& v) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("tree-AH index: " + what); };
  if (v.n == 0 || v.dim == 0 || v.num_leaves == 0 || v.dims_per_block == 0) {
    fail("n, dim, num_leaves, dims_per_block must be > 0");
  }
  if (v.num_blocks != (v.dim + v.dims_per_block - 1) / v.dims_per_block) fail("num_blocks disagrees with dim");
  if (v.leaf_offsets[0] != 0 || v.leaf_group_offsets[0] != 0) fail("leaf offsets must start at 0");
  constexpr int64_t kGroup = 32;
  for (size_t l = 0; l < v.num_leaves; ++l) {
    const int64_t begin = v.leaf_offsets[l], end = v.leaf_offsets[l + 1];
    if (end < begin || static_cast<uint64_t>(end) > v.num_entries) fail("leaf_offsets decrease or pass the entries");
    const int64_t g_begin = v.leaf_group_offsets[l], g_end = v.leaf_group_offsets[l + 1];
    if (g_end < g_begin || g_end - g_begin != (end - begin + kGroup - 1) / kGroup) {
      fail("leaf_group_offsets disagree with leaf_offsets");
    }
  }
  if (static_cast<uint64_t>(v.leaf_offsets[v.num_leaves]) != v.num_entries) {
    fail("leaf_offsets do not end at the entries");
  }
  const uint64_t groups = static_cast<uint64_t>(v.leaf_group_offsets[v.num_leaves]);
  if (groups * 16 * v.num_blocks != v.packed_bytes) fail("packed_codes size disagrees with the groups");
  int64_t max_id = -1;
  for (size_t e = 0; e < v.num_entries; ++e) {
    const int32_t id = v.entry_ids[e];
    if (id < 0 || static_cast<uint64_t>(id) >= v.n) fail("entry id outside [0, n)");
    max_id = std::max<int64_t>(max_id, id);
  }
  return static_cast<size_t>(max_id + 1);
}

TreeAhSearcher::TreeAhSearcher(const TreeAhView& view)
    : view_(view), point_slots_(check_tree_ah_view(view)), codebook_by_dim_(16 * view.dim) {
  transpose_codebook(view.codebook, view.dim, view.dims_per_block, codebook_by_dim_.data());
  view_.codebook_by_dim = codebook_by_dim_.data();
  // Leaves are prefetched one ahead when the scanned arrays (codes, norms, ids) outgrow a
  // typical last-level cache share: at 50k MiniLM points (5 MiB, cached) the split kernel
  // calls cost single queries ~5%; at 1M SIFT points (40 MiB) prefetching gained 27-38%. A
  // fixed size, because the C library's cache size is unreliable in VMs (this 32 MiB L3
  // reports 320 MiB).
  // ANNLIB_PREFETCH_NEXT_LEAF=1 or 0 forces the choice (tests run the prefetching scan on
  // small indexes with it).
  constexpr size_t kPrefetchMinBytes = size_t{16} << 20;
  const size_t scanned_bytes = view.packed_bytes + view.num_entries * (sizeof(int32_t) + sizeof(float));
  const char* forced = std::getenv("ANNLIB_PREFETCH_NEXT_LEAF");
  view_.prefetch_next_leaf = forced != nullptr && (forced[0] == '0' || forced[0] == '1')
                                 ? forced[0] == '1'
                                 : scanned_bytes > kPrefetchMinBytes;
  // Scoring one query against every center reads them dimension-major: no horizontal sums.
  centers_by_dim_.resize(view.num_leaves * view.dim);
  for (size_t l = 0; l < view.num_leaves; ++l) {
    for (size_t d = 0; d < view.dim; ++d) centers_by_dim_[d * view.num_leaves + l] = view.centers[l * view.dim + d];
  }
  view_.centers_by_dim = centers_by_dim_.data();
}

TreeAhSearcher::~TreeAhSearcher() = default;

std::unique_ptr<TreeAhSearcher::Scratch> TreeAhSearcher::acquire(const TreeAhParams& p) const {
  std::unique_ptr<TreeAhSearcher::Scratch> s;
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!pool_.empty()) {
      s = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  if (!s) {
    s = std::make_unique<TreeAhSearcher::Scratch>();
    s->tables.resize(view_);
    s->center_dots.resize(kCenterScoringQueries * view_.num_leaves);
    // Sized by the ids the entries hold, never by n alone: a file's n may overstate them.
    if (view_.spilled) s->seen.assign(point_slots_, 0);
    s->query_scaled.resize(view_.dim);
  }
  // Only grows, so repeated searches with the same parameters allocate nothing.
  const size_t wanted = std::max(p.pre_reorder, p.k);
  const size_t capacity = static_cast<size_t>(std::ceil(4.0 * static_cast<double>(wanted) * p.overretrieve_factor));
  if (s->ranked.size() < capacity + 16) s->ranked.resize(capacity + 16);
  s->stats = TreeAhStats{};
  return s;
}

void TreeAhSearcher::Scratch::reserve_leaf_major(const TreeAhView& v, size_t chunk, size_t leaves_to_search) {
  if (chunk_luts.size() < chunk * v.num_blocks * 16) chunk_luts.resize(chunk * v.num_blocks * 16);
  if (chunk_inv_m.size() < chunk) chunk_inv_m.resize(chunk);
  if (chunk_bias.size() < chunk * leaves_to_search) chunk_bias.resize(chunk * leaves_to_search);
  if (chunk_candidates.size() < chunk) chunk_candidates.resize(chunk);
  probes.reserve(chunk * leaves_to_search);
  if (chunk_sums.empty()) chunk_sums.resize(kLut16MaxQueries * tables.sums.size());
}

void TreeAhSearcher::release(std::unique_ptr<Scratch> s) const {
  std::lock_guard<std::mutex> lock(pool_mutex_);
  pool_.push_back(std::move(s));
}

void TreeAhSearcher::search(const float* queries, size_t num_queries, const TreeAhParams& p, int64_t* out_ids,
                            float* out_distances, TreeAhStats* stats) const {
  if (p.k == 0 || p.leaves_to_search == 0 || p.leaves_to_search > view_.num_leaves) {
    throw std::invalid_argument("tree_ah_search: need 0 < k and 0 < leaves_to_search <= num_leaves");
  }
  if (!(p.overretrieve_factor >= 1.0 && p.overretrieve_factor <= 4.0)) {
    throw std::invalid_argument("tree_ah_search: overretrieve_factor must be in [1, 4]");
  }
  if (stats != nullptr) *stats = TreeAhStats{};
  if (num_queries == 0) return;
  const KernelTable& kt = kernels();
  const size_t threads = resolve_num_threads(p.num_threads);
  // Leaf-major when every thread gets enough queries to share leaf scans: the chunk
  // splits the call evenly over the threads, at most kLeafMajorChunk queries a task.
  const bool leaf_major = num_queries >= kLeafMajorMinQueries * threads;
  const size_t per_task = leaf_major ? std::min(kLeafMajorChunk, (num_queries + threads - 1) / threads) : kQueriesPerTask;
  const size_t tasks = (num_queries + per_task - 1) / per_task;
  const size_t workers = std::min(threads, tasks);
  std::vector<std::unique_ptr<TreeAhSearcher::Scratch>> scratch(workers);
  for (auto& s : scratch) {
    s = acquire(p);
    if (leaf_major) s->reserve_leaf_major(view_, per_task, probe_stride(view_, p));
  }
  auto run = [&](size_t task, size_t worker) {
    Scratch& s = *scratch[worker];
    const size_t q_begin = task * per_task;
    const size_t q_end = std::min(num_queries, q_begin + per_task);
    if (leaf_major) {
      search_leaf_major(view_, kt, p, queries + q_begin * view_.dim, q_end - q_begin, p.filters.from(q_begin), s,
                        out_ids + q_begin * p.k, out_distances + q_begin * p.k);
      return;
    }
    // The task's queries are scored against the centers together: the centers, which
    // the leaf scans evict from L2, are then fetched once per task, not once per query.
    score_centers(view_, kt, queries + q_begin * view_.dim, q_end - q_begin, s.center_dots.data());
    for (size_t q = q_begin; q < q_end; ++q) {
      search_one(view_, kt, p, queries + q * view_.dim, s.center_dots.data() + (q - q_begin) * view_.num_leaves,
                 p.filters.of(q), leaf_allowed_of(view_, p, p.filters, q), s, out_ids + q * p.k,
                 out_distances + q * p.k);
    }
  };
  if (workers == 1) {
    for (size_t t = 0; t < tasks; ++t) run(t, 0);
  } else {
    ThreadPool::instance().parallel_for(tasks, workers, run);
  }
  for (auto& s : scratch) {
    if (stats != nullptr) {
      stats->entries_scored += s->stats.entries_scored;
      stats->candidates_reordered += s->stats.candidates_reordered;
      stats->candidates_rescored_exactly += s->stats.candidates_rescored_exactly;
      stats->leaves_scanned += s->stats.leaves_scanned;
      stats->filter_checks += s->stats.filter_checks;
    }
    release(std::move(s));
  }
}

}  // namespace annlib
