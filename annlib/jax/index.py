"""Brute force on the JAX path as an index type: exact scores, PartialReduce top-k.

The database is placed on the default JAX device once, with its squared norms, so
each search only moves the queries. Built with
``annlib.builder(data, k, metric).brute_force(backend="jax", recall_target=0.95).build()``.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from annlib import _validate
from annlib import io as _io
from annlib.errors import FormatError
from annlib.jax.search import search as tpu_knn_search
from annlib.result import SearchResult

KIND = "jax_brute_force"


class JaxBruteForce:
    """Exact-distance search with an approximate top-k of expected recall ``recall_target`` (TPU-KNN).

    Distances follow :class:`annlib.SearchResult`. ``recall_target=1.0`` is exact search.
    Runs on whatever device JAX picks (CPU, GPU or TPU).
    """

    def __init__(self, data, metric: str = "dot", num_neighbors: int = 10, recall_target: float = 0.95):
        self.metric = _validate.metric(metric)
        self.num_neighbors = _validate.positive_int(num_neighbors, "num_neighbors")
        self.recall_target = _validate.recall_target(recall_target)
        self._host = _validate.database(data)
        self._device = jnp.asarray(self._host)
        sq = np.einsum("ij,ij->i", self._host, self._host, dtype=np.float64).astype(np.float32)
        self._norms = jnp.asarray(sq)

    @property
    def n(self) -> int:
        return self._host.shape[0]

    @property
    def dim(self) -> int:
        return self._host.shape[1]

    def __len__(self) -> int:
        return self.n

    @property
    def config(self) -> dict:
        return {"backend": "jax", "metric": self.metric, "num_neighbors": self.num_neighbors,
                "recall_target": self.recall_target}

    def search(self, query, final_num_neighbors: int | None = None, recall_target: float | None = None) -> SearchResult:
        """Search one query (1-D, returns 1-D arrays) or a batch."""
        queries, single = _validate.queries(query, self.dim, name="query", allow_1d=True)
        result = self._search(queries, final_num_neighbors, recall_target)
        return SearchResult(result.ids[0], result.distances[0]) if single else result

    def search_batched(self, queries, final_num_neighbors: int | None = None, recall_target: float | None = None,
                       num_threads: int | None = None) -> SearchResult:
        """Search a batch (nq, dim); ``num_threads`` is accepted for API parity (XLA picks its own threads)."""
        queries, _ = _validate.queries(queries, self.dim)
        _validate.num_threads(num_threads)
        return self._search(queries, final_num_neighbors, recall_target)

    def _search(self, queries, final_num_neighbors, recall_target) -> SearchResult:
        k = self.num_neighbors if final_num_neighbors is None else _validate.k(final_num_neighbors,
                                                                               "final_num_neighbors")
        target = self.recall_target if recall_target is None else _validate.recall_target(recall_target)
        # queries are validated already: as a device array, search() checks only their shape
        return tpu_knn_search(
            self._device, jnp.asarray(queries), k, metric=self.metric, recall_target=target, norms=self._norms
        )

    def save(self, path) -> None:
        _io.save_index_file(os.fspath(path), KIND, self.config, {"data": self._host})

    @classmethod
    def load(cls, path, mmap: bool = True) -> JaxBruteForce:
        kind, config, arrays = _io.load_index_file(os.fspath(path), mmap=mmap)
        if kind != KIND:
            raise FormatError(f"{path}: holds a {kind!r} index, not {KIND!r}")
        try:
            return cls(np.asarray(arrays["data"]), config["metric"], config["num_neighbors"], config["recall_target"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{path}: invalid {KIND} index ({exc})") from None

    def __repr__(self) -> str:
        return f"JaxBruteForce(n={self.n}, dim={self.dim}, metric={self.metric!r}, recall_target={self.recall_target})"
