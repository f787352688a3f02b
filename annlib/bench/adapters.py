"""One adapter per library the benchmarks run: how to build it and sweep its knobs.

Every adapter speaks the same small protocol, so the runner never needs to know which library
it drives:

* ``family`` - the algorithm name on the command line, in tables and in the plot legend;
* ``name`` - family plus build parameters (one line of the CSV per query setting);
* ``build()`` - trains the index; sets ``build_s`` (seconds) and ``index_bytes``;
* ``sweeps()`` - a list of inner sweeps, each a list of query-parameter dicts in ascending cost
  (the runner walks one inner sweep until recall stops improving, then starts the next);
* ``prepare(mode, threads)`` - thread settings for "single" (one query per call, one thread) or
  "batch" (all queries in one call, every core);
* ``search_one(q, params)`` -> ids ``[k]`` and ``search_batch(queries, params, threads)`` -> ids
  ``[nq, k]``; -1 marks an empty slot;
* ``release()`` - drops the index so the next library starts with the memory back.

Data arrive prepared by the runner: for angular datasets they are unit-normalised and the metric
is "dot" for every library (what ann-benchmarks' scann and faiss modules do); euclidean datasets
use "squared_l2"; dot datasets use "dot". Peers that are not installed raise ImportError from
``build`` and are reported by the runner as skipped.

Build parameters are keyword arguments of each adapter (``make(family, ..., **build)``); the
defaults are sized from the number of points ``n``: partitions ~ sqrt(n) as ScaNN's and faiss's
guides suggest; graph indexes use the settings ann-benchmarks runs most often. The query-time
sweeps come from :mod:`annlib.bench.grid`, the same grid for every caller.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
import time

import numpy as np

from annlib.bench.grid import JAX_RECALL_TARGETS, ef_sweeps, ivf_sweeps, num_partitions, tree_sweeps

#: Every algorithm the benchmarks know, in the order they run.
ALGORITHMS = ("annlib", "annlib-soar", "scann", "faiss-ivfpq", "faiss-hnsw", "hnswlib", "jax-bruteforce")

#: Python module each family needs; a missing one skips the family.
REQUIRES = {
    "annlib": "annlib",
    "annlib-soar": "annlib",
    "scann": "scann",
    "faiss-ivfpq": "faiss",
    "faiss-hnsw": "faiss",
    "hnswlib": "hnswlib",
    "jax-bruteforce": "jax",
}

#: Distribution whose version a report records for each module.
_DISTRIBUTIONS = {"annlib": "annlib", "scann": "scann", "faiss": "faiss-cpu", "hnswlib": "hnswlib", "jax": "jax"}

#: Build-time reorder of the tree indexes (their query-time reorder is swept).
BUILD_REORDER = 100


def version(family: str) -> str:
    """The installed version of the library ``family`` runs, or "?"."""
    module = REQUIRES[family]
    try:
        return importlib.metadata.version(_DISTRIBUTIONS.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _file_bytes(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


class Adapter:
    """Defaults shared by the adapters; see the module docstring for the protocol."""

    family = "?"
    name = "?"
    build_s = float("nan")
    index_bytes = 0

    def __init__(self, data: np.ndarray, metric: str, k: int):
        self.data, self.metric, self.k = data, metric, k

    def prepare(self, mode: str, threads: int) -> None:
        pass

    def release(self) -> None:
        for attr in ("index", "base", "ivf", "database", "norms"):
            if hasattr(self, attr):
                delattr(self, attr)

    def _timed_build(self, fn) -> None:
        start = time.perf_counter()
        fn()
        self.build_s = time.perf_counter() - start


# --------------------------------------------------------------------------- annlib


class AnnlibTreeAh(Adapter):
    """annlib's quantization index (k-means tree + anisotropic 4-bit PQ + reorder), optionally spilled."""

    def __init__(
        self,
        data,
        metric,
        k,
        soar_lambda: float | None = None,
        spill: str = "soar",
        threshold: float | None = 0.2,
        num_leaves: int | None = None,
        training_sample_size: int | None = None,
    ):
        super().__init__(data, metric, k)
        self.family = "annlib-soar" if soar_lambda is not None else "annlib"
        self.num_leaves = num_leaves or num_partitions(len(data))
        self.training_sample_size = training_sample_size or len(data)
        self.soar_lambda, self.spill = soar_lambda, spill
        # ScaNN applies the anisotropic loss to inner products only (algorithms.md 0)
        self.threshold = threshold if metric == "dot" else None
        spilling = "" if soar_lambda is None else (" spill=nearest" if spill == "nearest" else f" soar={soar_lambda}")
        self.name = f"{self.family} L={self.num_leaves} T={self.threshold}{spilling}"

    def build(self) -> None:
        import annlib

        def build():
            self.index = (
                annlib.builder(self.data, self.k, self.metric)
                .tree(
                    num_leaves=self.num_leaves,
                    num_leaves_to_search=min(20, self.num_leaves),
                    training_sample_size=self.training_sample_size,
                    soar_lambda=self.soar_lambda,
                    spill=self.spill,
                )
                .score_ah(2, anisotropic_quantization_threshold=self.threshold)
                .reorder(max(BUILD_REORDER, self.k))
                .build()
            )

        self._timed_build(build)
        self.index_bytes = self.index.stats()["total_bytes"]

    def sweeps(self):
        return tree_sweeps(self.num_leaves, self.k)

    # Keyword arguments only, under the protocol's names (ScaNN's too): the grid's dicts pass through.
    def search_one(self, q, p):
        return self.index.search(q, final_num_neighbors=self.k, **p).ids

    def search_batch(self, queries, p, threads):
        return self.index.search_batched(queries, final_num_neighbors=self.k, num_threads=threads, **p).ids


