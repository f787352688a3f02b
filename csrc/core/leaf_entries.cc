// Appending to and selecting from the leaf-major entry tables (core/leaf_entries.h).
#include "core/leaf_entries.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/lut16_codes.h"
#include "core/thread_pool.h"
#include "simd/dispatch.h"

namespace annlib {

namespace {

constexpr int64_t kGroup = static_cast<int64_t>(kLut16GroupSize);

int64_t groups_of(int64_t count) { return (count + kGroup - 1) / kGroup; }

/// Offsets from per-leaf counts.
void fill_offsets(const std::vector<int64_t>& counts, LeafPlan& plan) {
  const size_t num_leaves = counts.size();
  plan.leaf_offsets.assign(num_leaves + 1, 0);
  plan.group_offsets.assign(num_leaves + 1, 0);
  for (size_t l = 0; l < num_leaves; ++l) {
    plan.leaf_offsets[l + 1] = plan.leaf_offsets[l] + counts[l];
    plan.group_offsets[l + 1] = plan.group_offsets[l] + groups_of(counts[l]);
  }
}

/// Every entry's point id in [0, rows), else std::invalid_argument.
void check_entry_ids(const LeafEntries& in, size_t rows) {
  const int64_t total = in.leaf_offsets[in.num_leaves];
  for (int64_t e = 0; e < total; ++e) {
    const int32_t id = in.entry_ids[e];
    if (id < 0 || static_cast<size_t>(id) >= rows) {
      throw std::invalid_argument("leaf entries: entry " + std::to_string(e) + " names point " + std::to_string(id) +
                                  " of " + std::to_string(rows));
    }
  }
}

}  // namespace

void check_leaf_entries(const LeafEntries& in, size_t total_entries, size_t total_groups) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("leaf entries: " + what); };
  if (in.num_blocks == 0) fail("num_blocks must be positive");
  if (in.leaf_offsets[0] != 0 || in.group_offsets[0] != 0) fail("offsets must start at 0");
  for (size_t l = 0; l < in.num_leaves; ++l) {
    const int64_t count = in.leaf_offsets[l + 1] - in.leaf_offsets[l];
    if (count < 0) fail("leaf_offsets decrease at leaf " + std::to_string(l));
    if (in.group_offsets[l + 1] - in.group_offsets[l] != groups_of(count)) {
      fail("leaf " + std::to_string(l) + " has " + std::to_string(count) + " entries but " +
           std::to_string(in.group_offsets[l + 1] - in.group_offsets[l]) + " groups");
    }
  }
  if (static_cast<size_t>(in.leaf_offsets[in.num_leaves]) != total_entries) fail("entry count disagrees with leaf_offsets");
  if (static_cast<size_t>(in.group_offsets[in.num_leaves]) != total_groups) fail("packed size disagrees with the group offsets");
}

LeafPlan plan_append(const LeafEntries& in, const int64_t* new_leaves, size_t m) {
  std::vector<int64_t> added(in.num_leaves, 0);
  for (size_t i = 0; i < m; ++i) {
    if (new_leaves[i] < 0 || static_cast<size_t>(new_leaves[i]) >= in.num_leaves) {
      throw std::invalid_argument("leaf entries: new entry " + std::to_string(i) + " names leaf " +
                                  std::to_string(new_leaves[i]) + " of " + std::to_string(in.num_leaves));
    }
    ++added[new_leaves[i]];
  }
  LeafPlan plan;
  plan.source_start.assign(in.num_leaves + 1, 0);
  std::vector<int64_t> counts(in.num_leaves);
  for (size_t l = 0; l < in.num_leaves; ++l) {
    plan.source_start[l + 1] = plan.source_start[l] + added[l];
    counts[l] = in.leaf_offsets[l + 1] - in.leaf_offsets[l] + added[l];
  }
  fill_offsets(counts, plan);
  plan.source.resize(m);  // counting sort of the new entries by leaf, stable
  std::vector<int64_t> next(plan.source_start.begin(), plan.source_start.end() - 1);
  for (size_t i = 0; i < m; ++i) plan.source[next[new_leaves[i]]++] = static_cast<int64_t>(i);
  return plan;
}

void append_entries(const LeafEntries& in, const LeafPlan& plan, const int32_t* new_ids, const uint8_t* new_codes,
                    const float* new_values, size_t num_threads, const LeafEntriesOut& out) {
  const size_t nb = in.num_blocks, group_bytes = nb * kLut16Codewords;
  const bool values = in.values && out.values && new_values;
  const size_t workers = std::min(resolve_num_threads(num_threads), std::max<size_t>(in.num_leaves, 1));
  std::vector<std::vector<uint8_t>> buffers(workers);
  ThreadPool::instance().parallel_for(in.num_leaves, workers, [&](size_t l, size_t worker) {
    const int64_t old_begin = in.leaf_offsets[l], old_count = in.leaf_offsets[l + 1] - old_begin;
    const int64_t* src = plan.source.data() + plan.source_start[l];
    const int64_t added = plan.source_start[l + 1] - plan.source_start[l];
    const int64_t dst = plan.leaf_offsets[l];
    std::copy(in.entry_ids + old_begin, in.entry_ids + old_begin + old_count, out.entry_ids + dst);
    for (int64_t t = 0; t < added; ++t) out.entry_ids[dst + old_count + t] = new_ids[src[t]];
    if (values) {
      std::copy(in.values + old_begin, in.values + old_begin + old_count, out.values + dst);
      for (int64_t t = 0; t < added; ++t) out.values[dst + old_count + t] = new_values[src[t]];
    }
    const uint8_t* from = in.packed + in.group_offsets[l] * group_bytes;
    uint8_t* to = out.packed + plan.group_offsets[l] * group_bytes;
    if (added == 0) {  // untouched leaf: its groups as they are
      std::memcpy(to, from, (in.group_offsets[l + 1] - in.group_offsets[l]) * group_bytes);
      return;
    }
    // Full groups as bytes; the partial last group's entries and the new ones packed again.
    const int64_t full = old_count / kGroup, rest = old_count % kGroup;
    std::memcpy(to, from, full * group_bytes);
    std::vector<uint8_t>& codes = buffers[worker];
    codes.resize((rest + added) * nb);
    if (rest) unpack_lut16_codes(from + full * group_bytes, rest, nb, codes.data());
    for (int64_t t = 0; t < added; ++t) std::memcpy(codes.data() + (rest + t) * nb, new_codes + src[t] * nb, nb);
    pack_lut16_codes(codes.data(), rest + added, nb, to + full * group_bytes);
  });
}

