"""Clustered synthetic unit vectors with exact angular ground truth, for benchmarks at any size."""

from __future__ import annotations

import numpy as np

from annlib.datasets import Dataset, ground_truth

__all__ = ["clustered_angular"]


def clustered_angular(
    n: int,
    dim: int,
    num_queries: int = 1000,
    num_clusters: int = 10_000,
    noise: float = 0.7,
    k_truth: int = 100,
    seed: int = 0,
    num_threads: int | None = None,
) -> Dataset:
    """Gaussian blobs around random centers, normalised; the last ``num_queries`` rows are the queries.

    10,000 blobs with noise 0.7 per coordinate (noise norm ~0.7x the center norm) make neighbors
    straddle partitions: at 1000 leaves plain partitioning needs tens of leaves for recall 0.9,
    the regime where spilling matters. Tighter blobs make every index trivially exact.
    Ground truth (``k_truth`` neighbors, ``1 - cos``) is exact, from :func:`annlib.datasets.ground_truth`.
    """
    if n < k_truth or dim < 1 or num_queries < 1:
        raise ValueError(f"need n >= k_truth ({k_truth}), dim >= 1 and num_queries >= 1; got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_clusters, dim)).astype(np.float32)
    points = np.empty((n + num_queries, dim), dtype=np.float32)
    for begin in range(0, len(points), 200_000):
        m = min(200_000, len(points) - begin)
        blob = centers[rng.integers(0, num_clusters, m)]
        points[begin : begin + m] = blob + noise * rng.standard_normal((m, dim), dtype=np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    train, test = points[:n], points[n:]
    neighbors, distances = ground_truth(train, test, k_truth, "cosine", num_threads=num_threads)
    return Dataset(
        name=f"synthetic-clustered-{n}x{dim}",
        train=train,
        test=test,
        neighbors=neighbors,
        distances=distances,
        distance="angular",
        metric="cosine",
        attrs={"source": "annlib.bench.synthetic.clustered_angular", "seed": seed, "noise": noise},
    )
