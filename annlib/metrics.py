"""Recall of approximate results against exact ground truth.

:func:`recall` is the ann-benchmarks definition ("k-nn" recall): a returned point counts as a
hit when its distance is no worse than the k-th true distance plus ``epsilon`` (1e-3), so points
tied with the k-th true neighbor are credited whichever of them a search returns. :func:`id_recall`
is the stricter set overlap of ids, which penalises ties broken differently.

Both are vectorised over queries; results are means over queries of per-query fractions in [0, 1].

Examples
--------
>>> import numpy as np
>>> truth = np.array([[0.1, 0.2, 0.3]])
>>> recall(np.array([[0.1, 0.3, 0.9]]), truth, k=3)
0.6666666666666666
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_EPSILON",
    "distances_of_ids",
    "id_recall",
    "id_recall_per_query",
    "recall",
    "recall_of_ids",
    "recall_per_query",
]

#: ann-benchmarks' distance slack for counting a returned point as a true neighbor.
DEFAULT_EPSILON = 1e-3


def _as_matrix(array, name: str, kind: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (nq, k), got shape {array.shape}")
    if array.dtype == np.bool_ or array.dtype.kind not in kind:
        wanted = "real" if kind == "fiu" else "integer"
        raise TypeError(f"{name} must be a {wanted} array, got dtype {array.dtype}")
    return array


def _check_k(k, found: np.ndarray, truth: np.ndarray, found_name: str, truth_name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if found.shape[0] != truth.shape[0]:
        raise ValueError(
            f"{found_name} and {truth_name} must have the same number of queries, "
            f"got {found.shape[0]} and {truth.shape[0]}"
        )
    if truth.shape[1] < k:
        raise ValueError(f"{truth_name} must have at least k={k} columns, got shape {truth.shape}")
    if found.shape[1] < k:
        raise ValueError(f"{found_name} must have at least k={k} columns, got shape {found.shape}")
    return int(k)


def recall_per_query(
    found_distances,
    truth_distances,
    k: int,
    epsilon: float = DEFAULT_EPSILON,
    larger_is_better: bool = False,
) -> np.ndarray:
    """Per-query ann-benchmarks recall@k.

    Parameters
    ----------
    found_distances : array_like
        ``[nq, >= k]`` distances of the returned points, best first, in the same convention as
        ``truth_distances`` (e.g. ``1 - cos`` for an angular dataset). Only the first ``k``
        columns are used. Pass empty (-1) slots as the worst value: ``+inf`` for distances,
        ``-inf`` for similarities; NaN never counts.
    truth_distances : array_like
        ``[nq, >= k]`` exact distances, best first.
    k : int
        Recall depth.
    epsilon : float, default 1e-3
        Slack added to the k-th true distance (subtracted for similarities).
    larger_is_better : bool, default False
        True when the values are similarities (annlib's "dot"/"cosine" scores, ann-benchmarks'
        "dot" datasets); the comparison is then made on negated values.

    Returns
    -------
    numpy.ndarray
        float64 ``[nq]``: for each query, the fraction of its first ``k`` returned points whose
        value is within ``epsilon`` of the k-th true value.

    Raises
    ------
    ValueError
        Shapes disagree, or ``k`` is not a positive integer no larger than either width.
    TypeError
        An input is not real-valued.
    """
    found = _as_matrix(found_distances, "found_distances", "fiu")
    truth = _as_matrix(truth_distances, "truth_distances", "fiu")
    k = _check_k(k, found, truth, "found_distances", "truth_distances")
    sign = -1.0 if larger_is_better else 1.0
    threshold = sign * truth[:, k - 1 : k].astype(np.float64) + float(epsilon)
    hits = sign * found[:, :k].astype(np.float64) <= threshold  # NaN compares False: never a hit
    return hits.sum(axis=1) / k


def recall(
    found_distances,
    truth_distances,
    k: int,
    epsilon: float = DEFAULT_EPSILON,
    larger_is_better: bool = False,
) -> float:
    """Mean ann-benchmarks recall@k over queries; ties at the k-th distance count as hits.

    Parameters and errors as for :func:`recall_per_query`.

    Returns
    -------
    float
        Mean recall in [0, 1].

    Examples
    --------
    A tie with the k-th true distance counts, a worse point does not:

    >>> recall([[0.1, 0.5]], [[0.1, 0.5, 0.5]], k=2)
    1.0
    >>> recall([[0.1, 0.6]], [[0.1, 0.5]], k=2)
    0.5

    Similarities (larger is better) flip the comparison:

    >>> recall([[0.9, 0.7]], [[0.9, 0.8]], k=2, larger_is_better=True)
    0.5
    """
    per_query = recall_per_query(found_distances, truth_distances, k, epsilon, larger_is_better)
    return float(per_query.mean()) if per_query.size else 0.0


def id_recall_per_query(found_ids, truth_ids, k: int) -> np.ndarray:
    """Per-query id overlap ``|set(found[:k]) & set(truth[:k])| / k``, ignoring -1 slots.

    Parameters
    ----------
    found_ids : array_like
        ``[nq, >= k]`` integer ids returned by a search; -1 (or any negative id) marks an empty slot.
    truth_ids : array_like
        ``[nq, >= k]`` exact neighbor ids.
    k : int
        Recall depth.

    Returns
    -------
    numpy.ndarray
        float64 ``[nq]`` fractions in [0, 1]; a duplicated id counts once.

    Raises
    ------
    ValueError
        Shapes disagree, or ``k`` is not a positive integer no larger than either width.
    TypeError
        An input is not an integer array.
    """
    found = _as_matrix(found_ids, "found_ids", "iu")
    truth = _as_matrix(truth_ids, "truth_ids", "iu")
    k = _check_k(k, found, truth, "found_ids", "truth_ids")
    nq = found.shape[0]
    if nq == 0:
        return np.zeros(0, dtype=np.float64)
    found = np.sort(found[:, :k].astype(np.int64), axis=1)
    truth = np.sort(truth[:, :k].astype(np.int64), axis=1)
    # Make ids unique across queries (row * span + id), then one global sorted membership test.
    low = min(int(found.min()), int(truth.min()), 0)
    span = max(int(found.max()), int(truth.max())) - low + 1
    rows = np.arange(nq, dtype=np.int64)[:, None] * span
    found_keys = (found - low + rows).ravel()
    truth_keys = (truth - low + rows).ravel()
    position = np.minimum(np.searchsorted(truth_keys, found_keys), truth_keys.size - 1)
    member = truth_keys[position] == found_keys
    valid = found >= 0
    first = np.ones_like(found, dtype=bool)
    first[:, 1:] = found[:, 1:] != found[:, :-1]  # count a repeated id once
    hits = member.reshape(nq, k) & valid & first
    return hits.sum(axis=1) / k


def id_recall(found_ids, truth_ids, k: int) -> float:
    """Mean id overlap recall@k over queries; see :func:`id_recall_per_query`.

    Returns
    -------
    float
        Mean of ``|set(found[:k]) & set(truth[:k])| / k`` in [0, 1], -1 slots never matching.

    Examples
    --------
    >>> id_recall([[3, 1, -1]], [[1, 2, 3]], k=3)
    0.6666666666666666
    """
    per_query = id_recall_per_query(found_ids, truth_ids, k)
    return float(per_query.mean()) if per_query.size else 0.0


def distances_in_file_convention(distances, metric: str, file_distance: str) -> np.ndarray:
    """Convert annlib distances of ``metric`` into an ann-benchmarks file's ``distance`` convention.

    annlib returns similarity for "dot"/"cosine" and squared distance for "squared_l2";
    ann-benchmarks files store ``1 - cos`` for "angular" and the plain distance for
    "euclidean". Empty slots (±inf) become +inf, the worst distance, so they never count.

    Examples
    --------
    >>> distances_in_file_convention(np.array([[0.75]]), "cosine", "angular").tolist()
    [[0.25]]
    >>> distances_in_file_convention(np.array([[4.0, np.inf]]), "squared_l2", "euclidean").tolist()
    [[2.0, inf]]
    """
    d = np.asarray(distances, dtype=np.float64)
    if file_distance == "angular" and metric in ("cosine", "dot"):
        out = 1.0 - d
    elif file_distance == "euclidean" and metric == "squared_l2":
        out = np.sqrt(np.maximum(d, 0.0))
    elif file_distance == "dot" and metric == "dot":
        out = -d
    else:
        raise ValueError(f"cannot compare {metric!r} distances with a file whose distance is {file_distance!r}")
    return np.where(np.isfinite(d), out, np.inf)


def distances_of_ids(ids, train, queries, file_distance: str) -> np.ndarray:
    """Recompute the exact distance of every returned id, as the ann-benchmarks runner does.

    The harness ignores the distances an algorithm reports and recomputes them from the data,
    so approximate (quantized) scores cannot flatter the recall. Empty slots (id -1) become the
    worst value: ``+inf`` for "angular"/"euclidean", ``-inf`` for "dot".

    Parameters
    ----------
    ids : array_like
        int ``[nq, k]`` returned row ids into ``train``; -1 marks an empty slot.
    train, queries : array_like
        ``[n, dim]`` and ``[nq, dim]`` float data the ids refer to.
    file_distance : {"angular", "euclidean", "dot"}
        The dataset's ann-benchmarks ``distance``: ``1 - cos``, the L2 distance, or the inner
        product (a similarity, larger is better).

    Returns
    -------
    numpy.ndarray
        float64 ``[nq, k]`` in the file's convention, comparable with its ``distances``.

    Examples
    --------
    >>> train = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> distances_of_ids([[1, -1]], train, [[0.0, 2.0]], "euclidean").tolist()
    [[1.0, inf]]
    """
    ids = _as_matrix(ids, "ids", "iu").astype(np.int64, copy=False)
    train = np.asarray(train)
    queries = np.asarray(queries)
    if train.ndim != 2 or queries.ndim != 2 or train.shape[1] != queries.shape[1]:
        raise ValueError(f"train and queries must be 2-D with the same dim, got {train.shape} and {queries.shape}")
    if ids.shape[0] != queries.shape[0]:
        raise ValueError(f"ids has {ids.shape[0]} rows but queries has {queries.shape[0]}")
    valid = (ids >= 0) & (ids < train.shape[0])
    points = train[np.where(valid, ids, 0)].astype(np.float64)  # [nq, k, dim]
    q = queries.astype(np.float64)[:, None, :]
    if file_distance == "angular":
        dots = np.einsum("qkd,qkd->qk", points, np.broadcast_to(q, points.shape))
        norms = np.linalg.norm(points, axis=2) * np.linalg.norm(q, axis=2)
        out = 1.0 - dots / np.where(norms > 0, norms, 1.0)
        worst = np.inf
    elif file_distance == "euclidean":
        out = np.linalg.norm(points - q, axis=2)
        worst = np.inf
    elif file_distance == "dot":
        out = np.einsum("qkd,qkd->qk", points, np.broadcast_to(q, points.shape))
        worst = -np.inf
    else:
        raise ValueError(f"file_distance must be 'angular', 'euclidean' or 'dot', got {file_distance!r}")
    return np.where(valid, out, worst)


def recall_of_ids(ids, train, queries, truth_distances, k: int, file_distance: str, epsilon: float = DEFAULT_EPSILON) -> float:
    """ann-benchmarks recall@k of returned ``ids``: distances recomputed from the data, ties count.

    Combines :func:`distances_of_ids` and :func:`recall`; ``truth_distances`` are the file's
    ``distances`` (``[nq, >= k]``, best first).

    Examples
    --------
    >>> train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> recall_of_ids([[0, 1]], train, [[1.0, 0.1]], [[0.1, 0.9]], 2, "euclidean")
    0.5
    """
    found = distances_of_ids(np.asarray(ids)[:, :k], train, queries, file_distance)
    return recall(found, truth_distances, k, epsilon, larger_is_better=file_distance == "dot")
