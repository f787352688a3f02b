// Bindings of the tree-AH search: a handle that keeps the numpy arrays (possibly
// memory-mapped) alive and exposes them to the core as a TreeAhView.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <memory>
#include <vector>

#include "bindings/array_view.h"
#include "bindings/filter_args.h"
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
                   const py::object& row_ids, const py::object& leaf_allowed) {
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

}  // namespace

void bind_index(py::module_& m) {
  py::class_<TreeAhHandle>(m, "TreeAhHandle")
      .def(py::init<py::dict, const std::string&, size_t, size_t, size_t, size_t, bool>(), py::arg("arrays"),
           py::arg("metric"), py::arg("n"), py::arg("dim"), py::arg("num_leaves"), py::arg("dims_per_block"),
           py::arg("spilled"))
      .def("search", &TreeAhHandle::search, py::arg("queries"), py::arg("k"), py::arg("leaves_to_search"),
           py::arg("pre_reorder"), py::arg("num_threads"), py::arg("overretrieve_factor") = 1.5,
           py::arg("raw_scores") = false, py::arg("filter_bits") = py::none(), py::arg("filter_table") = py::none(),
           py::arg("filter_of_query") = py::none(), py::arg("row_ids") = py::none(),
           py::arg("leaf_allowed") = py::none())
      .def("last_counters", &TreeAhHandle::last_counters,
           "Work done by the last search: entries scored by LUT16, candidates reordered, leaves scanned.");
}
