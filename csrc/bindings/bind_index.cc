// Bindings of the tree-AH search: a handle that keeps the numpy arrays (possibly
// memory-mapped) alive and exposes them to the core as a TreeAhView.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <memory>
#include <optional>
#include <vector>

#include "bindings/array_view.h"
#include "bindings/filter_args.h"
#include "core/leaf_entries.h"
#include "core/tree_ah_search.h"

namespace py = pybind11;
using namespace annlib;
using namespace annlib_bindings;

namespace {

class TreeAhHandle {
 public:
  TreeAhHandle(py::dict arrays, const std::string& metric, size_t n, size_t dim, size_t num_leaves,
               size_t dims_per_block, bool spilled)
      : arrays_(std::move(arrays)) {
    v_ = tree_ah_view(arrays_, metric, n, dim, num_leaves, dims_per_block, spilled);
    searcher_ = std::make_unique<TreeAhSearcher>(v_);
  }

  py::tuple search(const py::array_t<float, py::array::c_style>& queries, size_t k, size_t leaves_to_search,
                   size_t pre_reorder, size_t num_threads, double overretrieve_factor, bool raw_scores,
                   const py::object& filter_bits, const py::object& filter_table, const py::object& filter_of_query,
                   const py::object& row_ids, const py::object& leaf_allowed, size_t exact_reorder,
                   const py::object& leaf_sizes) {
    if (queries.ndim() != 2 || static_cast<size_t>(queries.shape(1)) != v_.dim) {
      throw std::invalid_argument("queries must have shape (nq, dim)");
    }
    const size_t nq = queries.shape(0);
    py::array_t<int64_t> ids({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
    py::array_t<float> distances({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
    TreeAhParams p;
    p.k = k;
    p.leaves_to_search = leaves_to_search;
    p.pre_reorder = pre_reorder;
    p.exact_reorder = exact_reorder;
    p.num_threads = num_threads;
    p.overretrieve_factor = overretrieve_factor;
    p.raw_scores = raw_scores;
    FilterArgs filters;
    make_filters(filters, filter_bits, filter_table, filter_of_query, row_ids, v_.n, nq);
    p.filters = filters.query_filters;
    py::array_t<int64_t, py::array::c_style> allowed;
    if (!leaf_allowed.is_none()) {
      allowed = leaf_allowed.cast<py::array_t<int64_t, py::array::c_style>>();
      if (filters.filters.empty() || allowed.ndim() != 2 ||
          static_cast<size_t>(allowed.shape(0)) != filters.filters.size() ||
          static_cast<size_t>(allowed.shape(1)) != v_.num_leaves) {
        throw std::invalid_argument("leaf_allowed must have shape (filters, num_leaves)");
      }
      p.leaf_allowed = allowed.data();
    }
    py::array_t<int64_t, py::array::c_style> sizes;
    if (!leaf_sizes.is_none()) {
      sizes = leaf_sizes.cast<py::array_t<int64_t, py::array::c_style>>();
      if (p.leaf_allowed == nullptr || sizes.ndim() != 1 || static_cast<size_t>(sizes.shape(0)) != v_.num_leaves) {
        throw std::invalid_argument("leaf_sizes needs leaf_allowed and must have shape (num_leaves,)");
      }
      p.leaf_sizes = sizes.data();
    }
    TreeAhStats stats;
    {
      py::gil_scoped_release release;
      searcher_->search(queries.data(), nq, p, ids.mutable_data(), distances.mutable_data(), &stats);
    }
    last_stats_ = stats;  // written with the GIL held
    return py::make_tuple(ids, distances);
  }

  py::dict last_counters() const {
    py::dict counters;
    counters["entries_scored"] = last_stats_.entries_scored;
    counters["candidates_reordered"] = last_stats_.candidates_reordered;
    counters["candidates_rescored_exactly"] = last_stats_.candidates_rescored_exactly;
    counters["leaves_scanned"] = last_stats_.leaves_scanned;
    counters["filter_checks"] = last_stats_.filter_checks;
    return counters;
  }

 private:
  py::dict arrays_;  // keeps every array the view points into alive
  std::unique_ptr<TreeAhSearcher> searcher_;
  TreeAhStats last_stats_;
  TreeAhView v_;
};

/// The entry tables of an index's arrays dict (checked), and their sizes.
LeafEntries leaf_entries_of(const py::dict& arrays, size_t num_blocks) {
  if (num_blocks == 0) throw std::invalid_argument("num_blocks must be positive");
  size_t offsets = 0, entries = 0, bytes = 0;
  LeafEntries in;
  in.leaf_offsets = array_of<int64_t>(arrays, "leaf_offsets", true, kAnySize, &offsets);
  if (offsets == 0) throw std::invalid_argument("leaf_offsets must hold num_leaves + 1 entries");
  in.num_leaves = offsets - 1;
  in.num_blocks = num_blocks;
  in.group_offsets = array_of<int64_t>(arrays, "leaf_group_offsets", true, offsets);
  in.entry_ids = array_of<int32_t>(arrays, "entry_ids", true, kAnySize, &entries);
  in.packed = array_of<uint8_t>(arrays, "packed_codes", true, kAnySize, &bytes);
  in.values = array_of<float>(arrays, "entry_sq_norms", false, entries);
  const size_t group_bytes = num_blocks * 16;
  if (bytes % group_bytes != 0) throw std::invalid_argument("packed_codes is not a whole number of groups");
  check_leaf_entries(in, entries, bytes / group_bytes);
  return in;
}

/// Output arrays sized by a plan; returned as the dict of the new tables.
struct LeafOutputs {
  py::array_t<int64_t> leaf_offsets, group_offsets;
  Int32Array entry_ids;
  ByteArray packed;
  std::optional<FloatArray> values;
  LeafEntriesOut out;

  LeafOutputs(const LeafPlan& plan, size_t num_blocks, bool with_values)
      : leaf_offsets(static_cast<py::ssize_t>(plan.leaf_offsets.size())),
        group_offsets(static_cast<py::ssize_t>(plan.group_offsets.size())),
        entry_ids(static_cast<py::ssize_t>(plan.entries())),
        packed(static_cast<py::ssize_t>(plan.groups() * num_blocks * 16)) {
    std::copy(plan.leaf_offsets.begin(), plan.leaf_offsets.end(), leaf_offsets.mutable_data());
    std::copy(plan.group_offsets.begin(), plan.group_offsets.end(), group_offsets.mutable_data());
    out.entry_ids = entry_ids.mutable_data();
    out.packed = packed.mutable_data();
    if (with_values) {
      values.emplace(static_cast<py::ssize_t>(plan.entries()));
      out.values = values->mutable_data();
    }
  }

  py::dict dict() const {
    py::dict d;
    d["leaf_offsets"] = leaf_offsets;
    d["leaf_group_offsets"] = group_offsets;
    d["entry_ids"] = entry_ids;
    d["packed_codes"] = packed;
    if (values) d["entry_sq_norms"] = *values;
    return d;
  }
};

py::dict leaf_append_py(const py::dict& arrays, size_t num_blocks, const Int32Array& new_ids,
                        const py::array_t<int64_t, py::array::c_style>& new_leaves, const ByteArray& new_codes,
                        const std::optional<FloatArray>& new_values, size_t num_threads) {
  const LeafEntries in = leaf_entries_of(arrays, num_blocks);
  const size_t m = new_ids.size();
  if (new_ids.ndim() != 1 || new_leaves.ndim() != 1 || static_cast<size_t>(new_leaves.size()) != m) {
    throw std::invalid_argument("new_ids and new_leaves must be 1-D of one length");
  }
  if (new_codes.ndim() != 2 || static_cast<size_t>(new_codes.shape(0)) != m ||
      static_cast<size_t>(new_codes.shape(1)) != num_blocks) {
    throw std::invalid_argument("new_codes must have shape (" + std::to_string(m) + ", " + std::to_string(num_blocks) +
                                "), got " + shape_str(new_codes));
  }
  if (static_cast<bool>(in.values) != static_cast<bool>(new_values) ||
      (new_values && static_cast<size_t>(new_values->size()) != m)) {
    throw std::invalid_argument("new_values must be given, one per new entry, exactly when the index has entry_sq_norms");
  }
  for (size_t i = 0; i < m; ++i) {
    if (new_ids.data()[i] < 0) throw std::invalid_argument("new_ids must be >= 0");
  }
  LeafPlan plan = plan_append(in, new_leaves.data(), m);
  LeafOutputs out(plan, num_blocks, in.values != nullptr);
  {
    py::gil_scoped_release release;
    append_entries(in, plan, new_ids.data(), new_codes.data(), new_values ? new_values->data() : nullptr, num_threads,
                   out.out);
  }
  return out.dict();
}

py::dict leaf_select_py(const py::dict& arrays, size_t num_blocks,
                        const py::array_t<int64_t, py::array::c_style>& renumber, size_t num_threads) {
  const LeafEntries in = leaf_entries_of(arrays, num_blocks);
  if (renumber.ndim() != 1) throw std::invalid_argument("renumber must be 1-D");
  LeafPlan plan = plan_select(in, renumber.data(), renumber.size());
  LeafOutputs out(plan, num_blocks, in.values != nullptr);
  {
    py::gil_scoped_release release;
    select_entries(in, plan, renumber.data(), num_threads, out.out);
  }
  return out.dict();
}

py::object leaf_prune_py(const py::dict& arrays, size_t num_blocks, const ByteArray& live,
                         const std::optional<ByteArray>& candidates, double min_dead_fraction, size_t num_threads) {
  const LeafEntries in = leaf_entries_of(arrays, num_blocks);
  if (live.ndim() != 1) throw std::invalid_argument("live must be 1-D");
  if (candidates && (candidates->ndim() != 1 || static_cast<size_t>(candidates->size()) != in.num_leaves)) {
    throw std::invalid_argument("candidates must hold one flag per leaf (" + std::to_string(in.num_leaves) + ")");
  }
  if (!(min_dead_fraction >= 0.0 && min_dead_fraction <= 1.0)) {
    throw std::invalid_argument("min_dead_fraction must be in [0, 1]");
  }
  LeafPlan plan = plan_prune(in, live.data(), live.size(), candidates ? candidates->data() : nullptr, min_dead_fraction);
  if (plan.entries() == in.leaf_offsets[in.num_leaves]) return py::none();
  LeafOutputs out(plan, num_blocks, in.values != nullptr);
  {
    py::gil_scoped_release release;
    prune_entries(in, plan, live.data(), num_threads, out.out);
  }
  return out.dict();
}

}  // namespace

void bind_index(py::module_& m) {
  m.def("leaf_append", &leaf_append_py, py::arg("arrays"), py::arg("num_blocks"), py::arg("new_ids"),
        py::arg("new_leaves"), py::arg("new_codes"), py::arg("new_values"), py::arg("num_threads"),
        "The entry tables of `arrays` (leaf_offsets, leaf_group_offsets, entry_ids, packed_codes and, when "
        "present, entry_sq_norms) with new entries appended to their leaves: a dict of new arrays. Leaves "
        "without new entries are copied as bytes; a touched leaf repacks only its last partial group.");
  m.def("leaf_select", &leaf_select_py, py::arg("arrays"), py::arg("num_blocks"), py::arg("renumber"),
        py::arg("num_threads"),
        "The entry tables of `arrays` keeping the entries whose point p has renumber[p] >= 0, renumbered: "
        "a dict of new arrays. Leaves that lose no entry are copied as bytes.");
  m.def("leaf_prune", &leaf_prune_py, py::arg("arrays"), py::arg("num_blocks"), py::arg("live"),
        py::arg("candidates"), py::arg("min_dead_fraction"), py::arg("num_threads"),
        "The entry tables of `arrays` without the entries of dead points (live[p] == 0) in each leaf, among "
        "`candidates` (a uint8 flag per leaf, or None for all), whose dead entries are at least "
        "min_dead_fraction of its entries: a dict of new arrays, or None when no leaf qualifies. Ids are "
        "kept; other leaves are copied as bytes, dead entries included.");
  py::class_<TreeAhHandle>(m, "TreeAhHandle")
      .def(py::init<py::dict, const std::string&, size_t, size_t, size_t, size_t, bool>(), py::arg("arrays"),
           py::arg("metric"), py::arg("n"), py::arg("dim"), py::arg("num_leaves"), py::arg("dims_per_block"),
           py::arg("spilled"))
      .def("search", &TreeAhHandle::search, py::arg("queries"), py::arg("k"), py::arg("leaves_to_search"),
           py::arg("pre_reorder"), py::arg("num_threads"), py::arg("overretrieve_factor") = 1.5,
           py::arg("raw_scores") = false, py::arg("filter_bits") = py::none(), py::arg("filter_table") = py::none(),
           py::arg("filter_of_query") = py::none(), py::arg("row_ids") = py::none(),
           py::arg("leaf_allowed") = py::none(), py::arg("exact_reorder") = 0,
           py::arg("leaf_sizes") = py::none())
      .def("last_counters", &TreeAhHandle::last_counters,
           "Work done by the last search: entries scored by LUT16, candidates reordered, leaves scanned.");
}
