"""Exact k-NN search over the C++ core: the oracle every approximate index is tested against."""

from __future__ import annotations

import dataclasses

import numpy as np

from annlib import _core, _validate
from annlib._vectors import normalize_rows
from annlib.filter import core_arguments
from annlib.index.ids import IdMap
from annlib.index.params import BruteForceSearchParams
from annlib.index.protocol import Index, read_flat_state


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What one search reads (see :mod:`annlib.index.mutable`)."""

    data: np.ndarray
    sq_norms: np.ndarray | None
    ids: IdMap


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
    ids : array_like of int, optional
        A 64-bit user id per point (any values, unique); searches return them. Default 0..n-1.

    Notes
    -----
    Distances follow FAISS and ScaNN: similarity for ``"dot"`` and ``"cosine"``
    (larger is better), squared distance for ``"squared_l2"`` (smaller is better).
    See :class:`annlib.SearchResult`.

    Deleting drops the rows at once (the data is copied without them), so the index never
    holds dead rows and :meth:`compact` has nothing to do.

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

    def __init__(self, data, metric: str = "dot", num_neighbors: int = 10, *, ids=None, copy: bool = True):
        metric = _validate.metric(metric)
        num_neighbors = _validate.positive_int(num_neighbors, "num_neighbors")
        array = _validate.database(data)
        id_map = IdMap.of(ids, array.shape[0])
        array = normalize_rows(array) if metric == "cosine" else _validate.owned(array, data, copy)
        self._setup(array, metric, num_neighbors, id_map)

    def _setup(self, data: np.ndarray, metric: str, num_neighbors: int, ids: IdMap) -> None:
        self._metric = metric
        self._num_neighbors = num_neighbors
        self._dim = data.shape[1]
        self._snap = self._snapshot(data, ids)
        self._defaults = BruteForceSearchParams()

    def _snapshot(self, data: np.ndarray, ids: IdMap) -> _Snapshot:
        sq_norms = _core.squared_norms(data) if self._metric == "squared_l2" else None
        return _Snapshot(data, sq_norms, ids)

    def _search(self, snap: _Snapshot, queries: np.ndarray, k: int, params, num_threads: int):
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        core_metric = "squared_l2" if self._metric == "squared_l2" else "dot"
        return _core.exact_search(snap.data, snap.sq_norms, queries, k, core_metric, num_threads)

    def _search_filtered(self, snap: _Snapshot, queries: np.ndarray, k: int, params, num_threads: int, filters: list,
                         filter_of_query: np.ndarray | None):
        # The index route of exact search: every point scored, the filter asked only for those
        # that would enter a query's top-k (annlib.index.filtered gathers for the exact route).
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        core_metric = "squared_l2" if self._metric == "squared_l2" else "dot"
        return _core.exact_search(snap.data, snap.sq_norms, queries, k, core_metric, num_threads,
                                  **core_arguments(filters, snap.ids, filter_of_query))

    # ------------------------------------------------------------------ writes (see annlib.index.mutable)

    def _appended(self, snap: _Snapshot, vectors: np.ndarray, ids: np.ndarray) -> _Snapshot:
        if self._metric == "cosine":
            vectors = normalize_rows(vectors)
        return self._snapshot(np.concatenate([snap.data, vectors]), snap.ids.appended(ids))

    def _deleted(self, snap: _Snapshot, rows: np.ndarray) -> _Snapshot:
        ids, kept = snap.ids.killed(rows).compacted()
        return self._snapshot(np.ascontiguousarray(snap.data[kept]), ids)

    def _compacted(self, snap: _Snapshot) -> _Snapshot:
        ids, kept = snap.ids.compacted()
        return self._snapshot(np.ascontiguousarray(snap.data[kept]), ids)

    @property
    def config(self) -> dict:
        return {"metric": self._metric, "num_neighbors": self._num_neighbors}

    def stats(self) -> dict:
        snap = self._snap
        arrays = {"data": snap.data, "ids": snap.ids.row_ids}
        if snap.sq_norms is not None:
            arrays["sq_norms"] = snap.sq_norms
        return {"n": snap.ids.num_live, "dim": self._dim, **self._memory(arrays)}

    def _stored_vectors(self, snap: _Snapshot) -> np.ndarray:
        return snap.data

    def _state(self) -> tuple[dict, dict]:
        snap = self._snap
        config = self.config
        sections = snap.ids.sections()
        if sections:
            config = {**config, "next_id": snap.ids.next_id}
        return config, {"data": snap.data, **sections}

    @classmethod
    def _from_state(cls, config: dict, arrays: dict, source: str) -> BruteForce:
        metric, num_neighbors, data, ids = read_flat_state(cls.kind, config, arrays, source)
        self = cls.__new__(cls)
        self._setup(data, metric, num_neighbors, ids)
        return self
