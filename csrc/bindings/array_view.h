// Helpers shared by the binding files: numpy array types, shape checks with clear
// messages, and the TreeAhView over a dict of index arrays. Bindings only.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/metric.h"
#include "core/tree_ah_search.h"

namespace annlib_bindings {

namespace py = pybind11;

using ByteArray = py::array_t<uint8_t, py::array::c_style>;
using FloatArray = py::array_t<float, py::array::c_style>;
using Int32Array = py::array_t<int32_t, py::array::c_style>;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline void require_2d(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D, got shape " + shape_str(a));
}

inline void require_same_shape(const py::array& a, const char* a_name, const py::array& b, const char* b_name) {
  if (a.ndim() != b.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), b.shape())) {
    throw std::invalid_argument(std::string(a_name) + " and " + b_name + " must have the same shape, got " +
                                shape_str(a) + " and " + shape_str(b));
  }
}

inline annlib::Metric parse_metric(const std::string& name) {
  if (name == "dot") return annlib::Metric::kDot;
  if (name == "squared_l2") return annlib::Metric::kSquaredL2;
  throw std::invalid_argument("core metric must be 'dot' or 'squared_l2', got '" + name + "'");
}

/// The data pointer of arrays[name], checked for dtype and C order; nullptr when absent and optional.
template <typename T>
const T* array_of(const py::dict& arrays, const char* name, bool required) {
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

/// A TreeAhView over the arrays of a saved or built index (the dict must outlive the view).
inline annlib::TreeAhView tree_ah_view(const py::dict& arrays, const std::string& metric, size_t n, size_t dim,
                                       size_t num_leaves, size_t dims_per_block, bool spilled) {
  annlib::TreeAhView v;
  v.metric = parse_metric(metric);
  v.n = n;
  v.dim = dim;
  v.num_leaves = num_leaves;
  v.dims_per_block = dims_per_block;
  v.num_blocks = (dim + dims_per_block - 1) / dims_per_block;
  v.spilled = spilled;
  const bool l2 = v.metric == annlib::Metric::kSquaredL2;
  v.centers = array_of<float>(arrays, "centers", true);
  v.center_sq_norms = array_of<float>(arrays, "center_sq_norms", l2);
  v.codebook = array_of<float>(arrays, "codebook", true);
  v.leaf_offsets = array_of<int64_t>(arrays, "leaf_offsets", true);
  v.leaf_group_offsets = array_of<int64_t>(arrays, "leaf_group_offsets", true);
  v.entry_ids = array_of<int32_t>(arrays, "entry_ids", true);
  v.packed_codes = array_of<uint8_t>(arrays, "packed_codes", true);
  v.entry_sq_norms = array_of<float>(arrays, "entry_sq_norms", l2);
  v.reorder_float = array_of<float>(arrays, "reorder_float", false);
  v.reorder_int8 = array_of<int8_t>(arrays, "reorder_int8", false);
  v.reorder_int8_inv_scale = array_of<float>(arrays, "reorder_int8_inv_scale", v.reorder_int8 != nullptr);
  v.point_sq_norms = array_of<float>(arrays, "point_sq_norms", l2);
  return v;
}

}  // namespace annlib_bindings
