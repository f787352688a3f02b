// Bindings of the tree-AH search: a handle that keeps the numpy arrays (possibly
// memory-mapped) alive and exposes them to the core as a TreeAhView.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <memory>
#include <vector>

#include "core/tree_ah_search.h"

namespace py = pybind11;
using namespace annlib;

namespace {

template <typename T>
const T* data_of(const py::dict& arrays, const char* name, bool required) {
  if (!arrays.contains(name) || arrays[name].is_none()) {
    if (required) throw std::invalid_argument(std::string("tree-AH index is missing array '") + name + "'");
    return nullptr;
  }
  auto array = arrays[name].cast<py::array>();
  if (!py::isinstance<py::array_t<T>>(array) || !(array.flags() & py::array::c_style)) {
    throw std::invalid_argument(std::string("array '") + name + "' has the wrong dtype or is not C-contiguous");
  }
  return static_cast<const T*>(array.data());
}

class TreeAhHandle {
 public:
  TreeAhHandle(py::dict arrays, const std::string& metric, size_t n, size_t dim, size_t num_leaves,
               size_t dims_per_block, bool spilled)
      : arrays_(std::move(arrays)) {
    v_.metric = metric == "squared_l2" ? Metric::kSquaredL2 : Metric::kDot;
    v_.n = n;
    v_.dim = dim;
    v_.num_leaves = num_leaves;
    v_.dims_per_block = dims_per_block;
    v_.num_blocks = (dim + dims_per_block - 1) / dims_per_block;
    v_.spilled = spilled;
    const bool l2 = v_.metric == Metric::kSquaredL2;
    v_.centers = data_of<float>(arrays_, "centers", true);
    v_.center_sq_norms = data_of<float>(arrays_, "center_sq_norms", l2);
    v_.codebook = data_of<float>(arrays_, "codebook", true);
    v_.leaf_offsets = data_of<int64_t>(arrays_, "leaf_offsets", true);
    v_.leaf_group_offsets = data_of<int64_t>(arrays_, "leaf_group_offsets", true);
    v_.entry_ids = data_of<int32_t>(arrays_, "entry_ids", true);
    v_.packed_codes = data_of<uint8_t>(arrays_, "packed_codes", true);
    v_.entry_sq_norms = data_of<float>(arrays_, "entry_sq_norms", l2);
    v_.reorder_float = data_of<float>(arrays_, "reorder_float", false);
    v_.reorder_int8 = data_of<int8_t>(arrays_, "reorder_int8", false);
    v_.reorder_int8_inv_scale = data_of<float>(arrays_, "reorder_int8_inv_scale", v_.reorder_int8 != nullptr);
    v_.point_sq_norms = data_of<float>(arrays_, "point_sq_norms", l2);
    searcher_ = std::make_unique<TreeAhSearcher>(v_);
  }

  py::tuple search(const py::array_t<float, py::array::c_style>& queries, size_t k, size_t leaves_to_search,
                   size_t pre_reorder, size_t num_threads, double overretrieve_factor) {
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
           py::arg("pre_reorder"), py::arg("num_threads"), py::arg("overretrieve_factor") = 1.5)
      .def("last_counters", &TreeAhHandle::last_counters,
           "Work done by the last search: entries scored by LUT16 and candidates reordered.");
}
