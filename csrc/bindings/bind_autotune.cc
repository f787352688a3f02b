// Binding of the autotuner's statistics pass (csrc/core/autotune_stats.h). Takes the
// index's array dict like TreeAhHandle does; shapes in, pointers through, GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "core/autotune_stats.h"
#include "bindings/array_view.h"
#include "core/tree_ah_search.h"

namespace py = pybind11;
using namespace annlib;
using namespace annlib_bindings;

namespace {

py::tuple ah_ranks_py(const py::dict& arrays, const std::string& metric, size_t n, size_t dim,
                                 size_t num_leaves, size_t dims_per_block, bool spilled,
                                 const py::array_t<float, py::array::c_style | py::array::forcecast>& queries,
                                 const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& truth,
                                 const py::object& exclude,
                                 const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& t1_grid,
                                 size_t max_rank, size_t num_threads) {
  const TreeAhView v = tree_ah_view(arrays, metric, n, dim, num_leaves, dims_per_block, spilled);
  if (queries.ndim() != 2 || static_cast<size_t>(queries.shape(1)) != dim) {
    throw std::invalid_argument("queries must have shape (nq, dim)");
  }
  const size_t nq = queries.shape(0);
  if (truth.ndim() != 2 || static_cast<size_t>(truth.shape(0)) != nq) {
    throw std::invalid_argument("truth must have shape (nq, k)");
  }
  if (t1_grid.ndim() != 1 || t1_grid.shape(0) == 0) throw std::invalid_argument("t1_grid must be a non-empty 1-D array");
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> exclude_array;
  if (!exclude.is_none()) {
    exclude_array = exclude.cast<py::array_t<int64_t, py::array::c_style | py::array::forcecast>>();
    if (exclude_array.ndim() != 1 || static_cast<size_t>(exclude_array.shape(0)) != nq) {
      throw std::invalid_argument("exclude must have shape (nq,)");
    }
  }
  const size_t k = truth.shape(1), grid = t1_grid.shape(0);
  py::array_t<int32_t> out({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(grid)});
  py::array_t<int32_t> out_entry({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(grid)});
  AhRankArgs a;
  a.queries = queries.data();
  a.num_queries = nq;
  a.truth = truth.data();
  a.k = k;
  a.exclude = exclude.is_none() ? nullptr : exclude_array.data();
  a.t1_grid = t1_grid.data();
  a.grid_size = grid;
  a.max_rank = max_rank;
  a.num_threads = num_threads;
  a.out_ranks = out.mutable_data();
  a.out_entry_ranks = out_entry.mutable_data();
  {
    py::gil_scoped_release release;
    TreeAhSearcher searcher(v);  // derives the transposed codebook the LUT is built from
    a.searcher = &searcher;
    ah_ranks(a);
  }
  return py::make_tuple(out, out_entry);
}

}  // namespace

void bind_autotune(py::module_& m) {
  m.def("autotune_ah_ranks", &ah_ranks_py, py::arg("arrays"), py::arg("metric"), py::arg("n"), py::arg("dim"),
        py::arg("num_leaves"), py::arg("dims_per_block"), py::arg("spilled"), py::arg("queries"), py::arg("truth"),
        py::arg("exclude"), py::arg("t1_grid"), py::arg("max_rank"), py::arg("num_threads"),
        "Rank (1-based) of each true neighbor among the unique AH candidates of the t1 best leaves, for each t1 "
        "of the grid (max_rank + 1 when deeper or not probed), and the position of its best copy among all "
        "candidate entries (0 = beyond). Two arrays of shape (nq, k, len(t1_grid)).");
}
