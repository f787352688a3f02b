"""annlib in ann-benchmarks (erikbern/ann-benchmarks): the quantization index and the JAX brute force.

Copy this folder to ``ann_benchmarks/algorithms/annlib/`` of an ann-benchmarks checkout (see
README.md). Two algorithms:

* :class:`Annlib` - k-means tree + anisotropic 4-bit PQ (LUT16) + exact reordering, optionally
  with SOAR spilling; constructor ``(metric, num_leaves, avq_threshold, dims_per_block,
  soar_lambda)``, query arguments ``[leaves_to_search, reorder]`` pairs, as ScaNN's module takes;
* :class:`AnnlibJaxBruteForce` - ``annlib.tpu_knn.search``: exact scores by matmul with the
  PartialReduce approximate top-k; constructor ``(metric)``, query argument ``recall_target``.

The harness recomputes distances itself and asserts unique ids, so empty slots (id -1, when the
probed partitions hold fewer than ``n`` points) are dropped from the results.
"""

from __future__ import annotations

import math

import numpy as np

import annlib

try:  # inside an ann-benchmarks checkout, as every algorithm module imports it
    from ..base.module import BaseANN
except ImportError:  # loaded on its own (annlib's tests): the same interface, minimal

    class BaseANN:
        """Stand-in for ``ann_benchmarks.algorithms.base.module.BaseANN`` (same methods and defaults)."""

        def done(self) -> None:
            pass

        def get_memory_usage(self):
            try:
                import psutil
            except ImportError:
                return None
            return psutil.Process().memory_info().rss / 1024

        def fit(self, X) -> None:
            pass

        def query(self, q, n):
            return []

        def batch_query(self, X, n) -> None:
            from multiprocessing.pool import ThreadPool

            with ThreadPool() as pool:
                self.res = pool.map(lambda q: self.query(q, n), X)

        def get_batch_results(self):
            return self.res

        def get_additional(self):
            return {}

        def __str__(self) -> str:
            return self.name


# ann-benchmarks distance (the @metric variable) -> annlib metric
_METRICS = {"angular": "cosine", "euclidean": "squared_l2", "dot": "dot", "ip": "dot"}


def _annlib_metric(metric: str) -> str:
    if metric in _METRICS:
        return _METRICS[metric]
    if metric in ("cosine", "squared_l2", "dot_product"):
        return "dot" if metric == "dot_product" else metric
    raise ValueError(f"annlib supports angular, euclidean and dot datasets, not {metric!r}")


def _valid(ids: np.ndarray) -> np.ndarray:
    return ids[ids >= 0]


class Annlib(BaseANN):
    """annlib's TreeAhIndex. ``soar_lambda`` None (YAML ``null``) builds without spilling."""

    def __init__(self, metric, num_leaves, avq_threshold, dims_per_block, soar_lambda=None):
        self.metric = _annlib_metric(metric)
        self.num_leaves = int(num_leaves)
        # ScaNN's configs write .nan for "no anisotropic loss"; annlib spells it None
        t = None if avq_threshold is None or (isinstance(avq_threshold, float) and math.isnan(avq_threshold)) else avq_threshold
        self.avq_threshold = float(t) if t is not None else None
        self.dims_per_block = int(dims_per_block)
        self.soar_lambda = None if soar_lambda is None else float(soar_lambda)
        self.index = None
        self.leaves_to_search, self.reorder = 1, 100
        soar = f" soar_lambda={self.soar_lambda}" if self.soar_lambda is not None else ""
        self._build_name = (
            f"annlib num_leaves={self.num_leaves} avq_threshold={self.avq_threshold} "
            f"dims_per_block={self.dims_per_block}{soar}"
        )
        self.name = self._build_name

    def fit(self, X) -> None:
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.num_leaves = min(self.num_leaves, len(X))
        self.index = annlib.TreeAhIndex(
            X,
            self.metric,
            num_leaves=self.num_leaves,
            num_leaves_to_search=1,
            training_sample_size=len(X),
            soar_lambda=self.soar_lambda,
            dims_per_block=self.dims_per_block,
            anisotropic_quantization_threshold=self.avq_threshold,
            reorder=100,
        )

    def set_query_arguments(self, leaves_reorder) -> None:
        leaves, reorder = leaves_reorder
        self.leaves_to_search = max(1, min(int(leaves), self.num_leaves))
        self.reorder = int(reorder)
        self.name = f"{self._build_name} leaves_to_search={self.leaves_to_search} reorder={self.reorder}"

    def query(self, q, n):
        ids = self.index.search(q, n, leaves_to_search=self.leaves_to_search, pre_reorder_num_neighbors=self.reorder).ids
        return _valid(ids)

    def batch_query(self, X, n) -> None:
        ids = self.index.search_batched(
            X, n, leaves_to_search=self.leaves_to_search, pre_reorder_num_neighbors=self.reorder
        ).ids
        self.res = [_valid(row) for row in ids]

    def get_batch_results(self):
        return self.res

    def get_memory_usage(self):
        """The index's own size in kB (0 before fit), so the runner's before/after delta is the index."""
        return 0.0 if self.index is None else self.index.stats()["total_bytes"] / 1024

    def done(self) -> None:
        self.index = None


class AnnlibJaxBruteForce(BaseANN):
    """``annlib.tpu_knn.search`` over the whole dataset; the query argument is the expected recall."""

    def __init__(self, metric):
        self.metric = _annlib_metric(metric)
        self.recall_target = 0.95
        self.database = None
        self.norms = None
        self.name = "annlib-jax-bruteforce"

    def fit(self, X) -> None:
        import jax
        import jax.numpy as jnp

        from annlib import tpu_knn

        self._search = tpu_knn.search
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self.metric == "cosine":  # normalise once; queries are normalised per call
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), np.float32(1e-30))
        self.database = jax.device_put(jnp.asarray(X))
        if self.metric == "squared_l2":
            self.norms = jax.device_put(jnp.sum(self.database * self.database, axis=1))
        self._nbytes = X.nbytes

    def set_query_arguments(self, recall_target) -> None:
        self.recall_target = float(recall_target)
        self.name = f"annlib-jax-bruteforce recall_target={self.recall_target}"

    def _run(self, Q, n):
        metric = "dot" if self.metric == "cosine" else self.metric
        if self.metric == "cosine":
            Q = Q / np.maximum(np.linalg.norm(Q, axis=-1, keepdims=True), np.float32(1e-30))
        return self._search(self.database, Q, n, metric, self.recall_target, norms=self.norms).ids

    def query(self, q, n):
        return _valid(self._run(np.asarray(q, dtype=np.float32), n))

    def batch_query(self, X, n) -> None:
        self.res = [_valid(row) for row in self._run(np.asarray(X, dtype=np.float32), n)]

    def get_batch_results(self):
        return self.res

    def get_memory_usage(self):
        """The database held on the device, in kB (0 before fit)."""
        return 0.0 if self.database is None else self._nbytes / 1024

    def done(self) -> None:
        self.database = self.norms = None