# --------------------------------------------------------------------------- scann


class Scann(Adapter):
    """ScaNN configured as ann-benchmarks does: spherical k-means for dot, AH with 2 dims/block, reorder."""

    family = "scann"

    def __init__(
        self,
        data,
        metric,
        k,
        threshold: float = 0.2,
        num_leaves: int | None = None,
        training_sample_size: int | None = None,
        soar_lambda: float | None = None,
    ):
        super().__init__(data, metric, k)
        self.num_leaves = num_leaves or num_partitions(len(data))
        self.training_sample_size = training_sample_size or len(data)
        self.threshold = threshold if metric == "dot" else float("nan")
        self.soar_lambda = soar_lambda
        soar = "" if soar_lambda is None else f" soar={soar_lambda}"
        self.name = f"scann L={self.num_leaves} T={self.threshold}{soar}"

    def build(self) -> None:
        import scann

        distance = "dot_product" if self.metric == "dot" else "squared_l2"
        soar = {} if self.soar_lambda is None else {"soar_lambda": self.soar_lambda}

        def build():
            self.index = (
                scann.scann_ops_pybind.builder(self.data, self.k, distance)
                .tree(
                    num_leaves=self.num_leaves,
                    num_leaves_to_search=min(20, self.num_leaves),
                    training_sample_size=self.training_sample_size,
                    spherical=self.metric == "dot",
                    quantize_centroids=True,
                    **soar,
                )
                .score_ah(2, anisotropic_quantization_threshold=self.threshold)
                .reorder(max(BUILD_REORDER, self.k))
                .build()
            )

        self._timed_build(build)
        with tempfile.TemporaryDirectory() as tmp:
            self.index.serialize(tmp)
            self.index_bytes = _file_bytes(tmp)

    def sweeps(self):
        return tree_sweeps(self.num_leaves, self.k)

    def prepare(self, mode, threads):
        self.index.set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        return self.index.search(q, final_num_neighbors=self.k, **p)[0]

    def search_batch(self, queries, p, threads):
        return self.index.search_batched_parallel(queries, final_num_neighbors=self.k, **p)[0]


# --------------------------------------------------------------------------- faiss


def _faiss_metric(faiss, metric: str):
    return faiss.METRIC_INNER_PRODUCT if metric == "dot" else faiss.METRIC_L2


class FaissIvfPq(Adapter):
    """faiss IVF + 4-bit fast-scan PQ (2 dims per sub-quantizer, the analogue of LUT16) + exact refine."""

    family = "faiss-ivfpq"

    def __init__(self, data, metric, k, nlist: int | None = None):
        super().__init__(data, metric, k)
        self.nlist = nlist or num_partitions(len(data))
        dim = data.shape[1]
        self.factory = f"IVF{self.nlist},PQ{dim // 2}x4fs" if dim % 2 == 0 else f"IVF{self.nlist},PQ{dim}x4fs"
        self.name = f"faiss-ivfpq {self.factory}+refine"

    def build(self) -> None:
        import faiss

        def build():
            self.base = faiss.index_factory(self.data.shape[1], self.factory, _faiss_metric(faiss, self.metric))
            self.index = faiss.IndexRefineFlat(self.base)
            self.index.train(self.data)
            self.index.add(self.data)

        self._timed_build(build)
        self.index_bytes = int(faiss.serialize_index(self.index).nbytes)
        self.ivf = faiss.extract_index_ivf(self.base)

    def sweeps(self):
        return ivf_sweeps(self.nlist)

    def prepare(self, mode, threads):
        import faiss

        faiss.omp_set_num_threads(1 if mode == "single" else threads)

    def _set(self, p):
        self.ivf.nprobe = p["nprobe"]
        self.index.k_factor = p["k_factor"]

    def search_one(self, q, p):
        self._set(p)
        return self.index.search(q[None], self.k)[1][0]

    def search_batch(self, queries, p, threads):
        self._set(p)
        return self.index.search(queries, self.k)[1]


