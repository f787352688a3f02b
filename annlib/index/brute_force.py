"""Exact k-NN search over the C++ core: the oracle every approximate index is tested against."""

from __future__ import annotations

import numpy as np

from annlib import _core, _validate
from annlib._vectors import normalize_rows
from annlib.index.params import BruteForceSearchParams
from annlib.index.protocol import Index, read_flat_state


class BruteForce(Index):
    """Exact search by scoring every point.

    Parameters
    ----------
    data : array_like, shape (n, dim)
        Points to index. Any real numeric dtype is accepted and converted to float32
        (float64 loses precision beyond float32's 24-bit mantissa). The index keeps its own
        copy unless ``copy=False``, with which a C-contiguous float32 array is shared (the
        caller promises not to change it).
    metric : {"dot", "cosine", "squared_l2"}
        ``"dot"`` ranks by inner product, ``"cosine"`` by cosine similarity (data and
        queries are normalised), ``"squared_l2"`` by squared Euclidean distance.
        Aliases such as ScaNN's ``"dot_product"`` are accepted.
    num_neighbors : int
        The default ``k`` of searches.

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

    kind = "brute_force"
    Params = BruteForceSearchParams

    def __init__(self, data, metric: str = "dot", num_neighbors: int = 10, *, copy: bool = True):
        metric = _validate.metric(metric)
        num_neighbors = _validate.positive_int(num_neighbors, "num_neighbors")
        array = _validate.database(data)
        array = normalize_rows(array) if metric == "cosine" else _validate.owned(array, data, copy)
        self._setup(array, metric, num_neighbors)

    def _setup(self, data: np.ndarray, metric: str, num_neighbors: int) -> None:
        self._metric = metric
        self._num_neighbors = num_neighbors
        self._data = data
        self._n, self._dim = data.shape
        self._sq_norms = _core.squared_norms(data) if metric == "squared_l2" else None
        self._defaults = BruteForceSearchParams()

    def _search(self, queries: np.ndarray, k: int, params, num_threads: int):
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        core_metric = "squared_l2" if self._metric == "squared_l2" else "dot"
        return _core.exact_search(self._data, self._sq_norms, queries, k, core_metric, num_threads)

    @property
    def config(self) -> dict:
        return {"metric": self._metric, "num_neighbors": self._num_neighbors}

    def stats(self) -> dict:
        arrays = {"data": self._data}
        if self._sq_norms is not None:
            arrays["sq_norms"] = self._sq_norms
        return {"n": self._n, "dim": self._dim, **self._memory(arrays)}

    def _stored_vectors(self) -> np.ndarray:
        return self._data

    def _state(self) -> tuple[dict, dict]:
        return self.config, {"data": self._data}

    @classmethod
    def _from_state(cls, config: dict, arrays: dict, source: str) -> BruteForce:
        metric, num_neighbors, data = read_flat_state(cls.kind, config, arrays, source)
        self = cls.__new__(cls)
        self._setup(data, metric, num_neighbors)
        return self
