"""Merging per-shard top-k lists into one, ordered exactly as a single index orders them.

Pure numpy, no Ray: the driver merges, and a shard host merges the shards it holds.
A single index ranks by (distance, id): better distance first, the smaller id on ties
(``better()`` in ``csrc/core/top_k.h``). Merging sorted lists by the same key gives the
same order, so the merge of exact per-shard top-k lists equals the global top-k.
"""

from __future__ import annotations

import numpy as np

from annlib import _validate

_NO_ID = np.iinfo(np.int64).max  # empty slots (id -1) sort after every real id on equal keys


def larger_is_better(metric: str) -> bool:
    return metric in ("dot", "cosine")


def merge_top_k(parts: list[tuple[np.ndarray, np.ndarray]], k: int, metric: str,
                larger_better: bool | None = None, sources: bool = False):
    """Top ``k`` of the row-wise union of ``parts`` [(ids (nq, ki), values (nq, ki))].

    ``values`` are distances as searches return them (``larger_better`` from the metric) or,
    with ``larger_better=True``, raw scores. Ids are global; ``-1`` marks an empty slot.
    Returns (nq, k) arrays, padded with -1 and the metric's worst distance; with ``sources``,
    also (nq, k) the index in ``parts`` each result came from (-1 for empty slots).
    """
    if larger_better is None:
        larger_better = larger_is_better(metric)
    if len(parts) == 1 and parts[0][0].shape[1] == k and not sources:
        return parts[0]
    ids = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts], axis=1)
    values = np.concatenate([np.asarray(p[1], dtype=np.float32) for p in parts], axis=1)
    nq, width = ids.shape
    if width < k:
        worst = -np.inf if larger_better else np.inf
        ids = np.concatenate([ids, np.full((nq, k - width), -1, dtype=np.int64)], axis=1)
        values = np.concatenate([values, np.full((nq, k - width), worst, dtype=np.float32)], axis=1)
    key = -values if larger_better else values
    empty = ids < 0
    # An empty slot loses to every real candidate, whatever value it carries.
    key = np.where(empty, np.inf, key)
    order = np.lexsort((np.where(empty, _NO_ID, ids), key), axis=1)[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_values = np.take_along_axis(values, order, axis=1)
    if larger_better is larger_is_better(metric):
        out_values = np.where(out_ids < 0, np.float32(_validate.worst_distance(metric)), out_values)
    if not sources:
        return out_ids, out_values.astype(np.float32, copy=False)
    part_of_column = np.repeat(np.arange(len(parts)), [p[0].shape[1] for p in parts])
    part_of_column = np.concatenate([part_of_column, np.full(ids.shape[1] - len(part_of_column), -1)])
    source = np.where(out_ids < 0, -1, part_of_column[order])
    return out_ids, out_values.astype(np.float32, copy=False), source
