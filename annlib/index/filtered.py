"""Filtered search, for every index kind: the filters resolved, the route planned, both routes run.

``Index.search(..., filter=...)`` and ``search_batched`` come here. The queries of each route go
to it together: the **index** route is the kind's search with the filters inside it (one core call
for all its queries, per-query filters included); the **exact** route gathers each filter's
allowed points and scores them exactly. A query that the index route leaves short of ``k``
results although its filter allows ``k`` points (or may: a predicate's count is an estimate) is
rerun on the exact route, so a query returns ``k`` results whenever ``k`` points pass.
"""

from __future__ import annotations

import numpy as np

from annlib import _core, _validate
from annlib._vectors import normalize_rows
from annlib.filter import Resolved, query_filters
from annlib.index import planner


def search(index, snap, queries: np.ndarray, k: int, params, num_threads: int, filter_value, route: str,
           mode: str) -> tuple[np.ndarray, np.ndarray, planner.FilterPlan]:
    """(user ids, distances, plan) of a filtered search, padded to ``k`` with id -1 and the worst distance."""
    route = _validate.choice(route, "filter_route", planner.ROUTES)
    nq = queries.shape[0]
    filters, of_query = query_filters(filter_value, nq)
    resolved = [Resolved.everything(snap.ids) if f is None else f.resolve(snap, num_threads) for f in filters]
    q_filter = np.zeros(nq, dtype=np.int64) if of_query is None else of_query.astype(np.int64)
    n = snap.ids.num_live
    if n and nq:
        uses = np.bincount(q_filter, minlength=len(resolved))
        resolved = [r.materialized(snap.ids, num_threads)
                    if planner.materialize(index, snap, r, int(uses[i]), min(k, n), params, mode, num_threads) else r
                    for i, r in enumerate(resolved)]
    ids = np.full((nq, k), -1, dtype=np.int64)
    distances = np.full((nq, k), _validate.worst_distance(index.metric), dtype=np.float32)
    allowed = np.array([r.allowed for r in resolved])[q_filter]
    estimated = np.array([r.estimated for r in resolved])[q_filter]
    found_k = min(k, n)
    exact_ok = index._exact_vectors(snap, np.empty(0, dtype=np.int64)) is not None
    if found_k == 0 or nq == 0:
        empty = np.array([], dtype=object)
        return ids, distances, planner.FilterPlan(empty, empty, allowed, estimated, 0, route != "auto", {})
    routes_of_filter, predicted = planner.choose(index, snap, resolved, found_k, params, route, mode, num_threads,
                                                 exact_ok)
    planned = np.array(routes_of_filter, dtype=object)[q_filter]
    final = planned.copy()
    rows = np.full((nq, found_k), -1, dtype=np.int64)
    dist = np.full((nq, found_k), _validate.worst_distance(index.metric), dtype=np.float32)

    on_index = np.flatnonzero(planned == "index")
    fallback = 0
    if on_index.size:
        used, local = np.unique(q_filter[on_index], return_inverse=True)
        group = [resolved[f] for f in used]
        if all(g.passes_all for g in group):  # nothing to test: the plain search
            r, d = index._search(snap, queries[on_index], found_k, params, num_threads)
        else:
            r, d = index._search_filtered(snap, queries[on_index], found_k, params, num_threads, group,
                                          None if len(used) == 1 else local.astype(np.int32))
        rows[on_index], dist[on_index] = r, d
        # Short of k although k points (may) pass: rerun exactly.
        short = (r[:, -1] < 0) & ((allowed[on_index] >= found_k) | estimated[on_index])
        if short.any() and exact_ok:
            final[on_index[short]] = "exact"
            fallback = int(short.sum())

    on_exact = np.flatnonzero(final == "exact")
    for f in np.unique(q_filter[on_exact]):
        members = on_exact[q_filter[on_exact] == f]
        allowed_rows = resolved[f].allowed_rows(snap.ids, num_threads)
        rows[members], dist[members] = exact_rows(index, snap, queries[members], found_k, allowed_rows, num_threads)
    ids[:, :found_k] = snap.ids.to_user(rows)
    distances[:, :found_k] = dist
    plan = planner.FilterPlan(final, planned, allowed, estimated, fallback, route != "auto", predicted)
    return ids, distances, plan


def exact_rows(index, snap, queries: np.ndarray, k: int, rows: np.ndarray, num_threads: int):
    """(rows, distances) of the exact ``k`` best among ``rows`` (sorted row numbers), padded with -1."""
    nq = queries.shape[0]
    out_rows = np.full((nq, k), -1, dtype=np.int64)
    out_dist = np.full((nq, k), _validate.worst_distance(index.metric), dtype=np.float32)
    if len(rows) == 0 or nq == 0:
        return out_rows, out_dist
    vectors = index._exact_vectors(snap, rows)
    found, dist = scan_vectors(index, vectors, queries, min(k, len(rows)), num_threads)
    out_rows[:, : found.shape[1]] = np.where(found >= 0, rows[np.maximum(found, 0)], -1)
    out_dist[:, : found.shape[1]] = dist
    return out_rows, out_dist


def scan_vectors(index, vectors: np.ndarray, queries: np.ndarray, k: int, num_threads: int, **core_filters):
    """Exact search of ``queries`` (user space) over ``vectors`` (the index's stored space)."""
    if index.metric == "cosine":
        queries = normalize_rows(queries)
    l2 = index.metric == "squared_l2"
    norms = _core.squared_norms(vectors) if l2 else None
    return _core.exact_search(vectors, norms, queries, k, "squared_l2" if l2 else "dot", num_threads, **core_filters)
