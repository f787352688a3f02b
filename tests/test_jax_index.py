"""The JAX brute force as an index type: builder, search API, recall, save/load, validation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

import annlib  # noqa: E402


@pytest.fixture(scope="module")
def sample(request):
    return request.getfixturevalue("real_sample")


@pytest.mark.parametrize("metric", ["dot", "cosine", "squared_l2"])
def test_builder_jax_recall(sample, metric):
    data, queries = sample["train"], sample["test"]
    index = annlib.builder(data, 10, metric).brute_force(backend="jax", recall_target=0.95).build()
    assert isinstance(index, annlib.JaxBruteForce)
    exact = annlib.BruteForce(data, metric).search_batched(queries, 10)
    found = index.search_batched(queries)
    larger = metric != "squared_l2"
    recall = annlib.recall(found.distances, exact.distances, 10, epsilon=1e-4, larger_is_better=larger)
    assert recall >= 0.92, recall
    assert found.ids.dtype == np.int64 and found.distances.dtype == np.float32
    exact_jax = index.search_batched(queries, recall_target=1.0)
    assert annlib.recall(exact_jax.distances, exact.distances, 10, epsilon=1e-4, larger_is_better=larger) >= 0.999


def test_single_query_and_save_load(sample, tmp_path):
    index = annlib.builder(sample["train"][:2000], 5, "cosine").brute_force(backend="jax").build()
    ids, dist = index.search(sample["test"][0])
    assert ids.shape == (5,) and dist.shape == (5,)
    path = tmp_path / "jax.annl"
    index.save(path)
    loaded = annlib.JaxBruteForce.load(path)
    np.testing.assert_array_equal(loaded.search_batched(sample["test"][:20]).ids,
                                  index.search_batched(sample["test"][:20]).ids)
    assert loaded.config == index.config
    with pytest.raises(annlib.FormatError):
        annlib.TreeAhIndex.load(path)


def test_bad_input_raises(sample):
    index = annlib.builder(sample["train"][:500], 5, "dot").brute_force(backend="jax").build()
    with pytest.raises(ValueError, match="NaN"):
        index.search_batched(np.full((2, 384), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"shape \(n, 384\)"):
        index.search_batched(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="recall_target"):
        index.search_batched(sample["test"][:2], recall_target=1.5)
    with pytest.raises(ValueError, match="backend"):
        annlib.builder(sample["train"][:500], 5, "dot").brute_force(backend="cuda")
