// Which points a query may return: a per-point bitmap, a compiled predicate over user
// ids, or both. The core never sees Python: a predicate arrives as a plain C function
// pointer (numba's cfunc.address) and an opaque user data pointer, and is called from
// the search threads as they are (the GIL is released by the bindings).
#pragma once

#include <cstddef>
#include <cstdint>

namespace annlib {

/// bool f(int64 user_id): numba's cfunc of signature boolean(int64).
using PredicateFn = bool (*)(int64_t);
/// bool f(int64 user_id, void* data): numba's cfunc of signature boolean(int64, voidptr).
using PredicateDataFn = bool (*)(int64_t, void*);

/// One filter over the points (rows) of an index. Every part is optional; a point passes
/// when it passes every part given. allows() is what a scan calls, and only for points
/// that would otherwise enter its top-k, so a predicate is called lazily.
struct PointFilter {
  const uint8_t* bits = nullptr;  ///< bit (row & 7) of byte row >> 3: 1 = allowed (numpy packbits, little order)
  PredicateFn predicate = nullptr;
  PredicateDataFn predicate_with_data = nullptr;
  void* data = nullptr;              ///< passed to predicate_with_data
  const int64_t* row_ids = nullptr;  ///< user id of each row: what a predicate sees

  bool allows(size_t row) const {
    if (bits != nullptr && ((bits[row >> 3] >> (row & 7)) & 1u) == 0) return false;
    if (predicate != nullptr) return predicate(row_ids[row]);
    if (predicate_with_data != nullptr) return predicate_with_data(row_ids[row], data);
    return true;
  }
};

/// The filters of a call's queries: none, one shared by all, or one of `filters` per query
/// (filter_of_query[q] indexes it, so queries that share a filter share its tables).
struct QueryFilters {
  const PointFilter* filters = nullptr;      ///< nullptr: no filtering
  const int32_t* filter_of_query = nullptr;  ///< nullptr: filters[0] for every query

  /// Index into `filters` of query q, or -1 without filtering.
  int64_t index_of(size_t q) const {
    if (filters == nullptr) return -1;
    return filter_of_query == nullptr ? 0 : filter_of_query[q];
  }
  const PointFilter* of(size_t q) const {
    const int64_t i = index_of(q);
    return i < 0 ? nullptr : filters + i;
  }
  /// The filters of queries [q0, ...): the same tables, the per-query index shifted.
  QueryFilters from(size_t q0) const {
    QueryFilters out = *this;
    if (filter_of_query != nullptr) out.filter_of_query += q0;
    return out;
  }
};

/// out[i] = filter.allows(rows[i]) for i < count, on num_threads threads (0 = all).
/// What the exact route and the planner's selectivity sample use to evaluate a predicate.
void evaluate_filter(const PointFilter& filter, const int64_t* rows, size_t count, size_t num_threads,
                     uint8_t* out);

}  // namespace annlib
