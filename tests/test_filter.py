"""Filtered search (issue 14) on every index kind and filter form, against exact search on real data.

The oracle is exact search (``BruteForce``) over the allowed points alone. The indexes hold user
ids ``2 * row + 1`` (not their rows), so a filter or a predicate that confused the two would fail.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import annlib
from annlib import Filter
from annlib.errors import InvalidTypeError, InvalidValueError, MissingDependencyError

numba = pytest.importorskip("numba")
from numba import types  # noqa: E402

K = 10
NUM_QUERIES = 30
KINDS = ("brute_force", "tree_ah", "jax_brute_force")
FORMS = ("ids", "allow", "deny", "bitmap", "predicate_data", "predicate", "callable")


# ---------------------------------------------------------------------- predicates (compiled once)

@numba.cfunc(types.boolean(types.int64, types.voidptr))
def _attribute_below(user_id, data):
    # data: float64 [threshold, attribute of user id 0, of id 1, ...]
    values = numba.carray(data, (user_id + 2,), dtype=np.float64)
    return values[user_id + 1] < values[0]


@numba.cfunc(types.boolean(types.int64))
def _hashed_tenth(user_id):
    # A fixed pseudo-random 10% of the ids, with no data.
    return ((user_id * 2654435761) % 1000) < 100


def _hashed_tenth_py(user_id: int) -> bool:
    return ((user_id * 2654435761) % 1000) < 100


# ---------------------------------------------------------------------- data and indexes

@pytest.fixture(scope="module")
def data(real_sample):
    return real_sample["train"], real_sample["test"][:NUM_QUERIES]


@pytest.fixture(scope="module")
def user_ids(data):
    return np.arange(len(data[0]), dtype=np.int64) * 2 + 1


def _build(kind: str, vectors: np.ndarray, ids: np.ndarray, metric: str = "cosine"):
    if kind == "brute_force":
        return annlib.BruteForce(vectors, metric, ids=ids)
    if kind == "tree_ah":
        num_leaves = 100 if len(vectors) >= 10_000 else 30
        return annlib.TreeAhIndex(vectors, metric, num_leaves=num_leaves, num_leaves_to_search=num_leaves // 10,
                                  reorder=100, seed=1, ids=ids)
    pytest.importorskip("jax")
    return annlib.JaxBruteForce(vectors, metric, ids=ids)


_INDEXES: dict = {}


@pytest.fixture(params=KINDS)
def index(request, data, user_ids):
    kind = request.param
    if kind not in _INDEXES:
        _INDEXES[kind] = _build(kind, data[0], user_ids)
    return _INDEXES[kind]


def _full_settings(index) -> dict:
    if index.kind == "tree_ah":
        return {"leaves_to_search": index.layout.num_leaves, "pre_reorder_num_neighbors": index.n}
    if index.kind == "jax_brute_force":
        return {"recall_target": 1.0}
    return {}


def _attributes(n_ids: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).random(n_ids)


def _allowed_by_fraction(user_ids: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(allowed user ids, predicate data) for the points whose attribute is below ``fraction``."""
    attrs = _attributes(int(user_ids.max()) + 1)
    data = np.concatenate([[fraction], attrs]).astype(np.float64)
    return user_ids[attrs[user_ids] < fraction], data


def _filter_of(form: str, allowed: np.ndarray, user_ids: np.ndarray, predicate_data: np.ndarray):
    if form == "ids":
        return allowed
    if form == "allow":
        return Filter.allow(allowed)
    if form == "deny":
        return Filter.deny(np.setdiff1d(user_ids, allowed))
    if form == "bitmap":
        mask = np.zeros(int(user_ids.max()) + 1, dtype=bool)
        mask[allowed] = True
        return Filter.bitmap(mask)
    if form == "predicate_data":
        return Filter.predicate(_attribute_below, predicate_data)
    if form == "callable":
        allowed_set = set(allowed.tolist())
        return lambda user_id: user_id in allowed_set
    raise AssertionError(form)


