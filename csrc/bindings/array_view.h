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

constexpr size_t kAnySize = static_cast<size_t>(-1);

/// The data pointer of arrays[name], checked for dtype, C order and (unless kAnySize) its
/// element count; nullptr when absent and optional. *size receives the element count.
template <typename T>
const T* array_of(const py::dict& arrays, const char* name, bool required, size_t expected = kAnySize,
                  size_t* size = nullptr) {
  if (!arrays.contains(name) || arrays[name].is_none()) {
    if (required) throw std::invalid_argument(std::string("tree-AH index is missing array '") + name + "'");
    return nullptr;
  }
  auto array = arrays[name].cast<py::array>();
  if (!py::isinstance<py::array_t<T>>(array) || !(array.flags() & py::array::c_style)) {
    throw std::invalid_argument(std::string("array '") + name + "' has the wrong dtype or is not C-contiguous");
  }
  const size_t count = static_cast<size_t>(array.size());
  if (expected != kAnySize && count != expected) {
    throw std::invalid_argument(std::string("array '") + name + "' has " + std::to_string(count) +
                                " elements, expected " + std::to_string(expected));
  }
  if (size != nullptr) *size = count;
  return static_cast<const T*>(array.data());
}

/// n * m, or an invalid_argument naming what when it overflows size_t.
inline size_t checked_product(size_t n, size_t m, const char* what) {
  if (m != 0 && n > static_cast<size_t>(-1) / m) throw std::invalid_argument(std::string(what) + " overflows size_t");
  return n * m;
}

/// A TreeAhView over the arrays of a saved or built index (the dict must outlive the view).
///
/// Takes only the arrays the configuration names: the squared norms for squared_l2 only,
/// and the reordering rows: float32, int8, or both (int8 first, float32 for the exact
/// stage; squared_l2 then needs the int8 rows' own norms). Every array's size is
/// checked against n, dim and num_leaves here; the value invariants (offsets, entry ids)
/// are checked by TreeAhSearcher's constructor.
inline annlib::TreeAhView tree_ah_view(const py::dict& arrays, const std::string& metric, size_t n, size_t dim,
                                       size_t num_leaves, size_t dims_per_block, bool spilled) {
  if (n == 0 || dim == 0 || num_leaves == 0 || dims_per_block == 0) {
    throw std::invalid_argument("tree-AH index needs n, dim, num_leaves and dims_per_block > 0");
  }
  annlib::TreeAhView v;
  v.metric = parse_metric(metric);
  v.n = n;
  v.dim = dim;
  v.num_leaves = num_leaves;
  v.dims_per_block = dims_per_block;
  v.num_blocks = dim / dims_per_block + (dim % dims_per_block != 0);
  v.spilled = spilled;
  const bool l2 = v.metric == annlib::Metric::kSquaredL2;
  const size_t n_by_dim = checked_product(n, dim, "n * dim");
  v.centers = array_of<float>(arrays, "centers", true, checked_product(num_leaves, dim, "num_leaves * dim"));
  v.codebook = array_of<float>(arrays, "codebook", true, checked_product(16, dim, "16 * dim"));
  v.leaf_offsets = array_of<int64_t>(arrays, "leaf_offsets", true, num_leaves + 1);
  v.leaf_group_offsets = array_of<int64_t>(arrays, "leaf_group_offsets", true, num_leaves + 1);
  v.entry_ids = array_of<int32_t>(arrays, "entry_ids", true, kAnySize, &v.num_entries);
  v.packed_codes = array_of<uint8_t>(arrays, "packed_codes", true, kAnySize, &v.packed_bytes);
  if (l2) {
    v.center_sq_norms = array_of<float>(arrays, "center_sq_norms", true, num_leaves);
    v.entry_sq_norms = array_of<float>(arrays, "entry_sq_norms", true, v.num_entries);
    v.point_sq_norms = array_of<float>(arrays, "point_sq_norms", true, n);
  }
  v.reorder_int8 = array_of<int8_t>(arrays, "reorder_int8", false, n_by_dim);
  v.reorder_float = array_of<float>(arrays, "reorder_float", false, n_by_dim);
  if (v.reorder_int8 != nullptr) {
    v.reorder_int8_inv_scale = array_of<float>(arrays, "reorder_int8_inv_scale", true, dim);
    v.reorder_int8_offset = array_of<float>(arrays, "reorder_int8_offset", false, dim);
    v.reorder_int8_row_scale = array_of<float>(arrays, "reorder_int8_row_scale", false, n);
    // With both row sets, point_sq_norms are the float32 rows' norms: the int8 stage needs its own.
    if (l2 && v.reorder_float != nullptr) v.int8_sq_norms = array_of<float>(arrays, "reorder_int8_sq_norms", true, n);
  }
  v.live = array_of<uint8_t>(arrays, "live", false, n);
  return v;
}

}  // namespace annlib_bindings
