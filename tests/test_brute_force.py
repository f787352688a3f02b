"""Exact search against a numpy reference, on the real dataset and on seeded random data."""

from __future__ import annotations

import numpy as np
import pytest

import annlib

METRICS = ["dot", "cosine", "squared_l2"]


def numpy_reference(data, queries, k, metric):
    data = data.astype(np.float64)
    queries = queries.astype(np.float64)
    if metric == "cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    if metric == "squared_l2":
        scores = -(
            (queries**2).sum(1)[:, None] - 2 * queries @ data.T + (data**2).sum(1)[None, :]
        )
    else:
        scores = queries @ data.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    return order, (-best if metric == "squared_l2" else best)


def assert_matches_reference(result, ref_ids, ref_dist, metric, rtol=1e-4):
    ids, dist = result
    scale = max(1.0, float(np.abs(ref_dist).max()))
    np.testing.assert_allclose(dist, ref_dist, rtol=rtol, atol=rtol * scale)
    # ids must agree except where two points tie within float32 rounding
    differ = ids != ref_ids
    if differ.any():
        gaps = np.abs(dist[differ] - ref_dist[differ])
        assert (gaps <= rtol * scale).all()
    assert (differ.mean()) < 0.01


@pytest.mark.parametrize("metric", METRICS)
def test_matches_numpy_on_real_data(debian_minilm, metric):
    data, queries = debian_minilm["train"][:20000], debian_minilm["test"][:100]
    ref_ids, ref_dist = numpy_reference(data, queries, 10, metric)
    result = annlib.BruteForce(data, metric).search_batched(queries, 10)
    assert result.ids.dtype == np.int64 and result.distances.dtype == np.float32
    assert_matches_reference(result, ref_ids, ref_dist, metric)


def test_real_data_matches_file_ground_truth(debian_minilm):
    queries = debian_minilm["test"][:200]
    ids, dist = annlib.BruteForce(debian_minilm["train"], "cosine").search_batched(queries, 10)
    assert (ids[:, 0] == debian_minilm["neighbors"][:200, 0]).mean() > 0.99
    np.testing.assert_allclose(1.0 - dist, debian_minilm["distances"][:200, :10], atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [1, 3, 7, 8, 9, 17, 33, 128])
def test_matches_numpy_on_random_data(rng, metric, dim):
    data = rng.standard_normal((1000, dim)).astype(np.float32)
    queries = rng.standard_normal((70, dim)).astype(np.float32)
    ref_ids, ref_dist = numpy_reference(data, queries, 5, metric)
    result = annlib.BruteForce(data, metric).search_batched(queries, 5, num_threads=2)
    assert_matches_reference(result, ref_ids, ref_dist, metric)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_every_simd_path_equals_scalar(rng, isa):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    data = rng.standard_normal((5000, 97)).astype(np.float32)
    queries = rng.standard_normal((130, 97)).astype(np.float32)
    index = annlib.BruteForce(data, "squared_l2")
    with annlib.isa_override("scalar"):
        ref = index.search_batched(queries, 20)
    with annlib.isa_override(isa):
        got = index.search_batched(queries, 20)
    np.testing.assert_allclose(got.distances, ref.distances, rtol=1e-5, atol=1e-3)
    assert (got.ids == ref.ids).mean() > 0.999


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("dim", [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 384])
def test_dot_kernel_matches_scalar(rng, isa, dim):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    from annlib import _core

    queries = rng.standard_normal((9, dim)).astype(np.float32)
    points = rng.standard_normal((14, dim)).astype(np.float32)
    scalar = _core.dot_block(queries, points, "scalar")
    simd = _core.dot_block(queries, points, isa)
    exact = queries.astype(np.float64) @ points.T.astype(np.float64)
    # float32 sums in a different order: error bounded by dim * eps * sum |q_i x_i|
    bound = dim * np.finfo(np.float32).eps * (np.abs(queries) @ np.abs(points).T)
    assert (np.abs(simd - exact) <= bound + 1e-6).all()
    assert (np.abs(scalar - exact) <= bound + 1e-6).all()


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_one_query_kernel_gives_the_batch_bits(rng, isa):
    """One query streams the points through its own kernel (groups of 16 / 8 points, a
    transposed reduction); each score must have the bits the same query gets inside a batch,
    and stay within float32 rounding of the exact product. Point counts around the group
    size and dimensions around the vector width cover the point and lane tails."""
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    from annlib import _core

    for dim in [1, 3, 7, 8, 9, 15, 16, 17, 33, 128, 384]:
        for n in [1, 7, 8, 9, 15, 16, 17, 31, 33, 130]:
            queries = rng.standard_normal((5, dim)).astype(np.float32)
            points = rng.standard_normal((n, dim)).astype(np.float32)
            batch = _core.dot_block(queries, points, isa)
            exact = queries.astype(np.float64) @ points.T.astype(np.float64)
            bound = dim * np.finfo(np.float32).eps * (np.abs(queries) @ np.abs(points).T)
            for i in range(len(queries)):
                alone = _core.dot_block(queries[i : i + 1], points, isa)[0]
                np.testing.assert_array_equal(alone, batch[i], err_msg=f"dim={dim} n={n} query {i}")
                assert (np.abs(alone - exact[i]) <= bound[i] + 1e-6).all()


