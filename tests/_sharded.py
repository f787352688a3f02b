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


def assert_same(a, b) -> None:
    """Same ids and the same distance bits."""
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.distances, b.distances)