def _exact(vectors, queries, ids, allowed, k, metric="cosine"):
    """Exact search over the allowed points alone: (user ids, distances), padded with -1."""
    rows = np.flatnonzero(np.isin(ids, allowed))
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_dist = np.full((len(queries), k), -np.inf if metric != "squared_l2" else np.inf, dtype=np.float32)
    if len(rows):
        found = annlib.BruteForce(vectors[rows], metric).search_batched(queries, min(k, len(rows)))
        out_ids[:, : found.ids.shape[1]] = ids[rows][found.ids]
        out_dist[:, : found.ids.shape[1]] = found.distances
    return out_ids, out_dist


def _assert_same_neighbours(result, expected_ids, expected_dist):
    """Equal distances, and equal ids except where the oracle's own distances tie."""
    ids, dist = result
    np.testing.assert_allclose(dist, expected_dist, rtol=0, atol=2e-5)
    for row in range(len(ids)):
        differ = np.flatnonzero(ids[row] != expected_ids[row])
        for j in differ:
            ties = np.abs(expected_dist[row] - expected_dist[row, j]) <= 2e-5
            assert ties.sum() > 1, f"query {row} slot {j}: id {ids[row, j]} where exact search has {expected_ids[row, j]}"
        assert set(ids[row][ids[row] >= 0]) <= set(expected_ids[row][expected_ids[row] >= 0]) | set(ids[row][differ])


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, int((t >= 0).sum())) for f, t in zip(found, truth)]
    return float(np.mean(hits))


# ---------------------------------------------------------------------- equal to exact at full settings

@pytest.mark.parametrize("route", ["index", "exact"])
@pytest.mark.parametrize("form", FORMS)
def test_full_settings_equal_exact_search_over_the_allowed_points(index, data, user_ids, form, route):
    vectors, queries = data
    if form == "predicate":
        allowed = user_ids[np.array([_hashed_tenth_py(int(i)) for i in user_ids])]
        f = Filter.predicate(_hashed_tenth)
    else:
        allowed, predicate_data = _allowed_by_fraction(user_ids, 0.1)
        f = _filter_of(form, allowed, user_ids, predicate_data)
    result = index.search_batched(queries, K, filter=f, filter_route=route, **_full_settings(index))
    assert index.last_filter_plan.route == route
    _assert_same_neighbours(result, *_exact(vectors, queries, user_ids, allowed, K))


@pytest.mark.parametrize("route", ["index", "exact"])
def test_single_query_search_takes_a_filter(index, data, user_ids, route):
    vectors, queries = data
    allowed, _ = _allowed_by_fraction(user_ids, 0.05)
    ids, dist = index.search(queries[3], K, filter=allowed, filter_route=route, **_full_settings(index))
    assert ids.shape == (K,)
    expected = _exact(vectors, queries[3:4], user_ids, allowed, K)
    _assert_same_neighbours((ids[None], dist[None]), *expected)


# ---------------------------------------------------------------------- recall at default settings

# Floors of recall@10 at each kind's default search settings, route chosen by the planner; the
# tree-AH index's defaults (10 of 100 leaves, 100 reordered) give about 0.90 unfiltered here.
_FLOORS = {"brute_force": 0.999, "tree_ah": 0.88, "jax_brute_force": 0.95}


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01, 0.001])
def test_recall_floor_at_default_settings(index, data, user_ids, fraction):
    vectors, queries = data
    allowed, _ = _allowed_by_fraction(user_ids, fraction)
    found = index.search_batched(queries, K, filter=Filter.allow(allowed))
    truth, _ = _exact(vectors, queries, user_ids, allowed, K)
    assert _recall(found.ids, truth) >= _FLOORS[index.kind]
    assert np.isin(found.ids[found.ids >= 0], allowed).all()
    # k results whenever k points pass
    assert (found.ids >= 0).sum(axis=1).min() == min(K, len(allowed))


def test_predicate_recall_floor_at_default_settings(index, data, user_ids):
    vectors, queries = data
    allowed, predicate_data = _allowed_by_fraction(user_ids, 0.1)
    found = index.search_batched(queries, K, filter=Filter.predicate(_attribute_below, predicate_data))
    truth, _ = _exact(vectors, queries, user_ids, allowed, K)
    assert _recall(found.ids, truth) >= _FLOORS[index.kind]
    assert np.isin(found.ids, allowed).all()


