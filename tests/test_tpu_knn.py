"""annlib.tpu_knn (issue 5): PartialReduce k-NN in JAX, against numpy brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from annlib import tpu_knn

# Measured recall@k may fall short of the target by at most this much (sampling
# noise over a few hundred queries), and stays this close to expected_recall.
RECALL_SLACK = 0.02
EXPECTED_RECALL_TOLERANCE = 0.025
# On the real MiniLM data, against the file's ground truth (angular).
REAL_RECALL_SLACK = 0.03

METRICS = ("dot", "cosine", "squared_l2")


def exact_numpy(database, queries, k, metric):
    """Reference: ids and annlib distances of the exact top-k, best first."""
    x = database.astype(np.float64)
    q = queries.astype(np.float64)
    if metric == "dot":
        scores = q @ x.T
    elif metric == "cosine":
        xn = np.linalg.norm(x, axis=1, keepdims=True)
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        scores = (q / qn) @ (x / xn).T
    else:
        scores = -((q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :])
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, ids, axis=1)
    return ids, (-best if metric == "squared_l2" else best)


def recall(found, truth):
    k = truth.shape[1]
    return float(
        np.mean(
            [len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]
        )
    )


# --------------------------------------------------------------------------- recall model


@pytest.mark.parametrize(
    ("k", "target"),
    [(1, 0.9), (2, 0.5), (10, 0.9), (10, 0.95), (100, 0.99), (1000, 0.9)],
)
def test_bins_for_recall_is_the_smallest_meeting_the_target(k, target):
    bins = tpu_knn.bins_for_recall(k, target)
    assert tpu_knn.expected_recall(bins, k) >= target
    if bins > 1:
        assert tpu_knn.expected_recall(bins - 1, k) < target


def test_expected_recall_matches_the_closed_form():
    for bins, k in [(1, 1), (1, 10), (88, 10), (1000, 100), (10**6, 100)]:
        closed = bins / k * (1 - (1 - 1 / bins) ** k)
        assert tpu_knn.expected_recall(bins, k) == pytest.approx(closed, rel=1e-9)
    # never worse than XLA's bound (1 - 1/L)^(k - 1)
    assert tpu_knn.expected_recall(175, 10) >= (1 - 1 / 175) ** 9


def test_recall_target_one_needs_exact_top_k():
    assert tpu_knn.bins_for_recall(1, 1.0) == 1
    with pytest.raises(ValueError, match="recall_target=1.0"):
        tpu_knn.bins_for_recall(10, 1.0)


# --------------------------------------------------------------------------- recall


@pytest.mark.parametrize(
    ("k", "target"), [(10, 0.8), (10, 0.95), (50, 0.9), (100, 0.99)]
)
def test_recall_on_random_data_meets_target_and_model(rng, k, target):
    database = rng.standard_normal((20000, 32), dtype=np.float32)
    queries = rng.standard_normal((300, 32), dtype=np.float32)
    truth, _ = exact_numpy(database, queries, k, "dot")
    ids, _ = tpu_knn.search(database, queries, k, "dot", target)
    measured = recall(ids, truth)
    expected = tpu_knn.expected_recall(max(tpu_knn.bins_for_recall(k, target), k), k)
    assert measured >= target - RECALL_SLACK
    assert measured == pytest.approx(expected, abs=EXPECTED_RECALL_TOLERANCE)


def test_recall_survives_data_stored_in_similarity_order(rng):
    # 200 clusters of 50 near-duplicates stored contiguously: each query's top 10
    # are consecutive ids. Contiguous bins would keep one of them; strided keep all.
    centers = rng.standard_normal((200, 16), dtype=np.float32)
    database = np.repeat(centers, 50, axis=0) + 0.01 * rng.standard_normal(
        (10000, 16), dtype=np.float32
    )
    queries = centers[:100] + 0.01 * rng.standard_normal((100, 16), dtype=np.float32)
    truth, _ = exact_numpy(database, queries, 10, "squared_l2")
    ids, _ = tpu_knn.search(database, queries, 10, "squared_l2", 0.95)
    assert recall(ids, truth) >= 0.95 - RECALL_SLACK


@pytest.mark.parametrize(("k", "target"), [(10, 0.9), (10, 0.95), (100, 0.95)])
def test_recall_on_real_sample(real_sample, k, target):
    queries = real_sample["test"][:300]
    ids, _ = tpu_knn.search(real_sample["train"], queries, k, "cosine", target)
    assert recall(ids, real_sample["neighbors"][:300, :k]) >= target - REAL_RECALL_SLACK


@pytest.mark.parametrize(("k", "target"), [(10, 0.9), (10, 0.95), (100, 0.95)])
def test_recall_on_debian_minilm(debian_minilm, k, target):
    queries = debian_minilm["test"][:500]
    ids, _ = tpu_knn.search(debian_minilm["train"], queries, k, "cosine", target)
    measured = recall(ids, debian_minilm["neighbors"][:500, :k])
    assert measured >= target - REAL_RECALL_SLACK
    expected = tpu_knn.expected_recall(tpu_knn.bins_for_recall(k, target), k)
    assert measured == pytest.approx(expected, abs=2 * EXPECTED_RECALL_TOLERANCE)


# --------------------------------------------------------------------------- exactness, metrics


@pytest.mark.parametrize("metric", METRICS)
def test_recall_target_one_equals_numpy(rng, metric):
    database = rng.standard_normal((3001, 24), dtype=np.float32)
    queries = rng.standard_normal((37, 24), dtype=np.float32)
    truth, distances = exact_numpy(database, queries, 15, metric)
    ids, got = tpu_knn.search(
        database, queries, 15, metric, 1.0, database_tile=512, query_tile=16
    )
    np.testing.assert_array_equal(ids, truth)
    np.testing.assert_allclose(got, distances, rtol=1e-4, atol=1e-4)
    assert ids.dtype == np.int64
    assert got.dtype == np.float32


@pytest.mark.parametrize("metric", METRICS)
def test_approximate_distances_are_those_of_the_returned_ids(rng, metric):
    database = rng.standard_normal((5000, 20), dtype=np.float32)
    queries = rng.standard_normal((50, 20), dtype=np.float32)
    ids, got = tpu_knn.search(
        database, queries, 10, metric, 0.9, database_tile=700, query_tile=32
    )
    _, all_distances = exact_numpy(database, queries, 5000, metric)
    all_ids, _ = exact_numpy(database, queries, 5000, metric)
    for row in range(len(queries)):
        lookup = dict(zip(all_ids[row].tolist(), all_distances[row].tolist()))
        np.testing.assert_allclose(
            got[row], [lookup[i] for i in ids[row]], rtol=1e-4, atol=1e-4
        )
    order = -got if metric != "squared_l2" else got
    assert np.all(np.diff(order, axis=1) >= 0)  # best first


def test_norms_argument_and_device_arrays_give_the_same_result(rng):
    database = rng.standard_normal((4000, 16), dtype=np.float32)
    queries = rng.standard_normal((20, 16), dtype=np.float32)
    plain = tpu_knn.search(database, queries, 5, "squared_l2")
    norms = (database * database).sum(1)
    with_norms = tpu_knn.search(
        jnp.asarray(database), jnp.asarray(queries), 5, "squared_l2", norms=norms
    )
    np.testing.assert_array_equal(plain.ids, with_norms.ids)
    np.testing.assert_allclose(plain.distances, with_norms.distances, rtol=1e-5)


def test_single_query_returns_one_row(rng):
    database = rng.standard_normal((300, 8), dtype=np.float32)
    ids, distances = tpu_knn.search(database, database[7], 3, "squared_l2", 1.0)
    assert ids.shape == distances.shape == (3,)
    assert ids[0] == 7
    assert distances[0] == pytest.approx(0.0, abs=1e-5)


def test_bfloat16_keeps_recall(rng):
    database = rng.standard_normal((4000, 64), dtype=np.float32)
    queries = rng.standard_normal((40, 64), dtype=np.float32)
    truth, _ = exact_numpy(database, queries, 10, "dot")
    ids, distances = tpu_knn.search(database, queries, 10, "dot", 1.0, dtype="bfloat16")
    assert distances.dtype == np.float32
    # the loss comes from rounding the inputs to bfloat16, not from the selection
    assert recall(ids, truth) >= 0.8


def test_partial_reduce_matches_top_k(rng):
    scores = jnp.asarray(rng.standard_normal((64, 5000), dtype=np.float32))
    _, exact_ids = jax.lax.top_k(scores, 10)
    values, ids = tpu_knn.partial_reduce(scores, 10, recall_target=1.0)
    np.testing.assert_array_equal(ids, exact_ids)
    values, ids = tpu_knn.partial_reduce(scores, 10, recall_target=0.95)
    np.testing.assert_array_equal(
        np.take_along_axis(np.asarray(scores), np.asarray(ids), 1), values
    )
    assert recall(np.asarray(ids), np.asarray(exact_ids)) >= 0.95 - 0.05


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 3])
def test_single_point_database(rng, metric, k):
    database = rng.standard_normal((1, 6), dtype=np.float32)
    queries = rng.standard_normal((4, 6), dtype=np.float32)
    ids, distances = tpu_knn.search(database, queries, k, metric)
    _, truth = exact_numpy(database, queries, 1, metric)
    np.testing.assert_array_equal(ids[:, 0], 0)
    np.testing.assert_allclose(distances[:, :1], truth, rtol=1e-5, atol=1e-5)
    worst = np.inf if metric == "squared_l2" else -np.inf
    np.testing.assert_array_equal(ids[:, 1:], -1)
    np.testing.assert_array_equal(distances[:, 1:], worst)


@pytest.mark.parametrize("metric", METRICS)
def test_k_larger_than_n_pads_with_minus_one(rng, metric):
    database = rng.standard_normal((5, 4), dtype=np.float32)
    queries = rng.standard_normal((3, 4), dtype=np.float32)
    ids, distances = tpu_knn.search(database, queries, 8, metric, 0.9)
    truth, truth_distances = exact_numpy(database, queries, 5, metric)
    np.testing.assert_array_equal(ids[:, :5], truth)
    np.testing.assert_allclose(distances[:, :5], truth_distances, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ids[:, 5:], -1)
    assert np.all(np.isinf(distances[:, 5:]))


@pytest.mark.parametrize(
    ("n", "database_tile", "query_tile"),
    [(89, None, None), (1000, 300, 7), (2049, 176, 64)],
)
def test_sizes_not_divisible_by_tiles_or_bins(rng, n, database_tile, query_tile):
    # L = 88 for (k=10, 0.95): n = 89 has one partial bin row, 1000 and 2049 a
    # partial last tile; 50 queries over tiles of 7 or 64 leave a partial query tile.
    database = rng.standard_normal((n, 12), dtype=np.float32)
    queries = rng.standard_normal((50, 12), dtype=np.float32)
    truth, _ = exact_numpy(database, queries, 10, "dot")
    ids, _ = tpu_knn.search(
        database,
        queries,
        10,
        "dot",
        0.95,
        database_tile=database_tile,
        query_tile=query_tile,
    )
    assert np.all((ids >= 0) & (ids < n))
    assert all(len(set(row)) == 10 for row in ids.tolist())
    assert recall(ids, truth) >= 0.9
    # the whole database in one tile gives the same bins, hence the same answer
    whole = tpu_knn.search(
        database, queries, 10, "dot", 0.95, database_tile=10**6, query_tile=query_tile
    )
    np.testing.assert_array_equal(ids, whole.ids)


def test_padding_never_wins_when_all_scores_are_negative(rng):
    database = -np.abs(rng.standard_normal((1001, 8), dtype=np.float32)) - 1.0
    queries = np.abs(rng.standard_normal((5, 8), dtype=np.float32))
    ids, distances = tpu_knn.search(
        database, queries, 10, "dot", 0.95, database_tile=200
    )
    assert np.all(ids >= 0)
    assert np.all(distances < 0) and np.all(np.isfinite(distances))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metric": "hamming"}, ValueError, "metric"),
        ({"k": 0}, ValueError, "k must"),
        ({"k": 2.5}, TypeError, "k must"),
        ({"recall_target": 0.0}, ValueError, "recall_target"),
        ({"recall_target": 1.5}, ValueError, "recall_target"),
        ({"recall_target": "high"}, TypeError, "recall_target"),
        ({"queries": np.zeros((2, 5), np.float32)}, ValueError, r"\(n, 4\)"),
        ({"queries": np.array([[np.nan, 0, 0, 0]], np.float32)}, ValueError, "NaN"),
        ({"database": np.zeros((0, 4), np.float32)}, ValueError, "empty"),
        ({"database": np.array([["a", "b", "c", "d"]])}, TypeError, "numeric"),
        ({"database": np.zeros(4, np.float32)}, ValueError, "2-D"),
        ({"dtype": "int8"}, ValueError, "dtype"),
        ({"database_tile": 0}, ValueError, "database_tile"),
        ({"norms": np.ones(3, np.float32)}, ValueError, "norms"),
    ],
)
def test_bad_input_is_rejected(kwargs, error, match):
    args = {
        "database": np.ones((10, 4), np.float32),
        "queries": np.ones((2, 4), np.float32),
        "k": 3,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        tpu_knn.search(**args)


def test_jitted_core_checks_shapes_at_trace_time():
    with pytest.raises(ValueError, match=r"\(nq, 4\)"):
        tpu_knn.knn(jnp.ones((10, 4)), jnp.ones((2, 3)), k=1, num_bins=None)
    with pytest.raises(ValueError, match="num_bins"):
        tpu_knn.knn(jnp.ones((10, 4)), jnp.ones((2, 4)), k=5, num_bins=2)


# --------------------------------------------------------------------------- cost model


def test_predict_time_is_a_roofline(monkeypatch):
    from annlib.jax import roofline

    device = str(jax.devices()[0])
    monkeypatch.setitem(roofline._CALIBRATION, device, roofline.Ceilings(1e11, 1e10, 0.0))
    # one query over 1M x 128: memory-bound, 512 MB at 10 GB/s
    assert tpu_knn.predict_time(10**6, 128, 1) == pytest.approx(
        4 * (128e6 + 128) / 1e10
    )
    # 512 queries: compute-bound, 2 * 1M * 128 * 512 FLOP at 100 GFLOP/s
    assert tpu_knn.predict_time(10**6, 128, 512) == pytest.approx(
        2 * 128e6 * 512 / 1e11
    )
    assert tpu_knn.predict_time(10**6, 128, 1000) > tpu_knn.predict_time(
        10**6, 128, 512
    )
    # the fixed cost per call is added to whichever ceiling binds
    monkeypatch.setitem(roofline._CALIBRATION, device, roofline.Ceilings(1e11, 1e10, 1e-4))
    assert tpu_knn.predict_time(10**6, 128, 1) == pytest.approx(1e-4 + 4 * (128e6 + 128) / 1e10)
    assert tpu_knn.predict_time(10, 4, 1) == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(ValueError, match="nq"):
        tpu_knn.predict_time(10, 4, 0)


def test_calibration_measures_positive_ceilings():
    peak, bandwidth, latency = tpu_knn.calibrate()
    assert math.isfinite(peak) and peak > 1e8
    assert math.isfinite(bandwidth) and bandwidth > 1e8
    assert 0 < latency < 1.0


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", [89, 1000, 1013])
@pytest.mark.parametrize("nq", [1, 3, 32])
def test_single_tile_fast_path_equals_the_tiled_scan(rng, metric, n, nq):
    """Small batches reduce the whole database in one pass and find the arg-max
    only for the k kept bins (_select_one_tile); with integer data (many exact
    ties) its ids and distances equal the tiled scan's, bin for bin."""
    database = rng.integers(-2, 3, size=(n, 8)).astype(np.float32)
    # four +-1 entries: |q| = 2, so cosine's normalised queries stay exact and
    # every score is the same float in both summation orders
    queries = np.zeros((nq, 8), np.float32)
    for row in queries:
        row[rng.choice(8, size=4, replace=False)] = rng.choice([-1.0, 1.0], size=4)
    x, q = jnp.asarray(database), jnp.asarray(queries)
    fast = tpu_knn.knn(x, q, k=10, num_bins=88, metric=metric)
    # a tile of L rows forces the carried-state scan over the same bins
    tiled = tpu_knn.knn(x, q, k=10, num_bins=88, metric=metric, database_tile=88)
    np.testing.assert_array_equal(np.asarray(fast[0]), np.asarray(tiled[0]))
    np.testing.assert_allclose(np.asarray(fast[1]), np.asarray(tiled[1]), rtol=1e-6)


@pytest.mark.parametrize(
    "module",
    ["annlib.tpu_knn", "annlib.jax.partial_reduce", "annlib.jax.knn", "annlib.jax.search"],
)
def test_docstring_examples_run(module):
    """The examples in the docstrings are part of the API's documentation: keep them true."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0


def test_accelerator_tiles_fill_the_chip_and_cpu_tiles_fit_l2():
    """On a GPU/TPU a tile is a kernel launch over device memory: one query tile of 1000
    over 1M rows is scored in tiles of tens of thousands of rows (a multiple of L), not
    the CPU's L2-sized 2-4k; small batches score the whole database at once."""
    from annlib.jax.knn import database_tile_rows

    gpu = database_tile_rows(None, 88, 1_000_000, 1000, backend="gpu")
    cpu = database_tile_rows(None, 88, 1_000_000, 1000, backend="cpu")
    assert gpu % 88 == 0 and 50_000 <= gpu < 1_000_000
    assert cpu % 88 == 0 and 1_500 <= cpu <= 5_200
    assert database_tile_rows(None, 88, 1_000_000, 100, backend="gpu") == 1_000_000
    assert database_tile_rows(None, 88, 1_000_000, 100, backend="cpu") < 1_000_000
