"""Exact k-NN search over the C++ core: the oracle every approximate index is tested against."""

from __future__ import annotations

import numpy as np

from annlib import _core, _validate
from annlib._vectors import normalize_rows
from annlib.result import SearchResult


class BruteForce:
    """Exact search by scoring every point.

    Parameters
    ----------
    data : array_like, shape (n, dim)
        Points to index. Any real numeric dtype is accepted and converted to a
        float32 copy (float64 loses precision beyond float32's 24-bit mantissa).
    metric : {"dot", "cosine", "squared_l2"}
        ``"dot"`` ranks by inner product, ``"cosine"`` by cosine similarity (data and
        queries are normalised), ``"squared_l2"`` by squared Euclidean distance.
        Aliases such as ScaNN's ``"dot_product"`` are accepted.

    Notes
    -----
    Distances follow FAISS and ScaNN: similarity for ``"dot"`` and ``"cosine"``
    (larger is better), squared distance for ``"squared_l2"`` (smaller is better).
    See :class:`annlib.SearchResult`.

    Examples
    --------
    >>> import numpy as np, annlib
    >>> data = np.eye(4, dtype=np.float32)
    >>> ids, dist = annlib.BruteForce(data, "dot").search(data[2], k=2)
    >>> int(ids[0])
    2
    """

    def __init__(self, data, metric: str = "dot"):
        self.metric = _validate.metric(metric)
        data = _validate.database(data)
        if self.metric == "cosine":
            data = normalize_rows(data)
        self._data = data
        self._sq_norms = _core.squared_norms(data) if self.metric == "squared_l2" else None

    @property
    def n(self) -> int:
        """Number of indexed points."""
        return self._data.shape[0]

    @property
    def dim(self) -> int:
        """Dimension of the indexed points."""
        return self._data.shape[1]

    def __len__(self) -> int:
        return self.n

    def search(self, query, k: int) -> SearchResult:
        """Search one query (1-D) or a few (2-D) on a single thread.

        A 1-D query returns 1-D ``ids`` and ``distances`` of length ``k``.
        When ``k > n`` the last ``k - n`` slots hold id -1 and the metric's worst distance.
        """
        queries, single = _validate.queries(query, self.dim, name="query", allow_1d=True)
        result = self._search(queries, _validate.k(k), num_threads=1)
        if single:
            return SearchResult(result.ids[0], result.distances[0])
        return result

    def search_batched(self, queries, k: int, num_threads: int | None = None) -> SearchResult:
        """Search a batch of queries, shape (nq, dim), on ``num_threads`` threads (default: all cores)."""
        queries, _ = _validate.queries(queries, self.dim)
        return self._search(queries, _validate.k(k), _validate.num_threads(num_threads))

    def _search(self, queries: np.ndarray, k: int, num_threads: int) -> SearchResult:
        if self.metric == "cosine":
            queries = normalize_rows(queries)
        core_metric = "squared_l2" if self.metric == "squared_l2" else "dot"
        ids, distances = _core.exact_search(self._data, self._sq_norms, queries, k, core_metric, num_threads)
        return SearchResult(ids, distances)

    def __repr__(self) -> str:
        return f"BruteForce(n={self.n}, dim={self.dim}, metric={self.metric!r})"