# ---------------------------------------------------------------------- fewer than k pass

@pytest.mark.parametrize("route", ["auto", "index", "exact"])
@pytest.mark.parametrize("form", ["ids", "bitmap", "predicate_data", "callable"])
def test_a_filter_passing_fewer_than_k_points_returns_exactly_those(index, data, user_ids, form, route):
    vectors, queries = data
    allowed = user_ids[[5, 800, 4321]]
    predicate_data = np.concatenate([[0.5], np.ones(int(user_ids.max()) + 1)])
    predicate_data[allowed + 1] = 0.0
    f = _filter_of(form, allowed, user_ids, predicate_data)
    ids, dist = index.search_batched(queries, K, filter=f, filter_route=route)
    assert ids.shape == (len(queries), K)
    assert (np.sort(ids[:, :3], axis=1) == np.sort(allowed)).all()
    assert (ids[:, 3:] == -1).all()
    assert np.isneginf(dist[:, 3:]).all()
    expected_ids, expected_dist = _exact(vectors, queries, user_ids, allowed, K)
    np.testing.assert_allclose(dist[:, :3], expected_dist[:, :3], atol=2e-5)


def test_a_filter_passing_nothing_returns_only_padding(index, data):
    ids, dist = index.search_batched(data[1], K, filter=Filter.allow([0, 2, 4]))  # even ids: none indexed
    assert (ids == -1).all() and np.isneginf(dist).all()


def test_k_beyond_the_index_is_padded_under_a_filter(data):
    vectors, queries = data
    small = annlib.BruteForce(vectors[:20], "cosine")
    ids, _ = small.search_batched(queries[:2], 30, filter=np.arange(0, 20, 2))
    assert ids.shape == (2, 30)
    assert (np.sort(ids[:, :10], axis=1) == np.arange(0, 20, 2)).all() and (ids[:, 10:] == -1).all()


# ---------------------------------------------------------------------- per-query filters

def test_per_query_filters_in_a_batch(index, data, user_ids):
    vectors, queries = data
    queries = queries[:6]
    allowed_10, predicate_data = _allowed_by_fraction(user_ids, 0.1)
    allowed_1, _ = _allowed_by_fraction(user_ids, 0.01)
    shared = Filter.allow(allowed_1)
    filters = [
        allowed_10,
        shared,
        Filter.predicate(_attribute_below, predicate_data),
        None,
        shared,
        Filter.deny(np.setdiff1d(user_ids, user_ids[:7])),
    ]
    allowed_of = [allowed_10, allowed_1, allowed_10, user_ids, allowed_1, user_ids[:7]]
    ids, dist = index.search_batched(queries, K, filter=filters, **_full_settings(index))
    for q, allowed in enumerate(allowed_of):
        expected = _exact(vectors, queries[q : q + 1], user_ids, allowed, K)
        _assert_same_neighbours((ids[q : q + 1], dist[q : q + 1]), *expected)
    plan = index.last_filter_plan
    assert len(plan.routes) == len(queries)
    assert plan.allowed[3] == index.n and plan.allowed[5] == 7


def test_per_query_filter_sequence_must_match_the_queries(index, data):
    with pytest.raises(InvalidValueError, match="one filter per query"):
        index.search_batched(data[1][:4], K, filter=[np.array([1, 3]), np.array([5])])


# ---------------------------------------------------------------------- predicates with user data

def test_predicate_reads_its_user_data_at_search_time(index, data, user_ids):
    vectors, queries = data
    allowed, predicate_data = _allowed_by_fraction(user_ids, 0.2)
    f = Filter.predicate(_attribute_below, predicate_data)
    first = index.search_batched(queries, K, filter=f, filter_route="index", **_full_settings(index))
    _assert_same_neighbours(first, *_exact(vectors, queries, user_ids, allowed, K))
    predicate_data[0] = 0.05  # the threshold lives in the data: the same filter now passes fewer points
    narrower, _ = _allowed_by_fraction(user_ids, 0.05)
    second = index.search_batched(queries, K, filter=f, filter_route="index", **_full_settings(index))
    _assert_same_neighbours(second, *_exact(vectors, queries, user_ids, narrower, K))


