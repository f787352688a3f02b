"""The one sweep grid of every benchmark: query-time settings per algorithm, and when a sweep stops.

Each adapter walks "inner sweeps": lists of query-parameter dicts in ascending cost. Tree indexes
(annlib, scann) and faiss IVF sweep leaves probed for each candidate count rescored; graph indexes
sweep ``ef``; the JAX brute force sweeps its recall target. A sweep stops early (see
:func:`should_stop`), so a fine grid costs time only where the recall-QPS frontier is.
"""

from __future__ import annotations

import math

__all__ = [
    "HNSW_EF",
    "IVF_KFACTOR",
    "IVF_NPROBE",
    "JAX_RECALL_TARGETS",
    "PLATEAU",
    "PLATEAU_FROM",
    "STOP_RECALL",
    "TREE_LEAVES",
    "TREE_REORDER",
    "ef_sweeps",
    "ivf_sweeps",
    "num_partitions",
    "should_stop",
    "tree_sweeps",
]

#: Leaves probed (``leaves_to_search``) by annlib and scann, ascending.
TREE_LEAVES = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20, 24, 28, 33, 40, 48, 56, 64, 80, 100, 128, 160, 200]
#: Candidates rescored exactly (``pre_reorder_num_neighbors``); raised to at least k.
TREE_REORDER = [20, 30, 40, 60, 100, 200]
#: faiss IVF: lists probed, and the refine factor (candidates rescored = k_factor * k).
IVF_NPROBE = TREE_LEAVES
IVF_KFACTOR = [2, 3, 4, 6, 10, 20]
#: Graph indexes (faiss HNSW, hnswlib): the search beam; only values >= k are used.
HNSW_EF = [10, 11, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 56, 64, 80, 100, 128, 160, 200, 256, 320, 400]
#: The JAX brute force: the PartialReduce top-k's expected recall.
JAX_RECALL_TARGETS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]

STOP_RECALL = 0.995
"""An inner sweep stops once recall reaches this..."""
PLATEAU = 0.001
"""...or once two steps in a row each gain less than this..."""
PLATEAU_FROM = 0.9
"""...past this recall."""


def num_partitions(n: int) -> int:
    """Partitions for n points: ~sqrt(n) (ScaNN's and faiss's rule of thumb), at least 1."""
    return max(1, round(math.sqrt(n)))


def tree_sweeps(num_leaves: int, k: int) -> list[list[dict]]:
    """One inner sweep over ``leaves_to_search`` per ``pre_reorder_num_neighbors`` (the protocol's names)."""
    leaves = [x for x in TREE_LEAVES if x <= num_leaves] or [num_leaves]
    reorders = sorted({max(r, k) for r in TREE_REORDER})
    return [[{"leaves_to_search": x, "pre_reorder_num_neighbors": r} for x in leaves] for r in reorders]


def ivf_sweeps(nlist: int) -> list[list[dict]]:
    """One inner sweep over nprobe per refine factor."""
    probes = [x for x in IVF_NPROBE if x <= nlist] or [nlist]
    return [[{"nprobe": x, "k_factor": kf} for x in probes] for kf in IVF_KFACTOR]


def ef_sweeps(k: int) -> list[list[dict]]:
    """One inner sweep over ef >= k."""
    return [[{"ef": ef} for ef in HNSW_EF if ef >= k] or [{"ef": k}]]


def should_stop(recalls: list[float]) -> bool:
    """Whether an inner sweep that measured ``recalls`` (in order) has seen enough."""
    if recalls and recalls[-1] >= STOP_RECALL:
        return True
    if len(recalls) < 3:
        return False
    a, b, c = recalls[-3:]
    return min(b, c) > PLATEAU_FROM and b - a < PLATEAU and c - b < PLATEAU
