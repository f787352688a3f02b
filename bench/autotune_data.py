"""A synthetic hard set for the autotuner: high-dimensional data of controlled low relative contrast.

Points are ``num_clusters`` cluster centers drawn from N(0, ``spread``^2 I) plus isotropic unit
Gaussian noise in all ``dim`` dimensions. Within a cluster the noise makes every pair about equally
far apart, so the distance distribution is flat: the 10th neighbour is barely farther than the 1st
(relative contrast near 1), as on the hard real set of issue 16. The partitions find the cluster
easily; the quantized scores cannot order points of nearly equal distance, so a high recall needs
many reordered candidates. ``spread`` sets how much farther the other clusters are.
Queries are drawn from the same distribution, so none is an indexed point.

    train, test, truth = low_contrast(30_000, 256, spread=0.5)
"""

from __future__ import annotations

import numpy as np


def low_contrast(n: int, dim: int = 256, *, num_clusters: int | None = None, spread: float = 0.5,
                 num_queries: int = 1000, k: int = 10, seed: int = 0):
    """(train (n, dim), test (num_queries, dim), exact squared-L2 top-k ids of each test query)."""
    rng = np.random.default_rng(seed)
    num_clusters = max(1, n // 300) if num_clusters is None else num_clusters
    centers = spread * rng.standard_normal((num_clusters, dim))
    total = n + num_queries
    points = centers[rng.integers(0, num_clusters, total)] + rng.standard_normal((total, dim))
    points = points.astype(np.float32)
    train, test = points[:n], points[n:]
    import annlib  # noqa: PLC0415 - ground truth with the library's exact search

    truth = annlib.BruteForce(train, "squared_l2").search_batched(test, k).ids
    return train, test, truth


def relative_contrast(train: np.ndarray, test: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(median d_k / d_1, median d_mean / d_1) over the queries, on Euclidean distances."""
    import annlib  # noqa: PLC0415
    from annlib import _core  # noqa: PLC0415

    res = annlib.BruteForce(train, "squared_l2").search_batched(test, k)
    d = np.sqrt(np.maximum(res.distances, 0))
    sample = np.ascontiguousarray(train[:: max(1, len(train) // 2000)], dtype=np.float32)
    # Our kernel, not numpy's matmul: BLAS would leave a thread spinning through the timings after.
    sq = (test**2).sum(1)[:, None] - 2 * _core.dot_block(np.ascontiguousarray(test, dtype=np.float32), sample)
    sq += (sample**2).sum(1)[None, :]
    mean = np.sqrt(np.maximum(sq, 0)).mean(1)
    return float(np.median(d[:, -1] / d[:, 0])), float(np.median(mean / d[:, 0]))