# ---------------------------------------------------------------------- deleted ids

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["ids", "deny", "bitmap", "predicate_data"])
def test_deleted_ids_are_never_returned(kind, form, data):
    vectors, queries = data
    n = 3000
    ids = np.arange(n, dtype=np.int64) * 2 + 1
    index = _build(kind, vectors[:n], ids)
    added = index.add(vectors[n : n + 200])  # fresh ids after the largest
    all_ids = np.concatenate([ids, added])
    allowed, predicate_data = _allowed_by_fraction(all_ids, 0.3)
    # Delete the allowed points nearest the queries: exactly those a filter would otherwise return.
    nearest = index.search_batched(queries, 5, filter=allowed, filter_route="exact").ids
    deleted = np.unique(nearest[nearest >= 0])
    index.delete(deleted)
    live = np.setdiff1d(all_ids, deleted)
    f = _filter_of(form, allowed, all_ids, predicate_data)
    if form == "bitmap":
        f = Filter.bitmap(np.isin(np.arange(int(all_ids.max()) + 1), allowed))
    for route in ("index", "exact"):
        found = index.search_batched(queries, K, filter=f, filter_route=route, **_full_settings(index))
        assert not np.isin(found.ids, deleted).any()
        all_vectors = np.concatenate([vectors[:n], vectors[n : n + 200]])
        _assert_same_neighbours(found, *_exact(all_vectors, queries, all_ids, np.intersect1d(allowed, live), K))


# ---------------------------------------------------------------------- the GIL

def test_the_gil_is_released_while_a_predicate_filters_a_batch(data, user_ids):
    """A Python thread bumps a counter while the batch runs; the predicate, called from the search
    threads, records the counter at its first and its latest call: it moved only if the other
    thread ran while the search (inside the core) was calling the predicate."""

    @numba.cfunc(types.boolean(types.int64, types.voidptr))
    def watch(user_id, data_ptr):
        state = numba.carray(data_ptr, (3,), dtype=np.int64)
        if state[1] < 0:
            state[1] = state[0]
        state[2] = state[0]
        spin = 0  # some work per call, so the calls span a while
        for j in range(2000):
            spin += (user_id * j) % 7
        return (user_id % 3) == 0 or spin < 0

    vectors, queries = data
    index = _build("tree_ah", vectors, user_ids)
    many = np.repeat(queries, 20, axis=0)
    state = np.zeros(3, dtype=np.int64)
    stop = threading.Event()

    def bump():
        while not stop.is_set():
            state[0] += 1

    worker = threading.Thread(target=bump)
    worker.start()
    moved = False
    try:
        for _ in range(10):
            state[1] = -1
            index.search_batched(many, K, num_threads=1, filter=Filter.predicate(watch, state), filter_route="index",
                                 leaves_to_search=100)
            if state[2] > state[1]:
                moved = True
                break
    finally:
        stop.set()
        worker.join()
    assert state[1] >= 0, "the predicate was never called"
    assert moved, "the counter thread never ran while the predicate was being called"


# ---------------------------------------------------------------------- routes

def test_forced_and_planned_routes_are_reported(index, data, user_ids):
    queries = data[1]
    few = user_ids[:5]
    index.search_batched(queries, K, filter=few)
    assert index.last_filter_plan.route == "exact"  # fewer than k pass: exact scores them all
    assert index.last_filter_plan.forced is False
    index.search_batched(queries, K, filter=Filter.deny([]))
    assert index.last_filter_plan.route == "index"  # passes everything: nothing to gain from gathering
    index.search_batched(queries, K, filter=few, filter_route="index")
    assert index.last_filter_plan.route == "index" and index.last_filter_plan.forced


def test_tree_ah_widens_its_leaves_for_a_selective_filter(data, user_ids):
    index = _build("tree_ah", data[0], user_ids)
    queries = data[1]
    index.search_batched(queries, K, filter=Filter.deny([]), filter_route="index")
    unfiltered = index.last_search_counters["leaves_scanned"]
    assert unfiltered == 10 * len(queries)
    allowed, _ = _allowed_by_fraction(user_ids, 0.3)
    index.search_batched(queries, K, filter=allowed, filter_route="index")
    assert index.last_search_counters["leaves_scanned"] > 2 * unfiltered


