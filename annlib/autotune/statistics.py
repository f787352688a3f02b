"""The statistics pass of the autotuner (algorithms.md 5.2).

Run once per tuning query set, it records for every tuning query q and each of its
exact top-k neighbors g the stage at which g would be lost:

* ``leaf_rank[q, g]``: rank (1-based) of g's partition among all centers under the query's
  partition score, the min over both partitions under SOAR. g survives partition
  selection iff ``leaf_rank <= leaves_to_search``.
* ``ah_rank[q, g, j]``: rank (1-based) of g among the de-duplicated candidates of the
  ``t1_grid[j]`` best partitions under the quantized (LUT16 AH) score -- exactly the
  order the index's own search keeps them in (the C++ pass ``_core.autotune_ah_ranks``
  scores exactly as the search does, one scan per query; the fallback runs the index itself
  with ``pre_reorder_num_neighbors = 0`` and ``max_rank`` results per grid point). ``max_rank + 1`` when g is
  not among the ``max_rank`` best candidates or its partitions were not probed. g is
  reordered, hence returned (reordering is exact and ``k <= t2``), iff ``ah_rank <= t2``.
* ``entries[q, j]``: entries in the ``t1_grid[j]`` best partitions (LUT16 work).

The search space covers the whole useful range: ``t1_grid`` runs up to the deepest partition
holding a true neighbour of any tuning query (more leaves cannot raise recall), and ``max_rank``
to the depth where recall saturates. On an unspilled index the C++ pass ranks by counting the
entries that beat each neighbour's own score, so its cost does not depend on the depth: it ranks
to :func:`max_rank_cap` and the saturation depth is read off all the queries' ranks. A spilled
index de-duplicates a selection of ``max_rank`` candidates instead, so a probe pass on a
subsample sizes the depth first (:func:`saturation_depth`). On data with a flat distance
distribution the quantized order is noisy and that depth is several hundred candidates.

Everything is vectorised over queries and neighbors; the per-query loops are in C++.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from annlib import _validate
from annlib.index import BruteForce

#: Queries drawn from the indexed points when the caller gives none.
DEFAULT_NUM_TUNING_QUERIES = 1000
_CHUNK = 256  # queries per vectorised rank lookup (bounds a (chunk, k, max_rank) boolean array)


@dataclasses.dataclass(frozen=True)
class QueryStatistics:
    """What the statistics pass measured; the solver needs nothing else."""

    k: int
    t1_grid: np.ndarray  # (G,) int64 ascending leaves_to_search values the AH ranks were measured at
    leaf_rank: np.ndarray  # (nq, k) int64, 1-based; num_leaves + 1 for a missing truth slot
    ah_rank: np.ndarray  # (nq, k, G) int32, 1-based; max_rank + 1 = lost
    entries: np.ndarray  # (nq, G) float64 entries scored by LUT16 at each grid point
    valid: np.ndarray  # (nq, k) bool: a real ground-truth neighbor (k <= number of other points)
    max_rank: int
    num_leaves: int
    source: str  # "user" or "held-out sample"
    seconds: float
    # Spilled (SOAR) indexes only: position of g's best copy among all candidate entries, 0 = beyond;
    # the search keeps ceil(overretrieve * t2) entries before de-duplicating. None: not spilled.
    entry_rank: np.ndarray | None = None
    overretrieve: float = 2.0
    # (nq,) int64: each query's best partition. Queries sharing a partition share its leaf coverage
    # (which true neighbours lie across its borders), so the solver treats them as one cluster when
    # it computes the standard error. None: queries treated as independent.
    query_leaf: np.ndarray | None = None

    @property
    def num_queries(self) -> int:
        return int(self.leaf_rank.shape[0])


#: Queries of the probe pass that sizes ``max_rank``.
PROBE_QUERIES = 200
#: Fraction of (query, neighbour) pairs of the probe allowed to lie deeper than ``max_rank``.
SATURATION_TOLERANCE = 0.001


def default_max_rank(n: int, k: int) -> int:
    """Shallowest ``max_rank`` the tuner records (deeper where the probe says recall needs it)."""
    return int(min(n, max(250, 25 * k)))


def max_rank_cap(n: int, k: int) -> int:
    """Deepest ``max_rank`` the probe may ask for: bounds the statistics pass's time and memory."""
    return int(min(n, max(4 * default_max_rank(n, k), n // 5)))


def saturation_depth(index, queries: np.ndarray, truth: np.ndarray, exclude: np.ndarray | None, t1_max: int,
                     num_threads: int, seed: int = 0) -> int:
    """The ``pre_reorder_num_neighbors`` beyond which recall cannot grow: 1.2 times the depth that
    holds all but :data:`SATURATION_TOLERANCE` of the true neighbours among the AH candidates of the
    ``t1_max`` best partitions (ranks only grow with more partitions, so this bounds every t1), on
    at most :data:`PROBE_QUERIES` of the queries; clipped to [default_max_rank, max_rank_cap]."""
    n, k = index.n, truth.shape[1]
    floor, cap = default_max_rank(n, k), max_rank_cap(n, k)
    if cap <= floor:
        return cap
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(queries), min(len(queries), PROBE_QUERIES), replace=False))
    sub_truth = truth[rows]
    ranks, _ = index.layout.ah_ranks(queries[rows], sub_truth, None if exclude is None else exclude[rows],
                                     np.array([t1_max], dtype=np.int64), cap, num_threads)
    return _saturation(ranks[:, :, 0][sub_truth >= 0], n, k)


def _saturation(ranks: np.ndarray, n: int, k: int) -> int:
    """1.2 times the depth holding all but SATURATION_TOLERANCE of ``ranks`` (the true neighbours'
    ranks at the deepest t1), within [default_max_rank, max_rank_cap]."""
    floor, cap = default_max_rank(n, k), max_rank_cap(n, k)
    if ranks.size == 0 or cap <= floor:
        return min(floor, cap)
    needed = float(np.quantile(ranks, 1.0 - SATURATION_TOLERANCE, method="higher"))
    return int(min(cap, max(floor, math.ceil(1.2 * needed))))


def _index_data(index) -> np.ndarray | None:
    """The indexed float vectors (normalised for cosine) when the index keeps them for reordering."""
    return index.layout.reorder_vectors


def tuning_queries(index, queries=None, data=None, k: int = 10, num_queries: int = DEFAULT_NUM_TUNING_QUERIES,
                   seed: int = 0):
    """Tuning queries with exact top-k ground truth on the index's metric.

    Returns ``(queries, truth_ids, exclude, source)``. Without user queries, ``num_queries``
    indexed points are drawn at random (without replacement) and each one's own id is
    removed from its ground truth (``exclude`` holds it, so the statistics ignore it too).
    User queries beyond ``num_queries`` are sampled down to it (seeded, in their order): the
    ground truth is exact search, so a whole query log (10,000 SIFT queries over 1M rows: 40 CPU
    seconds) would cost more than the index's build.
    """
    base = data if data is not None else _index_data(index)
    if base is None:
        raise ValueError(
            "autotune needs the indexed vectors for exact ground truth: this index keeps no float32 "
            "reordering data, so pass data= (the vectors the index was built from)"
        )
    base = _validate.database(base)
    if base.shape != (index.n, index.dim):
        raise ValueError(f"data has shape {base.shape}, the index holds ({index.n}, {index.dim})")

    def neighbors(q, depth):
        # The index's own rows and norms, scored in place, on every core; user data (or an index
        # without them) through an exact index that shares the rows where it can.
        ids = index.layout.exact_neighbors(q, depth, 0) if data is None else None
        return ids if ids is not None else BruteForce(base, index.metric, copy=False).search_batched(q, depth).ids
    if queries is not None:
        queries, _ = _validate.queries(queries, index.dim)
        if queries.shape[0] == 0:
            raise ValueError("queries is empty")
        if queries.shape[0] > num_queries:
            rows = np.sort(np.random.default_rng(seed).choice(queries.shape[0], num_queries, replace=False))
            queries = np.ascontiguousarray(queries[rows])
        truth = neighbors(queries, min(k, index.n))
        return queries, truth, None, "user"
    if index.n < 2:
        raise ValueError("an index of fewer than 2 points cannot be tuned on its own points; pass queries=")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(index.n, min(num_queries, index.n), replace=False)).astype(np.int64)
    sample = np.ascontiguousarray(base[picked])
    depth = min(k + 1, index.n)
    ids = neighbors(sample, depth)
    is_self = ids == picked[:, None]
    # Drop the query point itself; where a tie pushed it out of the list, drop the last slot instead.
    missing = ~is_self.any(axis=1)
    is_self[missing, depth - 1] = True
    truth = ids[~is_self].reshape(len(picked), depth - 1)
    return sample, truth, picked, "held-out sample"


