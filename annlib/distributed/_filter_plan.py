"""The plan of a filtered exact-merge search, made in the driver from figures summed over the shards.

Pure numpy, no Ray. One tree-AH index plans a filtered search from figures over all its points
(:mod:`annlib.index.planner`, :mod:`annlib.index.filtered`): each filter's allowed count picks
its route, and on the index route each query walks its leaves best first until it has passed
as many allowed entries as its ``leaves_to_search`` best leaves hold (``choose_leaves`` in
``csrc/core/tree_ah_search.cc``). Per-leaf counts and sizes are sums over disjoint shards, so
the driver sums what every shard reports (:meth:`ShardHost.filter_counts`), chooses the routes
as one index would, and hands every shard the whole index's per-leaf allowed counts and sizes:
each shard's core then walks the leaves one index walks, and the two-round exact merge
reproduces that index's filtered candidate list.

Counts are exact for id lists and bitmaps; a predicate's are estimates from each shard's own
sample (one index estimates from one sample of all its points), so for predicates the walk is
one index's walk only up to that estimate.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from annlib.distributed import _routing


@dataclasses.dataclass(frozen=True)
class Figures:
    """The distinct filters of a call over the whole sharded index."""

    leaf_allowed: np.ndarray  # (filters, num_leaves) int64
    leaf_sizes: np.ndarray  # (num_leaves,) int64
    allowed: np.ndarray  # (filters,) float64
    estimated: np.ndarray  # (filters,) bool
    passes_all: np.ndarray  # (filters,) bool
    live: int
    shard_allowed: dict  # {shard_id: (filters, num_leaves)}: which shards hold allowed entries where

    @classmethod
    def summed(cls, per_shard: dict) -> Figures:
        """From {shard_id: :meth:`ShardHost.filter_counts` figures} of every shard."""
        parts = list(per_shard.values())
        return cls(
            leaf_allowed=np.ascontiguousarray(np.sum([p["leaf_allowed"] for p in parts], axis=0), dtype=np.int64),
            leaf_sizes=np.ascontiguousarray(np.sum([p["leaf_sizes"] for p in parts], axis=0), dtype=np.int64),
            allowed=np.sum([p["allowed"] for p in parts], axis=0),
            estimated=np.any([p["estimated"] for p in parts], axis=0),
            passes_all=np.all([p["passes_all"] for p in parts], axis=0),
            live=int(sum(p["live"] for p in parts)),
            shard_allowed={s: p["leaf_allowed"] for s, p in per_shard.items()},
        )


def routes(fig: Figures, k: int, route: str, exact_available: bool, leaves_to_search: int, pre_reorder: int,
           costs) -> tuple[list[str], dict]:
    """The route of each filter and the predicted (index, exact) seconds of those weighed, as
    :func:`annlib.index.planner.choose` decides for one index; ``costs()`` gives a shard's
    measured :class:`~annlib.index.planner.RouteCosts` (asked only when a choice needs them)."""
    from annlib.index import planner  # noqa: PLC0415

    if route != "auto":
        return [route] * len(fig.allowed), {}
    out, predicted = [], {}
    for i in range(len(fig.allowed)):
        if fig.passes_all[i] or not exact_available:
            out.append("index")
        elif not fig.estimated[i] and fig.allowed[i] < k:
            out.append("exact")
        else:
            measured = costs()
            counts = None if fig.estimated[i] else fig.leaf_allowed[i]
            if measured.model is None:  # (a tree-AH shard always has one)
                out.append("index")
                continue
            index_cost, exact_cost = planner.predict_tree_ah(measured, fig.allowed[i], fig.live, fig.leaf_sizes,
                                                             counts, leaves_to_search, pre_reorder)
            predicted[i] = (index_cost, exact_cost)
            out.append("exact" if exact_cost < index_cost else "index")
    return out, predicted


def walked_leaves(scores: np.ndarray, leaves_to_search: int, fig: Figures, q_filter: np.ndarray) -> np.ndarray:
    """(nq, num_leaves) bool: the leaves each query's filtered walk may scan (a superset: ranked
    with numpy, whose scores may differ from the core's in the last bits, so near-ties at the
    walk's boundaries count as walked, within :data:`_routing.MARGIN`). Leaves with no allowed
    entry are never scanned, so never included."""
    nq, num_leaves = scores.shape
    allowed = fig.leaf_allowed[q_filter]  # (nq, num_leaves)
    if leaves_to_search >= num_leaves:
        return allowed > 0
    tol = (_routing.MARGIN * np.abs(scores).max(axis=1) + 1e-30)[:, None]
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(scores, order, axis=1)
    # The walk's target: the sizes of the first leaves_to_search leaves, at its largest over near-ties.
    target = ((scores >= ranked[:, leaves_to_search - 1 : leaves_to_search] - tol) * fig.leaf_sizes).sum(axis=1)
    passed = np.cumsum(np.take_along_axis(allowed, order, axis=1), axis=1)
    done = (np.arange(num_leaves) >= leaves_to_search - 1)[None, :] & (passed >= target[:, None])
    stop = np.where(done.any(axis=1), np.argmax(done, axis=1), num_leaves - 1)
    last = ranked[np.arange(nq), stop][:, None]
    return (scores >= last - tol) & (allowed > 0)


def shards_of_walk(walked: np.ndarray, fig: Figures, q_filter: np.ndarray, num_shards: int) -> np.ndarray:
    """(nq, num_shards) bool: the shards holding an allowed entry in one of a query's walked leaves."""
    out = np.zeros((walked.shape[0], num_shards), dtype=bool)
    for s, counts in fig.shard_allowed.items():
        out[:, s] = (walked & (counts[q_filter] > 0)).any(axis=1)
    return out