def test_a_predicate_the_index_route_leaves_short_falls_back_to_exact(data, user_ids):
    from annlib.filter import PREDICATE_SAMPLE

    vectors, queries = data
    index = _build("tree_ah", vectors, user_ids)
    sampled = np.linspace(0, len(user_ids) - 1, PREDICATE_SAMPLE).astype(np.int64)
    unsampled = np.setdiff1d(np.arange(len(user_ids)), sampled)[::97]  # points the planner's sample misses
    allowed = user_ids[unsampled]
    predicate_data = np.concatenate([[0.5], np.ones(int(user_ids.max()) + 1)])
    predicate_data[allowed + 1] = 0.0
    f = Filter.predicate(_attribute_below, predicate_data)
    # One query calls the predicate lazily in the scan (a batch would evaluate it on every point).
    found = index.search(queries[:1], K, filter=f, filter_route="index")
    plan = index.last_filter_plan
    assert plan.estimated.all() and plan.allowed.max() == 0  # the sample saw none
    assert plan.fallback == 1 and plan.route == "exact"
    _assert_same_neighbours(found, *_exact(vectors, queries[:1], user_ids, allowed, K))
    # A batch: the predicate is evaluated once per point, so its count is exact and nothing falls back.
    found = index.search_batched(queries, K, filter=f, filter_route="index")
    plan = index.last_filter_plan
    assert not plan.estimated.any() and plan.allowed[0] == len(allowed) and plan.fallback == 0
    assert np.isin(found.ids, allowed).all()


def test_squared_l2_with_int8_reordering(data):
    vectors, queries = data
    index = annlib.TreeAhIndex(vectors[:4000], "squared_l2", num_leaves=40, reorder=100, reorder_quantize="int8")
    allowed = np.arange(0, 4000, 7)
    for route in ("index", "exact"):
        ids, dist = index.search_batched(queries, K, filter=allowed, filter_route=route, leaves_to_search=40,
                                         pre_reorder_num_neighbors=4000)
        assert np.isin(ids, allowed).all()
        truth, _ = _exact(vectors[:4000], queries, np.arange(4000), allowed, K, metric="squared_l2")
        assert _recall(ids, truth) >= 0.97  # int8 rows: exact up to their quantization
        assert (np.diff(dist, axis=1) >= 0).all()


# ---------------------------------------------------------------------- bad filters

def test_float_ids_are_refused(index, data):
    with pytest.raises(InvalidTypeError, match="filter allow ids must be integers"):
        index.search_batched(data[1], K, filter=np.array([1.0, 3.0]))


def test_boolean_ids_point_to_the_bitmap(index, data):
    with pytest.raises(InvalidTypeError, match="Filter.bitmap"):
        index.search_batched(data[1], K, filter=Filter.allow(np.ones(5, dtype=bool)))


@pytest.mark.parametrize("ids", [np.array([2**63 + 5], dtype=np.uint64), [2**70], ["a", "b"]])
def test_ids_that_do_not_fit_int64_are_refused(index, data, ids):
    with pytest.raises((InvalidValueError, InvalidTypeError), match="filter allow ids"):
        index.search_batched(data[1], K, filter=Filter.allow(ids))


def test_a_cfunc_with_the_wrong_signature_is_refused():
    @numba.cfunc(types.int32(types.int64))
    def wrong_return(user_id):
        return 1

    @numba.cfunc(types.boolean(types.float64))
    def wrong_argument(x):
        return x > 0

    for bad in (wrong_return, wrong_argument):
        with pytest.raises(InvalidValueError, match=r"signature must be boolean\(int64\)"):
            Filter.predicate(bad)
    with pytest.raises(InvalidTypeError, match="numba @cfunc"):
        Filter.predicate(lambda i: True)
    with pytest.raises(InvalidValueError, match="takes no data"):
        Filter.predicate(_hashed_tenth, np.zeros(3))


