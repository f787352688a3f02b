"""Shards by partition: placing whole partitions on shards, and sending a query only to the
shards that hold its best partitions.

Pure numpy, no Ray. Every shard of a tree-AH sharded index has the same centers, so a shard
asked for ``leaves_to_search = L`` picks the same L best leaves a single index picks and scans
its own entries of them; a shard with no entry in any of them contributes nothing. Routing
skips exactly those shards, so a routed search returns what the fan-out search returns.

The driver ranks the leaves with numpy, not with the core's kernel, so its scores may differ in
the last bits: near the L-th score it counts a leaf as chosen if it is within a small margin
(:data:`MARGIN`) of it. Sending a query to a shard more is harmless (that shard finds what the
core finds); sending it to one fewer would lose results, which the margin prevents.

Placement: a k-means over the partition centers, weighted by partition size, whose assignment
step fills clusters up to a capacity (balanced by size), so the partitions one query touches,
being near each other, tend to sit on few shards.
"""

from __future__ import annotations

import numpy as np

from annlib._vectors import normalize_rows

MARGIN = 1e-4  # relative to the largest |center score| of the query: far above float32 rounding
_SLACK = 1.05  # a shard may hold this much more than an even share of the points


def center_scores(queries: np.ndarray, centers: np.ndarray, metric: str) -> np.ndarray:
    """(nq, num_leaves) partition scores, larger is better, as the core ranks partitions."""
    if metric == "cosine":
        queries = normalize_rows(queries)
    scores = np.ascontiguousarray(queries, dtype=np.float32) @ centers.T
    if metric == "squared_l2":
        scores = 2.0 * scores - np.einsum("ij,ij->i", centers, centers)[None, :]
    return scores


def nearest_leaf(vectors: np.ndarray, centers: np.ndarray, metric: str, chunk: int = 16_384) -> np.ndarray:
    """Primary partition of each vector (the partition the core assigns it to, up to ties)."""
    out = np.empty(len(vectors), dtype=np.int32)
    for start in range(0, len(vectors), chunk):
        part = np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32)
        out[start : start + len(part)] = np.argmax(center_scores(part, centers, metric), axis=1)
    return out


def chosen_leaves(scores: np.ndarray, leaves_to_search: int) -> np.ndarray:
    """(nq, num_leaves) bool: the ``leaves_to_search`` best leaves of each query and any leaf
    within :data:`MARGIN` of the last of them."""
    num_leaves = scores.shape[1]
    if leaves_to_search >= num_leaves:
        return np.ones(scores.shape, dtype=bool)
    kth = -np.partition(-scores, leaves_to_search - 1, axis=1)[:, leaves_to_search - 1]
    tol = MARGIN * np.abs(scores).max(axis=1) + 1e-30
    return scores >= (kth - tol)[:, None]


def shards_of_queries(chosen: np.ndarray, leaf_shards: np.ndarray) -> np.ndarray:
    """(nq, num_shards) bool: the shards holding an entry of one of a query's chosen leaves.
    ``leaf_shards``: (num_leaves, num_shards) bool, which shards hold entries of each leaf."""
    return (chosen.astype(np.uint8) @ leaf_shards.astype(np.uint8)) > 0


def place_partitions(centers: np.ndarray, sizes: np.ndarray, num_shards: int, metric: str, seed: int = 0,
                     iterations: int = 15) -> np.ndarray:
    """Owner shard of every partition: balanced (no shard over ~1.05x an even share of the
    points, unless one partition alone is larger) and local (near partitions together)."""
    num_leaves = len(centers)
    sizes = np.asarray(sizes, dtype=np.float64)
    if num_shards == 1:
        return np.zeros(num_leaves, dtype=np.int32)
    points = normalize_rows(centers) if metric == "cosine" else np.asarray(centers, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    weights = np.maximum(sizes, 1e-3)  # empty partitions still get an owner
    capacity = _SLACK * weights.sum() / num_shards
    rng = np.random.default_rng(seed)
    means = points[rng.choice(num_leaves, num_shards, replace=False, p=weights / weights.sum())]
    owner = np.zeros(num_leaves, dtype=np.int32)
    for _ in range(iterations):
        d2 = ((points[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
        owner = _capacitated_assignment(d2, weights, capacity)
        for s in range(num_shards):
            members = owner == s
            if members.any():
                means[s] = np.average(points[members], axis=0, weights=weights[members])
    return owner


def _capacitated_assignment(d2: np.ndarray, weights: np.ndarray, capacity: float) -> np.ndarray:
    """Each partition to its nearest shard with room, partitions with most to lose first (the
    gap between their best and second-best shard), big ones first on equal gaps."""
    num_leaves, num_shards = d2.shape
    sorted_d = np.sort(d2, axis=1)
    regret = sorted_d[:, 1] - sorted_d[:, 0]
    order = np.lexsort((-weights, -regret))
    load = np.zeros(num_shards)
    owner = np.empty(num_leaves, dtype=np.int32)
    for leaf in order:
        prefs = np.argsort(d2[leaf], kind="stable")
        fits = [s for s in prefs if load[s] + weights[leaf] <= capacity]
        s = fits[0] if fits else int(np.argmin(load))  # nothing fits: the emptiest shard
        owner[leaf] = s
        load[s] += weights[leaf]
    return owner
