"""Brute force on the JAX path as an index kind: exact scores, PartialReduce top-k.

The database is placed on the default JAX device once, with its squared norms, so each
search only moves the queries. Built with
``annlib.builder(data, k, metric).brute_force(backend="jax", recall_target=0.95).build()``
or ``annlib.JaxBruteForce(data, metric)``. Needs the ``jax`` extra.
"""

from __future__ import annotations

import numpy as np

from annlib import _validate
from annlib._vectors import normalize_rows
from annlib.errors import FormatError
from annlib.index.params import JaxSearchParams
from annlib.index.protocol import Index, read_flat_state


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
    unless ``copy=False``.
    """

    kind = "jax_brute_force"
    Params = JaxSearchParams

    def __init__(self, data, metric: str = "dot", num_neighbors: int = 10, recall_target: float = 0.95, *,
                 copy: bool = True):
        metric = _validate.metric(metric)
        num_neighbors = _validate.positive_int(num_neighbors, "num_neighbors")
        defaults = JaxSearchParams(recall_target)
        array = _validate.database(data)
        array = normalize_rows(array) if metric == "cosine" else _validate.owned(array, data, copy)
        self._setup(array, metric, num_neighbors, defaults)

    def _setup(self, host: np.ndarray, metric: str, num_neighbors: int, defaults: JaxSearchParams) -> None:
        jnp, self._search_fn = _jax()
        self._metric = metric
        self._num_neighbors = num_neighbors
        self._defaults = defaults
        self._host = host
        self._n, self._dim = host.shape
        self._device = jnp.asarray(host)
        sq = np.einsum("ij,ij->i", host, host, dtype=np.float64).astype(np.float32)
        self._norms = jnp.asarray(sq)
        self._jnp = jnp

    @property
    def recall_target(self) -> float:
        """The default expected recall of the approximate top-k."""
        return self._defaults.recall_target

    def _search(self, queries: np.ndarray, k: int, params: JaxSearchParams, num_threads: int):
        # Data is stored normalised for cosine; queries are normalised here, on the host, where
        # tiny or denormal ones cannot underflow (XLA flushes denormals to zero).
        if self._metric == "cosine":
            queries = normalize_rows(queries)
        return self._search_fn(self._device, self._jnp.asarray(queries), k, metric=self._metric,
                               recall_target=params.recall_target, norms=self._norms)

    @property
    def config(self) -> dict:
        return {"backend": "jax", "metric": self._metric, "num_neighbors": self._num_neighbors,
                "recall_target": self._defaults.recall_target}

    def stats(self) -> dict:
        return {"n": self._n, "dim": self._dim, **self._memory({"data": self._host}),
                "device": str(self._device.devices().pop()) if hasattr(self._device, "devices") else "unknown"}

    def _repr_params(self) -> str:
        return f"recall_target={self._defaults.recall_target}"

    def _stored_vectors(self) -> np.ndarray:
        return self._host

    def _state(self) -> tuple[dict, dict]:
        return self.config, {"data": self._host}

    @classmethod
    def _from_state(cls, config: dict, arrays: dict, source: str) -> JaxBruteForce:
        metric, num_neighbors, data = read_flat_state(cls.kind, config, arrays, source)
        try:
            defaults = JaxSearchParams(config["recall_target"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{source}: invalid {cls.kind} index ({exc})") from None
        self = cls.__new__(cls)
        self._setup(np.asarray(data), metric, num_neighbors, defaults)
        return self
