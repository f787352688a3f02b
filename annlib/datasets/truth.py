"""Exact ground truth for a dataset, in the ann-benchmarks distance convention of its metric."""

from __future__ import annotations

import numpy as np

from annlib import _validate

__all__ = ["ground_truth"]


def ground_truth(train, test, k: int, metric: str, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbors in the ann-benchmarks convention of ``metric``.

    Computed by :class:`annlib.BruteForce` (float32 exact search).

    Parameters
    ----------
    train : array_like
        ``[n, dim]`` database points.
    test : array_like
        ``[nq, dim]`` queries.
    k : int
        Neighbors per query, ``1 <= k <= n``.
    metric : str
        "cosine" (or "angular"), "squared_l2" (or "euclidean"), "dot".
    num_threads : int, optional
        Threads for the search; None uses all cores.

    Returns
    -------
    neighbors : numpy.ndarray
        int32 ``[nq, k]``, best first.
    distances : numpy.ndarray
        float32 ``[nq, k]``: ``1 - cos`` for cosine, the L2 distance (square root of the squared
        distance) for squared_l2, the inner product (a similarity, larger is better) for dot.

    Raises
    ------
    ValueError
        Unknown metric, bad shapes, non-finite values, or ``k > n``.

    Examples
    --------
    >>> ids, dist = ground_truth(train, test, 100, "angular")   # doctest: +SKIP
    """
    from annlib.index import BruteForce  # lazy: needs the compiled core

    metric = _validate.metric(metric)
    train = _validate.database(train, "train")
    test, _ = _validate.queries(test, train.shape[1], "test")
    k = _validate.k(k)
    if k > train.shape[0]:
        raise ValueError(f"k must be at most the number of train points ({train.shape[0]}), got {k}")
    result = BruteForce(train, metric).search_batched(test, k, num_threads=num_threads)
    neighbors = np.ascontiguousarray(result.ids, dtype=np.int32)
    scores = np.asarray(result.distances, dtype=np.float32)
    if metric == "cosine":
        distances = np.float32(1.0) - scores
    elif metric == "squared_l2":
        distances = np.sqrt(np.maximum(scores, np.float32(0.0)))
    else:
        distances = scores.copy()
    return neighbors, np.ascontiguousarray(distances, dtype=np.float32)
