"""The index protocol (issue 11): every index kind is searched, saved, loaded, pickled and tuned the same way.

Each test runs over every kind: exact ``BruteForce``, the tree-AH index with float32 and with
int8 reordering (and SOAR), and the JAX brute force (skipped when jax is absent).
"""

from __future__ import annotations

import multiprocessing
import pickle
import sys
import threading

import numpy as np
import pytest

import annlib

K = 10
N_POINTS = 4000

# Recall@10 floors against exact search at each kind's default search settings.
RECALL_FLOOR = {"brute_force": 0.999, "tree_ah": 0.85, "tree_ah_int8_soar": 0.85, "jax_brute_force": 0.9}
# Recall@50 when k=50 exceeds the tree's reorder of 30: it rescores exactly k candidates.
RECALL_AT_50_FLOOR = {"brute_force": 0.999, "tree_ah": 0.7, "tree_ah_int8_soar": 0.7, "jax_brute_force": 0.9}
# Two settings of the defaults that give different results, for the swap test.
SWAP_SETTINGS = {
    "brute_force": ({}, {}),
    "tree_ah": ({"leaves_to_search": 1, "pre_reorder_num_neighbors": 10}, {"leaves_to_search": 20,
                                                                          "pre_reorder_num_neighbors": 60}),
    "tree_ah_int8_soar": ({"leaves_to_search": 1, "pre_reorder_num_neighbors": 10},
                          {"leaves_to_search": 20, "pre_reorder_num_neighbors": 60}),
    "jax_brute_force": ({"recall_target": 0.5}, {"recall_target": 1.0}),
}
KIND_NAMES = list(RECALL_FLOOR)


def _build(name: str, data: np.ndarray, metric: str):
    if name == "brute_force":
        return annlib.BruteForce(data, metric, K)
    if name == "tree_ah":
        return annlib.TreeAhIndex(data, metric, num_neighbors=K, num_leaves=40, num_leaves_to_search=8, reorder=30)
    if name == "tree_ah_int8_soar":
        return annlib.TreeAhIndex(data, metric, num_neighbors=K, num_leaves=40, num_leaves_to_search=8, reorder=30,
                                  reorder_quantize="int8", soar_lambda=1.0)
    pytest.importorskip("jax")
    return annlib.JaxBruteForce(data, metric, K, recall_target=0.95)


@pytest.fixture(scope="module")
def sample(request):
    real = request.getfixturevalue("real_sample")
    return {"data": np.ascontiguousarray(real["train"][:N_POINTS]), "queries": np.ascontiguousarray(real["test"][:100])}


@pytest.fixture(scope="module", params=KIND_NAMES)
def kind(request):
    return request.param


@pytest.fixture(scope="module", params=["cosine", "squared_l2"])
def metric(request):
    return request.param


@pytest.fixture(scope="module")
def index(kind, metric, sample):
    return _build(kind, sample["data"], metric)


@pytest.fixture(scope="module")
def exact(metric, sample):
    return annlib.BruteForce(sample["data"], metric, K).search_batched(sample["queries"])


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances.view(np.uint32), b.distances.view(np.uint32))  # identical bits


def test_every_kind_meets_its_recall_floor(kind, index, exact, sample, metric):
    found = index.search_batched(sample["queries"])
    assert found.ids.shape == (100, K) and found.ids.dtype == np.int64 and found.distances.dtype == np.float32
    larger = metric != "squared_l2"
    recall = annlib.recall(found.distances, exact.distances, K, larger_is_better=larger)
    assert recall >= RECALL_FLOOR[kind], recall


def test_k_and_final_num_neighbors_are_one_argument(index, sample):
    q = sample["queries"]
    _same(index.search_batched(q, 7), index.search_batched(q, final_num_neighbors=7))
    _same(index.search_batched(q, k=7), index.search_batched(q, final_num_neighbors=7))
    one = index.search(q[3], final_num_neighbors=5)
    assert one.ids.shape == (5,)
    np.testing.assert_array_equal(one.ids, index.search(q[3], 5).ids)
    with pytest.raises(TypeError, match="not both"):
        index.search_batched(q, 5, final_num_neighbors=5)


def test_default_k_is_num_neighbors(index, sample):
    assert index.num_neighbors == K
    assert index.search_batched(sample["queries"][:4]).ids.shape == (4, K)
    assert index.search(sample["queries"][0]).ids.shape == (K,)


def test_k_above_the_default_reorder_raises_the_candidate_count(kind, index, sample, metric):
    # The tree kinds were built with reorder=30: k=50 must search, not refuse.
    q = sample["queries"]
    found = index.search_batched(q, 50)
    assert found.ids.shape == (100, 50)
    assert (found.ids >= 0).all()
    assert all(len(set(row)) == 50 for row in found.ids.tolist())
    if kind.startswith("tree_ah"):
        _same(found, index.search_batched(q, 50, pre_reorder_num_neighbors=50))
    truth = annlib.BruteForce(sample["data"], metric).search_batched(q, 50)
    recall = annlib.recall(found.distances, truth.distances, 50, larger_is_better=metric != "squared_l2")
    assert recall >= RECALL_AT_50_FLOOR[kind], recall


