#include "core/tree_ah_query.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <functional>

#include "core/lut16_codes.h"

namespace annlib {

size_t max_leaf_groups(const TreeAhView& v) {
  int64_t best = 0;
  for (size_t l = 0; l < v.num_leaves; ++l) best = std::max(best, v.leaf_group_offsets[l + 1] - v.leaf_group_offsets[l]);
  return static_cast<size_t>(best);
}

void QueryTables::resize(const TreeAhView& v) {
  own_center_dots.resize(v.num_leaves);
  leaf_keys.resize(v.num_leaves);
  leaf_scores.resize(v.num_leaves);
  leaf_sample.resize(v.num_leaves / 8 + 1);
  lut_float.resize(v.num_blocks * 16);
  lut_u8.resize(v.num_blocks * 16);
  sums.resize(max_leaf_groups(v) * kLut16GroupSize + kLut16GroupSize);
}

namespace {

void build_query_lut(const TreeAhView& v, const KernelTable& kt, const float* q, QueryTables& t) {
  kt.build_lut(q, v.codebook_by_dim, v.dim, v.dims_per_block, t.lut_float.data());
  t.inv_m = 1.f / kt.quantize_lut(t.lut_float.data(), v.num_blocks * 16, t.lut_u8.data());
}

}  // namespace

void prepare_query(const TreeAhView& v, const KernelTable& kt, const float* q, QueryTables& t) {
  kt.dot_by_dim(DotByDimArgs{q, v.centers_by_dim, v.num_leaves, v.dim, t.own_center_dots.data()});
  t.center_dots = t.own_center_dots.data();
  build_query_lut(v, kt, q, t);
}

void score_centers(const TreeAhView& v, const KernelTable& kt, const float* queries, size_t count, float* out) {
  kt.dot_by_dim(DotByDimArgs{queries, v.centers_by_dim, v.num_leaves, v.dim, out, count, v.num_leaves});
}

void prepare_query(const TreeAhView& v, const KernelTable& kt, const float* q, const float* center_dots,
                   QueryTables& t) {
  t.center_dots = center_dots;
  build_query_lut(v, kt, q, t);
}

void order_leaves(const TreeAhView& v, size_t count, QueryTables& t) {
  // One selection over all centers beats a running top-k here: every center is a
  // candidate. Keys pack (order-preserving score bits, inverted id) into 64 bits so
  // the selection compares integers: larger key = better, ties to the smaller id.
  const bool l2 = v.metric == Metric::kSquaredL2;
  uint64_t* keys = t.leaf_keys.data();
  auto score_of = [&](size_t l) {
    const float dot = t.center_dots[l];
    return l2 ? 2.f * dot - v.center_sq_norms[l] : dot;
  };
  auto key_of = [](float score, size_t l) {
    return (static_cast<uint64_t>(orderable_bits(score)) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(l));
  };
  count = std::min(count, v.num_leaves);
  size_t kept = v.num_leaves;  // keys written to keys[0, kept)
  if (count * 16 <= v.num_leaves) {
    // Few leaves out of many: a cutoff from every 8th center's score keeps about 8 x (count/8 + 4)
    // leaves for the exact selection below, and rejects the rest with one float compare each.
    // Whenever at least `count` leaves pass, they include the best `count` (the count-th best
    // score is then >= the cutoff), so the result is exact; otherwise every leaf is kept.
    // (A heap of the best `count` keys took 8-12% of a batched 1M-point search.)
    float* scores = t.leaf_scores.data();
    for (size_t l = 0; l < v.num_leaves; ++l) scores[l] = score_of(l);
    constexpr size_t kStride = 8;
    const size_t samples = (v.num_leaves + kStride - 1) / kStride;
    const size_t rank = std::min(samples, count / kStride + 4);
    // The rank best sampled scores, best first, by insertion: most samples lose to the last.
    float* best = t.leaf_sample.data();
    size_t held = 0;
    for (size_t l = 0; l < v.num_leaves; l += kStride) {
      const float score = scores[l];
      if (held == rank && !(score > best[rank - 1])) continue;
      size_t i = held < rank ? held++ : rank - 1;
      for (; i > 0 && best[i - 1] < score; --i) best[i] = best[i - 1];
      best[i] = score;
    }
    const float cutoff = best[rank - 1];
    kept = 0;
    for (size_t l = 0; l < v.num_leaves; ++l) {
      if (scores[l] >= cutoff) keys[kept++] = key_of(scores[l], l);
    }
    if (kept < count) {
      for (size_t l = 0; l < v.num_leaves; ++l) keys[l] = key_of(scores[l], l);
      kept = v.num_leaves;
    }
  } else {
    for (size_t l = 0; l < v.num_leaves; ++l) keys[l] = key_of(score_of(l), l);
  }
  if (count < kept) std::nth_element(keys, keys + count - 1, keys + kept, std::greater<uint64_t>());
  std::sort(keys, keys + count, std::greater<uint64_t>());  // nearest leaves first: the selection fills early
}

void lut16_leaf(const TreeAhView& v, const KernelTable& kt, size_t leaf, const uint8_t* const* luts, size_t num_luts,
                int32_t* const* sums, size_t next_leaf) {
  const size_t group_bytes = v.num_blocks * 16;
  const size_t g0 = static_cast<size_t>(v.leaf_group_offsets[leaf]);
  const size_t groups = static_cast<size_t>(v.leaf_group_offsets[leaf + 1]) - g0;
  const uint8_t* codes = v.packed_codes + g0 * group_bytes;
  if (next_leaf == SIZE_MAX || !v.prefetch_next_leaf) {
    kt.lut16(Lut16Args{codes, groups, v.num_blocks, luts, num_luts, sums});
    return;
  }
  // A leaf is a short stream (~20 KiB at 1M points) that the hardware prefetcher finds only
  // after its first misses, so each leaf's start waited on memory. The next leaf's codes,
  // norms and ids (read for the entries that pass the score test) are asked for a slice per
  // two groups of this one: they arrive while this leaf is scanned, and the prefetches never
  // fill the miss buffers at once (a whole leaf asked for up front measured no gain; slices
  // made 1M-point SIFT queries 27-38% faster, bench/RESULTS.md issue 15).
  const size_t next_g0 = static_cast<size_t>(v.leaf_group_offsets[next_leaf]);
  const char* next_codes = reinterpret_cast<const char*>(v.packed_codes + next_g0 * group_bytes);
  const size_t next_code_bytes = (static_cast<size_t>(v.leaf_group_offsets[next_leaf + 1]) - next_g0) * group_bytes;
  const char* next_norms = v.entry_sq_norms == nullptr
                               ? nullptr
                               : reinterpret_cast<const char*>(v.entry_sq_norms + v.leaf_offsets[next_leaf]);
  const size_t next_entries = static_cast<size_t>(v.leaf_offsets[next_leaf + 1] - v.leaf_offsets[next_leaf]);
  const char* next_ids = reinterpret_cast<const char*>(v.entry_ids + v.leaf_offsets[next_leaf]);
  auto fetch_slice = [](const char* base, size_t bytes, size_t c, size_t chunks) {
    const size_t end = bytes * (c + 1) / chunks;
    for (size_t off = (bytes * c / chunks) & ~size_t{63}; off < end; off += 64) __builtin_prefetch(base + off, 0, 2);
  };
  constexpr size_t kGroupsPerSlice = 2;
  const size_t chunks = (groups + kGroupsPerSlice - 1) / kGroupsPerSlice;
  int32_t* chunk_sums[kLut16MaxQueries];
  for (size_t c = 0; c < chunks; ++c) {
    fetch_slice(next_codes, next_code_bytes, c, chunks);
    if (next_norms != nullptr) fetch_slice(next_norms, next_entries * sizeof(float), c, chunks);
    fetch_slice(next_ids, next_entries * sizeof(int32_t), c, chunks);
    const size_t first = c * kGroupsPerSlice;
    for (size_t r = 0; r < num_luts; ++r) chunk_sums[r] = sums[r] + first * kLut16GroupSize;
    kt.lut16(Lut16Args{codes + first * group_bytes, std::min(kGroupsPerSlice, groups - first), v.num_blocks, luts,
                       num_luts, chunk_sums});
  }
}

size_t scan_leaf(const TreeAhView& v, const KernelTable& kt, size_t leaf, QueryTables& t, TopK& selection,
                 const PointFilter* filter, size_t* filter_checks, size_t next_leaf) {
  if (v.leaf_offsets[leaf + 1] == v.leaf_offsets[leaf]) return 0;
  const uint8_t* lut_ptr = t.lut_u8.data();
  int32_t* sums = t.sums.data();
  lut16_leaf(v, kt, leaf, &lut_ptr, 1, &sums, next_leaf);
  return select_from_sums(v, kt, leaf, sums, t.center_dots[leaf], t.inv_m, selection, filter, filter_checks);
}

size_t select_from_sums(const TreeAhView& v, const KernelTable& kt, size_t leaf, const int32_t* sums, float bias,
                        float inv_m, TopK& selection, const PointFilter* filter, size_t* filter_checks) {
  const int64_t e0 = v.leaf_offsets[leaf], e1 = v.leaf_offsets[leaf + 1];
  const int32_t* ids = v.entry_ids + e0;
  const size_t count = static_cast<size_t>(e1 - e0);
  const uint8_t* live = v.live;
  float threshold = selection.threshold();
  size_t checks = 0;
  auto allowed = [&](size_t i) {
    if (filter == nullptr) return true;
    ++checks;
    return filter->allows(static_cast<size_t>(ids[i]));
  };
  if (v.metric == Metric::kSquaredL2) {
    // Full groups' scores against the threshold, 16 groups per SIMD call; the few that
    // pass are rescored here with the same roundings (l2_mask32's contract) against the
    // threshold as it rises. The last partial group goes entry by entry: its norms end
    // with the leaf.
    const float* norms = v.entry_sq_norms + e0;
    const float two_inv_m = 2.f * inv_m, two_bias = 2.f * bias;
    auto consider = [&](size_t i) {
      const float score = (two_bias + static_cast<float>(sums[i]) * two_inv_m) - norms[i];
      // push() breaks ties with the threshold by id; a deleted or filtered-out point is never a
      // candidate (the filter is asked last: only entries that would enter the selection).
      if (score >= threshold && (live == nullptr || live[ids[i]] != 0) && allowed(i)) {
        selection.push(score, ids[i]);
        threshold = selection.threshold();
      }
    };
    constexpr size_t kMaskGroups = 16;  // groups masked per kernel call
    const size_t full_groups = count / kLut16GroupSize;
    uint32_t masks[kMaskGroups];
    for (size_t g0 = 0; g0 < full_groups; g0 += kMaskGroups) {
      const size_t groups = std::min(kMaskGroups, full_groups - g0), p0 = g0 * kLut16GroupSize;
      kt.l2_mask32(L2MaskArgs{sums + p0, norms + p0, groups, two_bias, two_inv_m, threshold, masks});
      for (size_t g = 0; g < groups; ++g) {
        for (uint32_t mask = masks[g]; mask != 0; mask &= mask - 1) {
          consider(p0 + g * kLut16GroupSize + static_cast<size_t>(__builtin_ctz(mask)));
        }
      }
    }
    for (size_t i = full_groups * kLut16GroupSize; i < count; ++i) consider(i);
    if (filter_checks != nullptr) *filter_checks += checks;
    return count;
  }
  // Most entries cannot enter the selection: sums[i] * inv_m + bias > threshold
  // <=> sums[i] > (threshold - bias) * m, so compare 32 raw integer sums at a time with
  // the cutoff, refreshed only when the selection's threshold rises. The cutoff is
  // lowered by one so float rounding never rejects an entry push() would keep.
  const float m = 1.f / inv_m;
  auto cutoff_for = [&](float thr) {
    const float c = std::floor((thr - bias) * m) - 1.f;
    return c < -2.0e9f ? INT32_MIN : (c > 2.0e9f ? INT32_MAX : static_cast<int32_t>(c));
  };
  int32_t cutoff = cutoff_for(threshold);
  for (size_t g = 0; g < count; g += kLut16GroupSize) {
    uint32_t mask = kt.greater_mask32(sums + g, cutoff);
    if (count - g < kLut16GroupSize) mask &= (1u << (count - g)) - 1u;
    while (mask != 0) {
      const size_t i = g + static_cast<size_t>(__builtin_ctz(mask));
      mask &= mask - 1;
      if (sums[i] <= cutoff) continue;  // the cutoff rose since this group's mask
      if (live != nullptr && live[ids[i]] == 0) continue;  // deleted: never a candidate
      // Filtered out: never a candidate either. Asked only here, after the score threshold, so a
      // predicate runs for the few entries that would enter the selection.
      if (!allowed(i)) continue;
      selection.push(bias + static_cast<float>(sums[i]) * inv_m, ids[i]);
      if (selection.threshold() != threshold) {
        threshold = selection.threshold();
        cutoff = cutoff_for(threshold);
      }
    }
  }
  if (filter_checks != nullptr) *filter_checks += checks;
  return count;
}

}  // namespace annlib