class FaissHnsw(Adapter):
    """faiss HNSW over flat vectors (M=32, faiss's default efConstruction=40)."""

    family = "faiss-hnsw"

    def __init__(self, data, metric, k, m: int = 32, ef_construction: int = 40):
        super().__init__(data, metric, k)
        self.m, self.ef_construction = m, ef_construction
        self.name = f"faiss-hnsw M={m} efC={ef_construction}"

    def build(self) -> None:
        import faiss

        def build():
            self.index = faiss.IndexHNSWFlat(self.data.shape[1], self.m, _faiss_metric(faiss, self.metric))
            self.index.hnsw.efConstruction = self.ef_construction
            self.index.add(self.data)

        self._timed_build(build)
        self.index_bytes = int(faiss.serialize_index(self.index).nbytes)

    def sweeps(self):
        return ef_sweeps(self.k)

    def prepare(self, mode, threads):
        import faiss

        faiss.omp_set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        self.index.hnsw.efSearch = p["ef"]
        return self.index.search(q[None], self.k)[1][0]

    def search_batch(self, queries, p, threads):
        self.index.hnsw.efSearch = p["ef"]
        return self.index.search(queries, self.k)[1]


# --------------------------------------------------------------------------- hnswlib


class Hnswlib(Adapter):
    """hnswlib (M=16, efConstruction=200)."""

    family = "hnswlib"

    def __init__(self, data, metric, k, m: int = 16, ef_construction: int = 200, threads: int | None = None):
        super().__init__(data, metric, k)
        self.m, self.ef_construction = m, ef_construction
        self.threads = threads or os.cpu_count() or 1
        self.name = f"hnswlib M={m} efC={ef_construction}"

    def build(self) -> None:
        import hnswlib

        n, dim = self.data.shape

        def build():
            self.index = hnswlib.Index(space="ip" if self.metric == "dot" else "l2", dim=dim)
            self.index.init_index(max_elements=n, ef_construction=self.ef_construction, M=self.m, random_seed=0)
            self.index.add_items(self.data, np.arange(n), num_threads=self.threads)

        self._timed_build(build)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hnswlib.bin")
            self.index.save_index(path)
            self.index_bytes = _file_bytes(path)

    def sweeps(self):
        return ef_sweeps(self.k)

    def prepare(self, mode, threads):
        self.index.set_num_threads(1 if mode == "single" else threads)

    def search_one(self, q, p):
        self.index.set_ef(p["ef"])
        return self.index.knn_query(q, k=self.k, num_threads=1)[0][0]

    def search_batch(self, queries, p, threads):
        self.index.set_ef(p["ef"])
        return self.index.knn_query(queries, k=self.k, num_threads=threads)[0]


# --------------------------------------------------------------------------- JAX brute force


class JaxBruteForce(Adapter):
    """annlib.tpu_knn: exact scores by matmul, PartialReduce approximate top-k; swept over recall targets."""

    family = "jax-bruteforce"

    def __init__(self, data, metric, k):
        super().__init__(data, metric, k)
        self.name = "jax-bruteforce"

    def build(self) -> None:
        import jax
        import jax.numpy as jnp

        from annlib import tpu_knn

        self._search = tpu_knn.search

        def build():
            self.database = jax.device_put(jnp.asarray(self.data, dtype=jnp.float32))
            self.norms = (
                jax.device_put(jnp.sum(self.database * self.database, axis=1)) if self.metric == "squared_l2" else None
            )
            jax.block_until_ready(self.database)

        self._timed_build(build)
        self.index_bytes = int(self.data.nbytes)

    def sweeps(self):
        return [[{"recall_target": r} for r in JAX_RECALL_TARGETS]]

    def search_one(self, q, p):
        return self._search(self.database, q, self.k, self.metric, p["recall_target"], norms=self.norms).ids

    def search_batch(self, queries, p, threads):
        return self._search(self.database, queries, self.k, self.metric, p["recall_target"], norms=self.norms).ids


_ADAPTERS = {
    "annlib": (AnnlibTreeAh, {}),
    "annlib-soar": (AnnlibTreeAh, {"soar_lambda": 1.0}),
    "scann": (Scann, {}),
    "faiss-ivfpq": (FaissIvfPq, {}),
    "faiss-hnsw": (FaissHnsw, {}),
    "hnswlib": (Hnswlib, {}),
    "jax-bruteforce": (JaxBruteForce, {}),
}


def make(family: str, data: np.ndarray, metric: str, k: int, threads: int, **build) -> Adapter:
    """The adapter of ``family`` (one of :data:`ALGORITHMS`) over prepared ``data``.

    ``build`` holds the family's build parameters (e.g. ``num_leaves=224, soar_lambda=1.5`` for
    the annlib families, ``nlist`` for faiss-ivfpq, ``m`` for the graph indexes); what is not
    given is sized from the data. An unknown parameter is a TypeError naming it.
    """
    if family not in _ADAPTERS:
        raise ValueError(f"unknown algorithm {family!r}; choose from {', '.join(ALGORITHMS)}")
    cls, defaults = _ADAPTERS[family]
    if family == "hnswlib":
        defaults = {**defaults, "threads": threads}
    try:
        adapter = cls(data, metric, k, **{**defaults, **build})
    except TypeError as exc:
        raise TypeError(f"{family}: bad build parameters {build}: {exc}") from None
    if adapter.family != family:  # soar_lambda decides between the two annlib families
        raise ValueError(f"{family}: soar_lambda={build.get('soar_lambda')} builds {adapter.family}; use that name")
    return adapter