def _partition_ranks(index, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nq, num_leaves) 1-based rank of every center under the search's partition score, and the
    centers best first."""
    scores = index.layout.center_scores(queries)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return ranks, order


def coverage_for(target: float | None) -> float:
    """Share of the true neighbours the leaves grid must reach for a recall ``target``: all but a
    hundredth of the target's distance to 1 (0.998 for 0.80, 0.9999 for 0.99), all of them for a
    cost budget (the best recall within it). A tenth was not enough: on low-contrast data the
    cheapest way to 0.90 probes the leaves holding 99% of the neighbours (the quantized scores
    lose the rest). One tuning query with a neighbour in a far partition had the statistics pass
    scan 170 of MiniLM's 224 leaves for every query, while half of them have all ten within 5."""
    if target is None:
        return 1.0
    return min(1.0, 1.0 - (1.0 - float(target)) / 100.0)


def default_t1_grid(leaf_rank: np.ndarray, valid: np.ndarray, num_leaves: int, coverage: float = 1.0,
                    ratio: float = 1.08, dense_up_to: int = 10) -> np.ndarray:
    """leaves_to_search values to evaluate: 1..dense_up_to, then geometric, up to the number of
    partitions holding ``coverage`` of the true neighbors (all of them by default: more leaves
    cannot raise recall further), at most ``num_leaves``."""
    ranks = np.sort(leaf_rank[valid])
    if ranks.size:
        t_max = int(ranks[min(ranks.size - 1, int(math.ceil(coverage * ranks.size)) - 1)])
        t_max = min(num_leaves, max(t_max, 1))
    else:
        t_max = 1
    grid = set(range(1, min(dense_up_to, t_max) + 1))
    value = float(min(dense_up_to, t_max))
    while value < t_max:
        value *= ratio
        grid.add(min(t_max, int(round(value))))
    grid.add(t_max)
    return np.array(sorted(grid), dtype=np.int64)