def test_k_beyond_the_data_pads_with_minus_one(index, sample, metric):
    small = type(index).__name__
    data = sample["data"][:30]
    tiny = annlib.BruteForce(data, metric) if small == "BruteForce" else None
    if tiny is None:
        tiny = index  # the big index: ask for more than it holds
        k = index.n + 5
    else:
        k = 35
    everywhere = {"leaves_to_search": 40} if tiny.kind == "tree_ah" else {}  # every point reachable
    found = tiny.search_batched(sample["queries"][:2], k, **everywhere)
    assert found.ids.shape == (2, k)
    assert (found.ids[:, -5:] == -1).all()
    worst = np.inf if metric == "squared_l2" else -np.inf
    assert (found.distances[:, -5:] == worst).all()
    assert (found.ids[:, : tiny.n] >= 0).all()


def test_search_parameters_are_keyword_only_and_unknown_names_raise(index, sample):
    q = sample["queries"][:3]
    with pytest.raises(TypeError, match="leaves_to_serch"):
        index.search_batched(q, 5, leaves_to_serch=3)
    with pytest.raises(TypeError, match="bogus"):
        index.search(q[0], 5, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        index.set_search_defaults(bogus=1)
    with pytest.raises(TypeError):
        index.search_batched(q, 5, 3)  # a positional search parameter
    for name in annlib.index.params.names(index.Params):
        assert hasattr(index.search_defaults, name)


def test_save_load_index_gives_identical_results(index, sample, tmp_path):
    path = tmp_path / f"{index.kind}.annl"
    index.save(path)
    loaded = annlib.load_index(path)
    assert type(loaded) is type(index)
    assert loaded.config == index.config
    assert loaded.search_defaults == index.search_defaults
    assert (len(loaded), loaded.dim, loaded.metric) == (len(index), index.dim, index.metric)
    _same(loaded.search_batched(sample["queries"]), index.search_batched(sample["queries"]))
    _same(type(index).load(path).search_batched(sample["queries"]), index.search_batched(sample["queries"]))


def test_load_of_the_wrong_class_names_the_kind(index, tmp_path):
    path = tmp_path / "x.annl"
    index.save(path)
    other = annlib.BruteForce if index.kind != "brute_force" else annlib.TreeAhIndex
    with pytest.raises(annlib.FormatError, match=index.kind):
        other.load(path)


def test_pickle_round_trip_gives_identical_results(index, sample):
    clone = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(clone) is type(index) and clone.config == index.config
    _same(clone.search_batched(sample["queries"]), index.search_batched(sample["queries"]))


def test_pickle_is_by_arrays_not_by_a_copy_of_everything_twice(index):
    # The pickle holds the index's arrays once: no larger than the arrays plus a small header.
    size = len(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    assert size <= index.stats()["total_bytes"] + 64 * 1024


@pytest.fixture(scope="module")
def spawn_pool():
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        yield pool


def test_a_spawn_mode_worker_searches_the_same(index, sample, spawn_pool):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])  # the child imports protocol_worker by name
    import protocol_worker

    name, ids, distances = spawn_pool.apply(protocol_worker.search_in_worker, (index, sample["queries"][:20], K))
    assert name == type(index).__name__
    _same(annlib.SearchResult(ids, distances), index.search_batched(sample["queries"][:20], K, num_threads=1))


def test_the_index_owns_its_data(kind, metric, sample):
    data = sample["data"].copy()
    index = _build(kind, data, metric)
    before = index.search_batched(sample["queries"])
    data[:] = 0.0
    _same(index.search_batched(sample["queries"]), before)


def test_copy_false_shares_the_callers_array(sample):
    data = sample["data"].copy()
    index = annlib.BruteForce(data, "dot", copy=False)
    data[5] = 100.0 * data[7]  # the caller broke its promise: the index sees the change
    assert index.search(data[7], 1).ids[0] == 5