LeafPlan plan_select(const LeafEntries& in, const int64_t* renumber, size_t rows) {
  check_entry_ids(in, rows);
  std::vector<int64_t> counts(in.num_leaves, 0);
  for (size_t l = 0; l < in.num_leaves; ++l) {
    for (int64_t e = in.leaf_offsets[l]; e < in.leaf_offsets[l + 1]; ++e) counts[l] += renumber[in.entry_ids[e]] >= 0;
  }
  LeafPlan plan;
  fill_offsets(counts, plan);
  return plan;
}

namespace {

/// Writes the entries of each leaf for which keep(id) holds, as new_id(id), in their order. A leaf
/// the plan keeps whole copies its codes as bytes; one that lost entries moves its kept codes
/// inside the packed layout (lut16_keep: no unpacked copy, groups before the first removed entry
/// copied as bytes).
template <typename Keep, typename NewId>
void keep_entries(const LeafEntries& in, const LeafPlan& plan, Keep keep, NewId new_id, size_t num_threads,
                  const LeafEntriesOut& out) {
  const size_t nb = in.num_blocks, group_bytes = nb * kLut16Codewords;
  const bool values = in.values && out.values;
  const Lut16KeepFn keep_codes = kernels().lut16_keep;
  const size_t workers = std::min(resolve_num_threads(num_threads), std::max<size_t>(in.num_leaves, 1));
  std::vector<std::vector<uint32_t>> buffers(workers);
  ThreadPool::instance().parallel_for(in.num_leaves, workers, [&](size_t l, size_t worker) {
    const int64_t old_begin = in.leaf_offsets[l], old_count = in.leaf_offsets[l + 1] - old_begin;
    const int64_t dst = plan.leaf_offsets[l], kept = plan.leaf_offsets[l + 1] - dst;
    if (kept == 0) return;
    const uint8_t* from = in.packed + in.group_offsets[l] * group_bytes;
    uint8_t* to = out.packed + plan.group_offsets[l] * group_bytes;
    if (kept == old_count) {  // nothing dropped: ids mapped, values and codes as they are
      for (int64_t e = 0; e < old_count; ++e) out.entry_ids[dst + e] = new_id(in.entry_ids[old_begin + e]);
      if (values) std::copy(in.values + old_begin, in.values + old_begin + old_count, out.values + dst);
      std::memcpy(to, from, (in.group_offsets[l + 1] - in.group_offsets[l]) * group_bytes);
      return;
    }
    std::vector<uint32_t>& masks = buffers[worker];
    masks.assign(static_cast<size_t>(groups_of(old_count)), 0);
    int64_t w = 0;
    for (int64_t e = 0; e < old_count; ++e) {
      const int32_t id = in.entry_ids[old_begin + e];
      if (!keep(id)) continue;
      masks[e / kGroup] |= 1u << (e % kGroup);
      out.entry_ids[dst + w] = new_id(id);
      if (values) out.values[dst + w] = in.values[old_begin + e];
      ++w;
    }
    keep_codes(Lut16KeepArgs{from, masks.data(), masks.size(), nb, to});
  });
}

}  // namespace

void select_entries(const LeafEntries& in, const LeafPlan& plan, const int64_t* renumber, size_t num_threads,
                    const LeafEntriesOut& out) {
  keep_entries(
      in, plan, [renumber](int32_t id) { return renumber[id] >= 0; },
      [renumber](int32_t id) { return static_cast<int32_t>(renumber[id]); }, num_threads, out);
}

LeafPlan plan_prune(const LeafEntries& in, const uint8_t* live, size_t rows, const uint8_t* candidates,
                    double min_dead_fraction) {
  check_entry_ids(in, rows);
  std::vector<int64_t> counts(in.num_leaves);
  for (size_t l = 0; l < in.num_leaves; ++l) {
    const int64_t begin = in.leaf_offsets[l], count = in.leaf_offsets[l + 1] - begin;
    counts[l] = count;
    if (candidates && !candidates[l]) continue;
    int64_t dead = 0;
    for (int64_t e = begin; e < begin + count; ++e) dead += live[in.entry_ids[e]] == 0;
    if (dead > 0 && static_cast<double>(dead) >= min_dead_fraction * static_cast<double>(count)) counts[l] -= dead;
  }
  LeafPlan plan;
  fill_offsets(counts, plan);
  return plan;
}

void prune_entries(const LeafEntries& in, const LeafPlan& plan, const uint8_t* live, size_t num_threads,
                   const LeafEntriesOut& out) {
  keep_entries(
      in, plan, [live](int32_t id) { return live[id] != 0; }, [](int32_t id) { return id; }, num_threads, out);
}

}  // namespace annlib