@pytest.mark.parametrize("metric", METRICS)
def test_single_query_search_matches_numpy_and_batch(debian_minilm, metric):
    """search() of one query (the one-query kernel, one thread) against the numpy reference
    on real data, and bit for bit against the same queries searched as a batch."""
    data, queries = debian_minilm["train"][:20011], debian_minilm["test"][:40]
    index = annlib.BruteForce(data, metric)
    alone = [index.search(q, 10) for q in queries]
    ids = np.stack([r.ids for r in alone])
    dist = np.stack([r.distances for r in alone])
    ref_ids, ref_dist = numpy_reference(data, queries, 10, metric)
    assert_matches_reference((ids, dist), ref_ids, ref_dist, metric)
    batch = index.search_batched(queries, 10, num_threads=1)
    np.testing.assert_array_equal(ids, batch.ids)
    np.testing.assert_array_equal(dist, batch.distances)


@pytest.mark.parametrize(("metric", "worst"), [("dot", -np.inf), ("squared_l2", np.inf)])
@pytest.mark.parametrize("n", [5, 16, 37])
def test_single_query_k_larger_than_n_pads(rng, metric, worst, n):
    data = rng.standard_normal((n, 19)).astype(np.float32)
    ids, dist = annlib.BruteForce(data, metric).search(data[3], n + 4)
    assert sorted(ids[:n]) == list(range(n))
    assert (ids[n:] == -1).all() and (dist[n:] == worst).all()
    ref_ids, ref_dist = numpy_reference(data, data[3:4], n, metric)
    np.testing.assert_allclose(dist[:n], ref_dist[0], rtol=1e-5, atol=1e-4)


def test_thread_counts_agree(rng):
    data = rng.standard_normal((20000, 32)).astype(np.float32)
    queries = rng.standard_normal((3, 32)).astype(np.float32)
    index = annlib.BruteForce(data, "dot")
    one = index.search_batched(queries, 15, num_threads=1)
    two = index.search_batched(queries, 15, num_threads=2)
    many = index.search_batched(queries, 15, num_threads=5)
    np.testing.assert_array_equal(one.ids, two.ids)
    np.testing.assert_array_equal(one.ids, many.ids)