def test_get_vectors_returns_the_stored_rows(kind, index, sample, metric):
    rows = np.array([0, 17, 3999])
    if kind == "tree_ah_int8_soar":
        with pytest.raises(ValueError, match="float32"):
            index.get_vectors(rows)
        return
    expected = sample["data"][rows]
    if metric == "cosine":
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(index.get_vectors(rows), expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(KeyError, match="4000"):
        index.get_vectors([1, 4000])


def test_inspection_is_the_same_everywhere(index, kind):
    assert len(index) == index.n == N_POINTS and index.dim == 384
    assert index.kind in annlib.index.KINDS
    stats = index.stats()
    assert stats["n"] == N_POINTS and stats["dim"] == 384
    assert stats["total_bytes"] == sum(stats["memory_bytes"].values()) > N_POINTS * 384
    text = repr(index)
    assert text.startswith(type(index).__name__ + "(n=4000, dim=384, metric=") and len(text) < 200
    import json

    json.dumps(index.config)  # JSON-serialisable


def test_validation_does_not_depend_on_call_history(index, sample):
    q = sample["queries"][:2]
    for attempt in range(2):  # before and after the equal valid values were used
        with pytest.raises(TypeError, match="k"):
            index.search_batched(q, True)
        with pytest.raises(TypeError, match="k"):
            index.search_batched(q, 3.0)
        if index.kind == "tree_ah":
            with pytest.raises(TypeError, match="leaves_to_search"):
                index.search_batched(q, 3, leaves_to_search=5.0)
            index.search_batched(q, 3, leaves_to_search=5)
        index.search_batched(q, 3)
        index.search_batched(q, 1)


def test_defaults_swapped_while_eight_threads_search_give_old_or_new_results(kind, index, sample):
    setting_a, setting_b = SWAP_SETTINGS[kind]
    original = index.search_defaults
    q = sample["queries"][:20]

    def one_by_one():  # references made the way the threads search: one query at a time
        found = [index.search(row) for row in q]
        return annlib.SearchResult(np.stack([f.ids for f in found]), np.stack([f.distances for f in found]))

    index.set_search_defaults(**setting_a)
    ref_a = one_by_one()
    index.set_search_defaults(**setting_b)
    ref_b = one_by_one()
    if setting_a != setting_b:
        assert (ref_a.ids != ref_b.ids).any()  # the settings must be distinguishable for the test to mean anything
    failures, stop = [], threading.Event()

    def searcher(seed: int):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            i = int(rng.integers(len(q)))
            got = index.search(q[i])
            ok_a = np.array_equal(got.ids, ref_a.ids[i]) and np.array_equal(got.distances, ref_a.distances[i])
            ok_b = np.array_equal(got.ids, ref_b.ids[i]) and np.array_equal(got.distances, ref_b.distances[i])
            if not (ok_a or ok_b):
                failures.append(i)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    try:
        for turn in range(200):
            index.set_search_defaults(**(setting_a if turn % 2 else setting_b))
    finally:
        stop.set()
        for t in threads:
            t.join()
        index.set_search_defaults(**{f: getattr(original, f) for f in annlib.index.params.names(index.Params)})
    assert not failures, failures[:10]


def test_every_kind_tunes_through_the_same_call(kind, metric, sample):
    index = _build(kind, sample["data"], metric)
    tuning = index.autotune(target_recall=0.9, num_tuning_queries=200, data=sample["data"])
    assert isinstance(tuning, annlib.Tuning) and tuning.index_kind == index.kind
    found = index.search_batched(sample["queries"], **tuning.params)
    exact = annlib.BruteForce(sample["data"], metric).search_batched(sample["queries"])
    recall = annlib.recall(found.distances, exact.distances, K, larger_is_better=metric != "squared_l2")
    assert recall >= 0.9 - 0.05, recall
    with pytest.raises(ValueError, match="safety"):
        index.autotune(target_recall=0.9, safety=-100)
    for bad in (-0.001, 0.5, float("nan"), True):
        with pytest.raises(ValueError, match="recall_tolerance"):
            index.autotune(target_recall=0.9, recall_tolerance=bad)


@pytest.mark.parametrize("size", ["small", "real"])
def test_build_returns_an_index_that_saves_loads_and_searches_the_same_way(size, rng, tmp_path, request):
    if size == "small":
        data = rng.standard_normal((500, 32)).astype(np.float32)
        queries = rng.standard_normal((20, 32)).astype(np.float32)
        metric = "squared_l2"
    else:
        real = request.getfixturevalue("debian_minilm")
        data, queries, metric = real["train"], real["test"][:200], "cosine"
    index, tuning = annlib.build(data, metric, target_recall=0.9, return_tuning=True)
    assert tuning.index_kind == index.kind and tuning.message
    if size == "real":
        assert index.kind == "tree_ah"  # 50k points: the index beats exact search at recall 0.9
    path = tmp_path / "built.annl"
    index.save(path)
    loaded = annlib.load_index(path)
    for searcher in (index, loaded):
        found = searcher.search_batched(queries, 10, num_threads=1)
        assert found.ids.shape == (len(queries), 10)
        assert searcher.search(queries[0], k=10).ids.shape == (10,)
        assert searcher.search_batched(queries, 50).ids.shape == (len(queries), 50)  # k above the tuned reorder
    _same(loaded.search_batched(queries), index.search_batched(queries))
    exact = annlib.BruteForce(data, metric).search_batched(queries)
    recall = annlib.recall(index.search_batched(queries).distances, exact.distances, 10,
                           larger_is_better=metric != "squared_l2")
    assert recall >= 0.85, recall