@pytest.mark.parametrize("length", [100, 19_999, 20_001])
def test_a_bitmap_of_the_wrong_length_is_refused(index, data, length):
    # ids are 1, 3, ..., 19999: a bitmap needs length 20000
    with pytest.raises(InvalidValueError, match=f"bitmap has length {length}"):
        index.search_batched(data[1], K, filter=Filter.bitmap(np.ones(length, dtype=bool)))


def test_a_bitmap_of_the_wrong_dtype_is_refused():
    with pytest.raises(InvalidTypeError, match="bitmap must be a bool"):
        Filter.bitmap(np.ones(10, dtype=np.float32))


def test_other_bad_filters(index, data):
    with pytest.raises(InvalidValueError, match="1-D user ids"):
        index.search_batched(data[1], K, filter=np.ones((3, 2), dtype=np.int64))
    with pytest.raises(InvalidTypeError, match="filter must be"):
        index.search_batched(data[1], K, filter=3.5)
    with pytest.raises(InvalidValueError, match="filter_route"):
        index.search_batched(data[1], K, filter=[1, 3], filter_route="fast")


def test_exact_route_needs_stored_vectors(data):
    index = annlib.TreeAhIndex(data[0][:2000], "cosine", num_leaves=20, reorder=None)
    with pytest.raises(InvalidValueError, match="needs the index's vectors"):
        index.search_batched(data[1], K, filter=[1, 3], filter_route="exact")
    ids, _ = index.search_batched(data[1], K, filter=np.arange(0, 2000, 3))  # auto: the index route
    assert np.isin(ids, np.arange(0, 2000, 3)).all()


def test_predicates_without_numba_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)
    with pytest.raises(MissingDependencyError, match=r'annlib\[filter\]'):
        Filter.predicate(_hashed_tenth)


def test_a_predicate_batch_on_an_index_without_vectors(data):
    vectors, queries = data
    index = annlib.TreeAhIndex(vectors[:2000], "cosine", num_leaves=20, reorder=None)
    ids, _ = index.search_batched(queries, K, filter=Filter.predicate(_hashed_tenth), leaves_to_search=20)
    assert np.array([_hashed_tenth_py(int(i)) for i in ids.ravel()]).all()


# ---------------------------------------------------------------------- the planner's figures

def test_the_planner_reuses_the_autotuners_cost_model(data):
    from annlib.index import planner

    vectors, queries = data
    index = annlib.TreeAhIndex(vectors[:3000], "cosine", num_leaves=30, reorder=100)
    tuning = index.autotune(0.9, queries=queries, num_tuning_queries=30)
    costs = planner.route_costs(index, index._snap, "single", 1, K)
    assert costs.model is tuning.cost_model
    assert costs.per_exact_point > 0 and 0 < costs.checks_per_entry <= 1


def test_the_route_follows_the_predicted_costs(data, monkeypatch):
    from annlib.autotune.cost_model import CostModel
    from annlib.index import planner

    vectors, queries = data
    index = _build("tree_ah", vectors[:3000], np.arange(3000))
    model = CostModel(fixed=1e-5, per_center=0.0, per_leaf=1e-6, per_entry=1e-8, per_reorder=1e-7, num_leaves=30)
    allowed, _ = _allowed_by_fraction(np.arange(3000), 0.3)

    def planned(per_exact_point):
        costs = planner.RouteCosts(per_scanned_point=float("nan"), per_exact_point=per_exact_point, model=model,
                                   checks_per_entry=0.1)
        monkeypatch.setattr(planner, "route_costs", lambda *args: costs)
        index.search_batched(queries, K, filter=allowed)
        plan = index.last_filter_plan
        index_cost, exact_cost = plan.predicted[0]
        return plan.route, index_cost, exact_cost

    route, index_cost, exact_cost = planned(1e-12)
    assert route == "exact" and exact_cost < index_cost
    route, index_cost, exact_cost = planned(1e-3)
    assert route == "index" and exact_cost > index_cost
    # the widened scan is priced: a narrower filter predicts more leaves and entries per query
    narrow, _ = _allowed_by_fraction(np.arange(3000), 0.05)
    index.search_batched(queries, K, filter=narrow)
    assert index.last_filter_plan.predicted[0][0] > index_cost
