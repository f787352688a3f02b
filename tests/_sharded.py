"""What the sharding test modules compare a ShardedIndex with: one index over all rows built
from the sharded index's own centers and codebook, which must answer bit for bit alike."""

from __future__ import annotations

import numpy as np

import annlib
from annlib.config import TreeAhConfig


def single_like(sharded, x: np.ndarray, ids=None) -> annlib.TreeAhIndex:
    """One index over all rows `x` with the sharded index's centers and codebook (and user `ids`)."""
    shared = sharded.shared_arrays
    single = annlib.TreeAhIndex.from_trained(x, TreeAhConfig.from_dict(sharded.config["index"]), shared["centers"],
                                             shared["codebook"])
    if ids is not None:
        from annlib.index.ids import IdMap  # noqa: PLC0415

        single._set_ids(IdMap.of(np.asarray(ids, dtype=np.int64), len(x)))
    return single


def far_clusters(seed: int, n: int, num_queries: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and queries around 20 centers far from the origin, as SIFT's are: |q|^2 - score then
    rounds distinct scores to one distance, which is why shards hand over raw scores, never
    distances, to be merged."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim)).astype(np.float32) * 4 + 60
    x = centers[rng.integers(0, 20, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    q = centers[rng.integers(0, 20, num_queries)] + rng.standard_normal((num_queries, dim)).astype(np.float32)
    return x, q


def assert_same(a, b) -> None:
    """Same ids and the same distance bits."""
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)