@pytest.mark.parametrize(("nq", "dim"), [(63, 40), (257, 40), (600, 40), (300, 1000), (130, 1600)])
def test_query_blocks_of_every_size_match_numpy(rng, nq, dim):
    """Queries are searched in blocks sized by the dimension (256 rows up to 384 dimensions, 64 at
    1,536) and split evenly over the threads: uneven and several blocks, one thread or many, give
    numpy's answer."""
    data = rng.standard_normal((9000, dim)).astype(np.float32)
    queries = rng.standard_normal((nq, dim)).astype(np.float32)
    ref_ids, ref_dist = numpy_reference(data, queries, 10, "squared_l2")
    index = annlib.BruteForce(data, "squared_l2")
    for threads in (1, 2, 3):
        assert_matches_reference(index.search_batched(queries, 10, num_threads=threads), ref_ids, ref_dist,
                                 "squared_l2")


def test_single_query_is_1d(rng):
    data = rng.standard_normal((50, 8)).astype(np.float32)
    ids, dist = annlib.BruteForce(data, "squared_l2").search(data[7], 3)
    assert ids.shape == (3,) and dist.shape == (3,)
    assert ids[0] == 7 and dist[0] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(("metric", "worst"), [("dot", -np.inf), ("cosine", -np.inf), ("squared_l2", np.inf)])
def test_k_larger_than_n_pads(rng, metric, worst):
    data = rng.standard_normal((4, 5)).astype(np.float32)
    ids, dist = annlib.BruteForce(data, metric).search_batched(data[:2], 7)
    assert ids.shape == (2, 7)
    assert sorted(ids[0, :4]) == [0, 1, 2, 3]
    assert (ids[:, 4:] == -1).all() and (dist[:, 4:] == worst).all()
    assert np.isfinite(dist[:, :4]).all()


def test_float64_and_noncontiguous_input(rng):
    data64 = rng.standard_normal((300, 24))
    strided = np.asfortranarray(data64)[:, ::2]
    index = annlib.BruteForce(strided, "dot")
    ids, _ = index.search_batched(strided[::3], 1)
    ref_ids, _ = numpy_reference(strided.astype(np.float32), strided[::3].astype(np.float32), 1, "dot")
    np.testing.assert_array_equal(ids, ref_ids)
    index_int = annlib.BruteForce(np.arange(12).reshape(4, 3), "squared_l2")
    assert index_int.search([0, 1, 2], 1).ids[0] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((0, 4), np.float32), "empty"),
        (np.zeros(4, np.float32), "2-D"),
        (np.array([[1.0, np.nan]], np.float32), "NaN"),
        (np.array([[1.0, np.inf]], np.float32), "NaN or infinity"),
        (np.zeros((3, 0), np.float32), "at least one dimension"),
    ],
)
def test_bad_data_raises(data, message):
    with pytest.raises(ValueError, match=message):
        annlib.BruteForce(data, "dot")


