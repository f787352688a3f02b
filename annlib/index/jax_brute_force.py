"""Brute force on the JAX path as an index kind: exact scores, PartialReduce top-k.

The database is placed on the default JAX device once, with its squared norms, so each
search only moves the queries. Built with
``annlib.builder(data, k, metric).brute_force(backend="jax", recall_target=0.95).build()``
or ``annlib.JaxBruteForce(data, metric)``. Needs the ``jax`` extra.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from annlib import _validate
from annlib._vectors import normalize_rows
from annlib.errors import FormatError
from annlib.index.ids import IdMap
from annlib.index.params import JaxSearchParams
from annlib.index.protocol import Index, read_flat_state


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """What one search reads (see :mod:`annlib.index.mutable`): host rows and their device copies."""

    host: np.ndarray
    device: Any
    norms: Any
    ids: IdMap


def _jax():
    try:
        import jax.numpy as jnp  # noqa: PLC0415 - optional extra

        from annlib.jax.search import search  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError('the JAX brute force needs JAX: pip install "annlib[jax]"') from exc
    return jnp, search


class JaxBruteForce(Index):
    """Exact-distance search with an approximate top-k of expected recall ``recall_target`` (TPU-KNN).

    Distances follow :class:`annlib.SearchResult`. ``recall_target=1.0`` is exact search.
    Runs on whatever device JAX picks (CPU, GPU or TPU); ``num_threads`` is accepted for
    the protocol's sake (XLA picks its own threads). The index keeps a copy of ``data``
    unless ``copy=False``. ``ids``: a 64-bit user id per point (default 0..n-1). Writes
    rebuild the device copy (deleted rows are dropped at once), so batch them.
    """

    kind = "jax_brute_force"
    Params = JaxSearchParams

    def __init__(self, data, metric: str = "dot", num_neighbors: int = 10, recall_target: float = 0.95, *,
                 ids=None, copy: bool = True):
        metric = _validate.metric(metric)
        num_neighbors = _validate.positive_int(num_neighbors, "num_neighbors")
        defaults = JaxSearchParams(recall_target)
        array = _validate.database(data)
        id_map = IdMap.of(ids, array.shape[0])
        array = normalize_rows(array) if metric == "cosine" else _validate.owned(array, data, copy)
        self._setup(array, metric, num_neighbors, defaults, id_map)

    def _setup(self, host: np.ndarray, metric: str, num_neighbors: int, defaults: JaxSearchParams,
               ids: IdMap) -> None:
        self._jnp, self._search_fn = _jax()
        self._metric = metric
        self._num_neighbors = num_neighbors
        self._defaults = defaults
        self._dim = host.shape[1]
        self._snap = self._snapshot(host, ids)

    def _snapshot(self, host: np.ndarray, ids: IdMap) -> _Snapshot:
        sq = np.einsum("ij,ij->i", host, host, dtype=np.float64).astype(np.float32)
        return _Snapshot(host, self._jnp.asarray(host), self._jnp.asarray(sq), ids)

    def _appended(self, snap: _Snapshot, vectors: np.ndarray, ids: np.ndarray) -> _Snapshot:
        if self._metric == "cosine":
            vectors = normalize_rows(vectors)
        return self._snapshot(np.concatenate([snap.host, vectors]), snap.ids.appended(ids))

    def _deleted(self, snap: _Snapshot, rows: np.ndarray) -> _Snapshot:
        ids, kept = snap.ids.killed(rows).compacted()
        return self._snapshot(np.ascontiguousarray(snap.host[kept]), ids)

    def _compacted(self, snap: _Snapshot) -> _Snapshot:
        ids, kept = snap.ids.compacted()
        return self._snapshot(np.ascontiguousarray(snap.host[kept]), ids)

    @property
    def recall_target(self) -> float:
        """The default expected recall of the approximate top-k."""
        return self._defaults.recall_target

    def _search(self, snap: _Snapshot, queries: np.ndarray, k: int, params: JaxSearchParams, num_threads: int):
        # Data is stored normalised for cosine; queries are normalised here, on the host, where
        # tiny or denormal ones cannot underflow (XLA flushes denormals to zero).
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        ids, distances = self._search_fn(snap.device, self._jnp.asarray(queries), k, metric=self._metric,
                                         recall_target=params.recall_target, norms=snap.norms)
        return np.asarray(ids), np.asarray(distances)

    def _search_filtered(self, snap: _Snapshot, queries: np.ndarray, k: int, params: JaxSearchParams,
                         num_threads: int, filters: list, filter_of_query: np.ndarray | None):
        # Scores of rejected points are masked before the top-k, on the device (annlib.jax.filtered).
        from annlib.jax import filtered  # noqa: PLC0415 - optional extra, imported with the kind

        if self._metric == "cosine":
            queries = normalize_rows(queries)
        allowed = np.zeros((len(filters), snap.ids.rows), dtype=bool)
        for i, r in enumerate(filters):
            allowed[i, r.allowed_rows(snap.ids, num_threads)] = True
        metric = "squared_l2" if self._metric == "squared_l2" else "dot"
        return filtered.search(snap.device, snap.norms, queries, allowed, filter_of_query, k, metric,
                               params.recall_target)

    @property
    def config(self) -> dict:
        return {"backend": "jax", "metric": self._metric, "num_neighbors": self._num_neighbors,
                "recall_target": self._defaults.recall_target}

    def stats(self) -> dict:
        snap = self._snap
        return {"n": snap.ids.num_live, "dim": self._dim,
                **self._memory({"data": snap.host, "ids": snap.ids.row_ids}),
                "device": str(snap.device.devices().pop()) if hasattr(snap.device, "devices") else "unknown"}

    def _repr_params(self) -> str:
        return f"recall_target={self._defaults.recall_target}"

    def _stored_vectors(self, snap: _Snapshot) -> np.ndarray:
        return snap.host

    def _state(self) -> tuple[dict, dict]:
        snap = self._snap
        config = self.config
        sections = snap.ids.sections()
        if sections:
            config = {**config, "next_id": snap.ids.next_id}
        return config, {"data": snap.host, **sections}

    @classmethod
    def _from_state(cls, config: dict, arrays: dict, source: str) -> JaxBruteForce:
        metric, num_neighbors, data, ids = read_flat_state(cls.kind, config, arrays, source)
        try:
            defaults = JaxSearchParams(config["recall_target"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{source}: invalid {cls.kind} index ({exc})") from None
        self = cls.__new__(cls)
        self._setup(np.asarray(data), metric, num_neighbors, defaults, ids)
        return self