def _ah_ranks(ids: np.ndarray, truth: np.ndarray, exclude: np.ndarray | None, lost: int) -> np.ndarray:
    """1-based position of each truth id in the AH-ordered candidate lists (``lost`` when absent),
    not counting the excluded query point itself."""
    nq, k = truth.shape
    out = np.full((nq, k), lost, dtype=np.int32)
    for begin in range(0, nq, _CHUNK):
        end = min(nq, begin + _CHUNK)
        block = ids[begin:end]
        eq = block[:, None, :] == truth[begin:end, :, None]  # (chunk, k, max_rank)
        found = eq.any(axis=2)
        pos = eq.argmax(axis=2) + 1
        if exclude is not None:
            is_self = block == exclude[begin:end, None]
            self_found = is_self.any(axis=1)
            self_pos = np.where(self_found, is_self.argmax(axis=1) + 1, np.iinfo(np.int32).max)
            pos = pos - (self_pos[:, None] < pos)
        out[begin:end] = np.where(found, pos, lost)
    return out


def gather(index, queries: np.ndarray, truth: np.ndarray, exclude: np.ndarray | None = None, *,
           source: str = "user", t1_grid=None, max_rank: int | None = None, num_threads: int | None = None,
           coverage: float = 1.0, force_python: bool = False, seed: int = 0) -> QueryStatistics:
    """The statistics pass over tuning queries with ground truth ``truth`` (nq, k).

    ``max_rank=None`` sizes the candidate depth with :func:`saturation_depth`."""
    start = time.perf_counter()
    k = int(truth.shape[1])
    layout = index.layout
    num_leaves = layout.num_leaves
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    valid = truth >= 0
    safe_truth = np.where(valid, truth, 0)

    # Partition stage: rank of every center, then of each true neighbor's partition(s).
    ranks, order = _partition_ranks(index, queries)
    primary = layout.primary_leaf.astype(np.int64)
    leaf_rank = np.take_along_axis(ranks, primary[safe_truth], axis=1)
    secondary = layout.secondary_leaf
    if secondary is not None:
        second = secondary.astype(np.int64)[safe_truth]
        second_rank = np.take_along_axis(ranks, np.maximum(second, 0), axis=1)
        leaf_rank = np.where(second >= 0, np.minimum(leaf_rank, second_rank), leaf_rank)
    leaf_rank = np.where(valid, leaf_rank, num_leaves + 1)

    # LUT16 work: entries in the t1 best partitions.
    sizes = layout.leaf_sizes.astype(np.float64)
    cumulative = np.cumsum(sizes[order], axis=1)  # (nq, num_leaves)

    grid = default_t1_grid(leaf_rank, valid, num_leaves, coverage) if t1_grid is None else np.unique(
        np.asarray(t1_grid, dtype=np.int64))
    if grid.size == 0 or grid[0] < 1 or grid[-1] > num_leaves:
        raise ValueError(f"t1_grid values must lie in [1, {num_leaves}]")
    entries = cumulative[:, grid - 1]

    # Quantized stage: the index's own AH order of the candidates, at every grid point.
    threads = _validate.num_threads(num_threads)
    sized_after = max_rank is None and not layout.spilled and not force_python
    if sized_after:
        # Unspilled: the C++ pass counts instead of selecting, so its cost does not grow with the
        # depth; rank every query to the cap once and size max_rank from all of them (no probe).
        max_rank = max_rank_cap(index.n, k)
    elif max_rank is None:
        max_rank = saturation_depth(index, queries, np.where(valid, truth, -1), exclude, int(grid[-1]), threads, seed)
    max_rank = int(min(max_rank, index.n))
    lost = max_rank + 1
    if not force_python:
        # One scan of the t1_max best partitions per query, ranks read at every grid checkpoint.
        ah_rank, entry_rank = layout.ah_ranks(queries, np.where(valid, truth, -1), exclude, grid, max_rank, threads)
    else:
        # The same ranks from the index's own search, one call per grid point (slower).
        ah_rank = np.empty((len(queries), k, len(grid)), dtype=np.int32)
        depth = min(max_rank + (1 if exclude is not None else 0), index.n)  # the query point takes one slot
        for j, t1 in enumerate(grid):
            ids = layout.ah_candidates(queries, depth, int(t1), threads)
            ranks_j = _ah_ranks(ids, safe_truth, exclude, lost)
            ranks_j[ranks_j > max_rank] = lost
            ranks_j[~valid] = lost
            ah_rank[:, :, j] = ranks_j
        entry_rank = ah_rank.copy()  # approximate under spilling: the search's own overretrieval already applied
    if sized_after:
        # Only the neighbours the deepest leaves setting covers: one in a partition beyond it (the
        # grid stops short of some for a recall target) is found at no depth, and counted in, it
        # drove the depth to its cap (40,000 candidates on SIFT-200k at 0.80).
        max_rank = _saturation(ah_rank[:, :, -1][valid & (leaf_rank <= grid[-1])], index.n, k)
        ah_rank[ah_rank > max_rank] = max_rank + 1
        entry_rank[entry_rank > max_rank] = 0
    spilled = layout.spilled
    return QueryStatistics(
        k=k,
        t1_grid=grid,
        leaf_rank=leaf_rank.astype(np.int64),
        ah_rank=ah_rank,
        entries=entries,
        valid=valid,
        max_rank=max_rank,
        num_leaves=num_leaves,
        source=source,
        entry_rank=entry_rank if spilled else None,
        overretrieve=layout.overretrieve_factor,
        query_leaf=order[:, 0].astype(np.int64),
        seconds=time.perf_counter() - start,
    )