def test_bad_queries_and_k_raise(rng):
    index = annlib.BruteForce(rng.standard_normal((10, 4)).astype(np.float32), "dot")
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        index.search_batched(np.zeros((2, 5), np.float32), 1)
    with pytest.raises(ValueError, match="NaN"):
        index.search_batched(np.full((2, 4), np.nan, np.float32), 1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search_batched(np.zeros((2, 4), np.float32), 0)
    with pytest.raises(TypeError, match="k must be a positive integer"):
        index.search(np.zeros(4, np.float32), 1.5)
    with pytest.raises(ValueError, match="num_threads"):
        index.search_batched(np.zeros((2, 4), np.float32), 1, num_threads=-1)
    with pytest.raises(TypeError, match="numeric"):
        index.search(np.array(["a", "b", "c", "d"]), 1)
    with pytest.raises(ValueError, match="metric must be one of"):
        annlib.BruteForce(np.zeros((2, 2), np.float32), "hamming")


def test_metric_aliases():
    data = np.eye(3, dtype=np.float32)
    assert annlib.BruteForce(data, "dot_product").metric == "dot"
    assert annlib.BruteForce(data, "angular").metric == "cosine"
    assert annlib.BruteForce(data, "euclidean").metric == "squared_l2"


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
@pytest.mark.parametrize(("n", "dim"), [(1, 1), (7, 3), (8, 16), (17, 33), (129, 64), (224, 384), (1000, 128)])
def test_dimension_major_kernel_matches_numpy(rng, isa, n, dim):
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    from annlib import _core

    query = rng.standard_normal(dim).astype(np.float32)
    points = rng.standard_normal((n, dim)).astype(np.float32)
    got = _core.dot_by_dim(query, points, isa)
    exact = points.astype(np.float64) @ query.astype(np.float64)
    bound = dim * np.finfo(np.float32).eps * (np.abs(points) @ np.abs(query))
    assert (np.abs(got - exact) <= bound + 1e-6).all()


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("dim", [1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 128, 384])
def test_int8_row_kernel_matches_numpy(rng, isa, dim):
    """int8 reordering scores a float32 query against int8 rows; every path, tails included."""
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    from annlib import _core

    q = rng.standard_normal(dim).astype(np.float32)
    x = rng.integers(-128, 128, size=dim).astype(np.int8)
    got = _core.dot_f32_i8(q, x, isa)
    exact = float(q.astype(np.float64) @ x.astype(np.float64))
    bound = dim * np.finfo(np.float32).eps * float(np.abs(q) @ np.abs(x.astype(np.float64)))
    assert abs(got - exact) <= bound + 1e-6, (got, exact)


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
@pytest.mark.parametrize(("n", "dim"), [(1, 3), (7, 3), (16, 5), (70, 33), (224, 384), (1000, 128)])
@pytest.mark.parametrize("num_queries", [2, 3, 4, 5, 9])
def test_dimension_major_kernel_batches_bit_for_bit(rng, isa, n, dim, num_queries):
    """Tree-AH search scores a task's queries against the centers together; each
    query's scores must be the very bits it gets alone, or a batch and single
    queries could rank two nearly tied leaves differently."""
    if isa not in annlib.supported_isas():
        pytest.skip(f"this CPU cannot run {isa}")
    from annlib import _core

    queries = rng.standard_normal((num_queries, dim)).astype(np.float32)
    points = rng.standard_normal((n, dim)).astype(np.float32)
    together = _core.dot_by_dim(queries, points, isa)
    assert together.shape == (num_queries, n)
    for i, query in enumerate(queries):
        np.testing.assert_array_equal(together[i], _core.dot_by_dim(query, points, isa))


@pytest.mark.parametrize("metric", ["dot", "squared_l2"])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_exact_ties_go_to_the_smallest_id(metric, num_threads):
    """Integer data with many equal scores: the k kept are the smallest ids among
    the tied, exactly as a stable sort orders them, also when threads split the
    points into shards (n >= 8192) and across the selection's compactions."""
    rng = np.random.default_rng(7)
    data = rng.integers(-1, 2, size=(9000, 4)).astype(np.float32)
    queries = np.vstack([rng.integers(-1, 2, size=(5, 4)), np.zeros((1, 4))]).astype(np.float32)
    index = annlib.BruteForce(data, metric)
    ids, dist = index.search_batched(queries, 300, num_threads=num_threads)
    ref_ids, ref_dist = numpy_reference(data, queries, 300, metric)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(dist, ref_dist)


@pytest.mark.parametrize("metric", ["dot", "squared_l2"])
def test_single_query_ties_go_to_the_smallest_id(metric):
    """The same tie-heavy data searched one query per call (the one-query kernel; 9000
    points is not a multiple of its 16-point groups nor of the 128-point tiles)."""
    rng = np.random.default_rng(7)
    data = rng.integers(-1, 2, size=(9000, 4)).astype(np.float32)
    queries = np.vstack([rng.integers(-1, 2, size=(5, 4)), np.zeros((1, 4))]).astype(np.float32)
    index = annlib.BruteForce(data, metric)
    ref_ids, ref_dist = numpy_reference(data, queries, 300, metric)
    for query, want_ids, want_dist in zip(queries, ref_ids, ref_dist):
        ids, dist = index.search(query, 300)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(dist, want_dist)
