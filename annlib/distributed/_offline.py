"""Batch search of a ``ray.data.Dataset`` of queries (``map_batches``), for offline jobs.

The function Ray Data ships to its workers carries a *client* of the sharded index: its
shared arrays, settings and actor handles (which pickle), not its data. In a worker the client
searches as the driver does (same routing, same merge, same results) by calling the same
actors. It never restarts an actor: restarts belong to the driver's index, which knows which
shards were saved, so a worker that finds an actor dead fails its batch with
:class:`annlib.distributed.ShardError` (Ray Data may retry the batch; ``search`` from the
driver restores the actor).
"""

from __future__ import annotations

import numpy as np


def client_state(index) -> dict:
    """What a worker needs to search through the actors of ``index``."""
    state = dict(index.__dict__)
    state.update(restart=False, _saved={}, _dirty=set(), last_search_stats={})
    return state


class DatasetSearch:
    """``batch -> batch`` with the result columns added; picklable (see the module docs)."""

    def __init__(self, cls, state: dict, k: int | None, column: str, ids_column: str, distances_column: str,
                 num_threads: int | None, search_kwargs: dict):
        self._cls, self._state = cls, state
        self._k, self._column = k, column
        self._ids_column, self._distances_column = ids_column, distances_column
        self._num_threads, self._kwargs = num_threads, search_kwargs

    def __call__(self, batch: dict) -> dict:
        from annlib.distributed._sources import _column_matrix  # noqa: PLC0415

        if self._column not in batch:
            raise ValueError(f"the query dataset has no column {self._column!r} (columns: {sorted(batch)})")
        queries = np.ascontiguousarray(_column_matrix(batch[self._column], self._column), dtype=np.float32)
        index = self._cls.__new__(self._cls)
        index.__dict__.update(self._state)
        result = index.search_batched(queries, self._k, num_threads=self._num_threads, **self._kwargs)
        out = dict(batch)
        out[self._ids_column] = result.ids
        out[self._distances_column] = result.distances
        return out
