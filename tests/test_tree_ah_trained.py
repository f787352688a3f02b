"""TreeAhIndex.from_trained (given centers and codebook) and the shard merge (no Ray needed)."""

from __future__ import annotations

import numpy as np
import pytest

import annlib
from annlib.config import TreeAhConfig
from annlib.distributed._merge import merge_top_k


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((3000, 24)).astype(np.float32), rng.standard_normal((50, 24)).astype(np.float32)


def test_from_trained_with_an_index_own_training_rebuilds_that_index(data):
    x, q = data
    built = annlib.TreeAhIndex(x, "squared_l2", num_leaves=30, num_leaves_to_search=5, reorder=30)
    config = TreeAhConfig.from_dict(built.config)
    again = annlib.TreeAhIndex.from_trained(x, config, built.layout.centers, built._arrays["codebook"])
    for name in ("centers", "codebook", "entry_ids", "packed_codes", "leaf_offsets"):
        np.testing.assert_array_equal(again._arrays[name], built._arrays[name], err_msg=name)
    a, b = built.search_batched(q, 10), again.search_batched(q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_from_trained_accepts_fewer_points_than_leaves(data):
    x, q = data
    built = annlib.TreeAhIndex(x, "dot", num_leaves=30, reorder=None)
    config = TreeAhConfig.from_dict(built.config)
    small = annlib.TreeAhIndex.from_trained(x[:12], config, built.layout.centers, built._arrays["codebook"])
    assert small.stats()["partition_size"]["empty"] >= 30 - 12
    ids = small.search_batched(q, 5, leaves_to_search=30).ids
    assert ((ids >= 0) & (ids < 12)).all()


def test_from_trained_refuses_mismatched_shapes(data):
    x, _ = data
    built = annlib.TreeAhIndex(x, "dot", num_leaves=30, reorder=None)
    config = TreeAhConfig.from_dict(built.config)
    with pytest.raises(ValueError, match="centers have shape"):
        annlib.TreeAhIndex.from_trained(x, config, built.layout.centers[:-1], built._arrays["codebook"])
    with pytest.raises(ValueError, match="codebook has shape"):
        annlib.TreeAhIndex.from_trained(x, config, built.layout.centers, built._arrays["codebook"][:-1])


def test_merge_orders_by_distance_then_id_and_pads():
    a = (np.array([[5, 2, -1]]), np.array([[1.0, 3.0, np.inf]], dtype=np.float32))
    b = (np.array([[1, 9]]), np.array([[3.0, 0.5]], dtype=np.float32))
    ids, distances = merge_top_k([a, b], 6, "squared_l2")
    np.testing.assert_array_equal(ids, [[9, 5, 1, 2, -1, -1]])  # tie at 3.0: the smaller id first
    np.testing.assert_array_equal(distances, np.array([[0.5, 1.0, 3.0, 3.0, np.inf, np.inf]], dtype=np.float32))
    ids, distances = merge_top_k([a, b], 2, "dot")
    np.testing.assert_array_equal(ids, [[1, 2]])
    np.testing.assert_array_equal(distances, np.array([[3.0, 3.0]], dtype=np.float32))
