"""Magnitude extremes, per metric and index kind (issue 12).

annlib computes in float32. Rows whose squares underflow (tiny or denormal
coordinates) must still normalise for cosine; rows whose squared norm exceeds
2**120 would overflow scores or distances and are refused with a ValueError
saying so, for every metric and kind, at build and at search time. Rows just
inside the limit give finite, correct answers.
"""

from __future__ import annotations

import numpy as np
import pytest

import annlib
from annlib import _validate

METRICS = ("dot", "cosine", "squared_l2")
KINDS = ("exact", "tree_ah", "jax")
N, DIM, K = 300, 8, 5


def _build(kind, data, metric):
    if kind == "exact":
        return annlib.BruteForce(data, metric)
    if kind == "tree_ah":
        # every leaf probed and every point reordered exactly: the answer is the exact one
        return annlib.TreeAhIndex(data, metric, num_leaves=4, num_leaves_to_search=4, reorder=N, num_threads=1)
    pytest.importorskip("jax")
    from annlib.index.jax_brute_force import JaxBruteForce

    return JaxBruteForce(data, metric, K, recall_target=1.0)


def _search(index, queries):
    if isinstance(index, annlib.BruteForce):
        return index.search_batched(queries, K)
    if isinstance(index, annlib.TreeAhIndex):
        return index.search_batched(queries, K, pre_reorder_num_neighbors=N)
    return index.search_batched(queries, K)


def _reference(data, queries, metric):
    """Exact answers in float64 from the float32 values themselves."""
    x, q = data.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "squared_l2":
        scores = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        ids = np.argsort(scores, axis=1, kind="stable")[:, :K]
    else:
        scores = q @ x.T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return ids, np.take_along_axis(scores, ids, axis=1)


@pytest.fixture
def base(rng):
    return rng.standard_normal((N, DIM)).astype(np.float32), rng.standard_normal((20, DIM)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("data_scale", "query_scale"),
    [(1e-22, 1e-22), (1.0, 1e-41), (1e-30, 1.0), (1e15, 1e-40)],  # squares underflow; 1e-41 and 1e-40 are denormal
)
def test_cosine_normalises_tiny_and_denormal_rows(base, kind, data_scale, query_scale):
    data = (base[0] * np.float32(data_scale)).astype(np.float32)
    queries = (base[1] * np.float32(query_scale)).astype(np.float32)
    tiny = data if data_scale < 1 else queries
    assert (np.einsum("ij,ij->i", tiny, tiny) < np.finfo(np.float32).tiny).all()  # float32 squares underflow
    result = _search(_build(kind, data, "cosine"), queries)
    ids, scores = _reference(data, queries, "cosine")
    np.testing.assert_array_equal(result.ids, ids)
    # Denormal queries keep only a few significant bits: compare with the float64 answer for those values.
    np.testing.assert_allclose(result.distances, scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", METRICS)
def test_rows_whose_squares_overflow_float32_are_refused_at_build(base, kind, metric):
    data = base[0].copy()
    data[7] *= np.float32(1e20)  # squared norm ~1e40: over float32's 3.4e38
    with pytest.raises(ValueError, match=r"data row 7 .*overflow float32"):
        _build(kind, data, metric)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", METRICS)
def test_queries_whose_squares_overflow_float32_are_refused_at_search(base, kind, metric):
    index = _build(kind, base[0], metric)
    queries = base[1].copy()
    queries[3, 0] = 2e19  # the "coordinates above about 1.8e19"
    with pytest.raises(ValueError, match=r"row 3 .*overflow float32"):
        _search(index, queries)
    with pytest.raises(ValueError, match="overflow float32"):
        index.search(queries[3], K)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", METRICS)
def test_rows_just_inside_the_limit_give_finite_correct_answers(base, kind, metric):
    # The largest row (data or query) has squared norm 2**118, a quarter of the limit.
    data, queries = base
    largest = max(np.linalg.norm(data, axis=1).max(), np.linalg.norm(queries, axis=1).max())
    scale = np.float32(2.0**59 / largest)
    data, queries = data * scale, queries * scale
    result = _search(_build(kind, data, metric), queries)
    ids, scores = _reference(data, queries, metric)
    assert np.isfinite(result.distances).all()
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_allclose(result.distances, scores, rtol=1e-3)


def test_the_limit_is_what_the_message_says():
    assert _validate.MAX_SQUARED_NORM == 2.0**120
    ok = np.full((1, 4), 2.0**59, np.float32)  # squared norm 2**120 exactly: accepted
    _validate.database(ok)
    with pytest.raises(ValueError, match="2\\*\\*120"):
        _validate.database(ok * np.float32(1.01))


def test_float64_input_beyond_float32_is_reported_as_infinity_not_converted_silently():
    with pytest.raises(ValueError, match="NaN or infinity"):
        _validate.database(np.full((2, 3), 1e300))
