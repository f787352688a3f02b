// The filters of one call, from the arrays annlib/filter.py lays out: no logic beyond
// turning them into PointFilter structs (and checking their shapes). Bindings only.
//
//   bits            uint8 (F, ceil(rows / 8)): allowed rows, numpy packbits(bitorder="little"), or None
//   table           uint64 (F, 4): has_bits, predicate address, user data address, predicate kind
//                   (0 none, 1 boolean(int64), 2 boolean(int64, voidptr)); None = bits alone
//   filter_of_query int32 (nq,): the filter of each query, or None when filter 0 serves all
//   row_ids         int64 (rows,): the user id of each row, what a predicate sees
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/point_filter.h"

namespace annlib_bindings {

namespace py = pybind11;

struct FilterArgs {
  std::vector<annlib::PointFilter> filters;
  std::vector<int32_t> filter_of_query;
  annlib::QueryFilters query_filters;  // points into the two vectors above
  // The arrays the filters point into, kept alive for the call.
  py::array_t<uint8_t, py::array::c_style> bits;
  py::array_t<int64_t, py::array::c_style> row_ids;
};

/// Fills `out` (left empty when every argument is None). rows: the index's rows; nq: the queries.
inline void make_filters(FilterArgs& out, const py::object& bits, const py::object& table,
                         const py::object& filter_of_query, const py::object& row_ids, size_t rows, size_t nq) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("filter: " + what); };
  if (bits.is_none() && table.is_none()) {
    if (!filter_of_query.is_none()) fail("filter_of_query without filters");
    return;
  }
  size_t count = 0;
  const size_t row_bytes = (rows + 7) / 8;
  if (!bits.is_none()) {
    out.bits = bits.cast<py::array_t<uint8_t, py::array::c_style>>();
    if (out.bits.ndim() != 2 || static_cast<size_t>(out.bits.shape(1)) != row_bytes) {
      fail("bits must have shape (filters, " + std::to_string(row_bytes) + ")");
    }
    count = static_cast<size_t>(out.bits.shape(0));
  }
  py::array_t<uint64_t, py::array::c_style> spec;
  if (!table.is_none()) {
    spec = table.cast<py::array_t<uint64_t, py::array::c_style>>();
    if (spec.ndim() != 2 || spec.shape(1) != 4) fail("table must have shape (filters, 4)");
    if (!bits.is_none() && static_cast<size_t>(spec.shape(0)) != count) fail("bits and table disagree in filters");
    count = static_cast<size_t>(spec.shape(0));
  }
  if (count == 0) fail("no filters");
  if (!row_ids.is_none()) {
    out.row_ids = row_ids.cast<py::array_t<int64_t, py::array::c_style>>();
    if (out.row_ids.ndim() != 1 || static_cast<size_t>(out.row_ids.shape(0)) != rows) {
      fail("row_ids must have shape (" + std::to_string(rows) + ",)");
    }
  }
  out.filters.resize(count);
  for (size_t f = 0; f < count; ++f) {
    annlib::PointFilter& pf = out.filters[f];
    const bool has_bits = spec.size() == 0 ? true : spec.at(f, 0) != 0;
    if (has_bits) {
      if (bits.is_none()) fail("a filter has bits but none were given");
      pf.bits = out.bits.data() + f * row_bytes;
    }
    if (spec.size() == 0) continue;
    const uint64_t address = spec.at(f, 1), kind = spec.at(f, 3);
    if (kind == 0) continue;
    if (address == 0 || kind > 2) fail("predicate " + std::to_string(f) + " has no address or an unknown kind");
    if (row_ids.is_none()) fail("predicates need row_ids");
    pf.row_ids = out.row_ids.data();
    if (kind == 1) {
      pf.predicate = reinterpret_cast<annlib::PredicateFn>(static_cast<uintptr_t>(address));
    } else {
      pf.predicate_with_data = reinterpret_cast<annlib::PredicateDataFn>(static_cast<uintptr_t>(address));
      pf.data = reinterpret_cast<void*>(static_cast<uintptr_t>(spec.at(f, 2)));
    }
  }
  out.query_filters.filters = out.filters.data();
  if (!filter_of_query.is_none()) {
    auto of = filter_of_query.cast<py::array_t<int32_t, py::array::c_style>>();
    if (of.ndim() != 1 || static_cast<size_t>(of.shape(0)) != nq) fail("filter_of_query must have shape (nq,)");
    out.filter_of_query.assign(of.data(), of.data() + nq);
    for (int32_t f : out.filter_of_query) {
      if (f < 0 || static_cast<size_t>(f) >= count) fail("filter_of_query names a filter that does not exist");
    }
    out.query_filters.filter_of_query = out.filter_of_query.data();
  } else if (count != 1) {
    fail("several filters need filter_of_query");
  }
}

}  // namespace annlib_bindings
