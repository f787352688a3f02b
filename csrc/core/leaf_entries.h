// Edits of the tree-AH index's leaf-major entry tables (leaf offsets, entry ids, packed LUT16
// codes and an optional per-entry float such as entry_sq_norms): appending entries, keeping
// a subset, and pruning dead points' entries from the leaves they crowd. Each writes a new copy and
// touches per leaf only what changes: full 32-entry groups of codes are copied as bytes; an append
// unpacks and packs again only a leaf's last partial group and its new entries, and a leaf that lost
// entries (select, prune) moves its kept codes inside the packed layout (lut16_keep, simd/kernels.h).
// Public within the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace annlib {

/// One index's entry tables (read only). Entries are grouped by leaf: leaf l owns entries
/// [leaf_offsets[l], leaf_offsets[l + 1]) and packed groups [group_offsets[l], group_offsets[l + 1]),
/// ceil(count / 32) of them, each num_blocks * 16 bytes (core/lut16_codes.h).
struct LeafEntries {
  const int64_t* leaf_offsets = nullptr;   ///< num_leaves + 1
  const int64_t* group_offsets = nullptr;  ///< num_leaves + 1
  const int32_t* entry_ids = nullptr;      ///< leaf_offsets[num_leaves]
  const uint8_t* packed = nullptr;         ///< group_offsets[num_leaves] * num_blocks * 16
  const float* values = nullptr;           ///< one float per entry, or null
  size_t num_leaves = 0;
  size_t num_blocks = 0;
};

/// Where an edit writes: arrays sized from the plan (entries(), groups()).
struct LeafEntriesOut {
  int32_t* entry_ids = nullptr;
  uint8_t* packed = nullptr;
  float* values = nullptr;  ///< written when both it and the input's values are given
};

/// The new offsets of an edit, computed before the output arrays are allocated.
struct LeafPlan {
  std::vector<int64_t> leaf_offsets;   ///< num_leaves + 1
  std::vector<int64_t> group_offsets;  ///< num_leaves + 1
  std::vector<int64_t> source_start;   ///< append: each leaf's first slot in `source`
  std::vector<int64_t> source;         ///< append: new entries by leaf, in input order
  int64_t entries() const { return leaf_offsets.back(); }
  int64_t groups() const { return group_offsets.back(); }
};

/// Checks the offsets of `in` (starting at 0, non-decreasing, groups = ceil(count / 32)) and
/// `total_entries` / `total_groups` against them; throws std::invalid_argument otherwise.
void check_leaf_entries(const LeafEntries& in, size_t total_entries, size_t total_groups);

/// Plan of appending m entries with leaves new_leaves (each in [0, num_leaves), else
/// std::invalid_argument): each leaf keeps its entries and gets its new ones after them, in input order.
LeafPlan plan_append(const LeafEntries& in, const int64_t* new_leaves, size_t m);

/// Writes the tables of `in` with the new entries appended: new_ids (m), new_codes (m x num_blocks,
/// 0..15, else std::invalid_argument) and new_values (m; used when in.values and out.values are set).
void append_entries(const LeafEntries& in, const LeafPlan& plan, const int32_t* new_ids, const uint8_t* new_codes,
                    const float* new_values, size_t num_threads, const LeafEntriesOut& out);

/// Plan of keeping the entries whose point survives: renumber[id] >= 0 is the point's new id,
/// -1 drops its entries; ids must lie in [0, rows) (else std::invalid_argument).
LeafPlan plan_select(const LeafEntries& in, const int64_t* renumber, size_t rows);

/// Writes the kept entries of `in` (renumbered, in their order) by the plan of plan_select.
void select_entries(const LeafEntries& in, const LeafPlan& plan, const int64_t* renumber, size_t num_threads,
                    const LeafEntriesOut& out);

/// Plan of dropping dead points' entries (live[id] == 0; ids in [0, rows), else std::invalid_argument)
/// from each leaf l with candidates[l] != 0 (every leaf when candidates is null) whose dead entries
/// are at least min_dead_fraction of its entries, and at least one; every other leaf keeps all of
/// its entries, dead ones included (the scan's liveness mask skips them). Ids are not renumbered.
/// plan.entries() equals in's entry count exactly when no leaf qualifies.
LeafPlan plan_prune(const LeafEntries& in, const uint8_t* live, size_t rows, const uint8_t* candidates,
                    double min_dead_fraction);

/// Writes `in` by the plan of plan_prune: a leaf the plan shrank keeps its live entries, in order.
void prune_entries(const LeafEntries& in, const LeafPlan& plan, const uint8_t* live, size_t num_threads,
                   const LeafEntriesOut& out);

}  // namespace annlib
