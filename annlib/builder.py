"""A fluent builder shaped like ScaNN's ``ScannBuilder``.

    searcher = (annlib.builder(data, num_neighbors=10, metric="dot")
                .tree(num_leaves=1000, num_leaves_to_search=50, training_sample_size=100_000)
                .score_ah(dims_per_block=2, anisotropic_quantization_threshold=0.2)
                .reorder(100)
                .build())

Each stage can be set once; exactly one scorer (``score_ah`` or ``score_brute_force``).
The builder produces :mod:`annlib.config` objects, never text protos.
"""

from __future__ import annotations

from annlib import _validate
from annlib.config import AhConfig, ReorderConfig, TreeAhConfig, TreeConfig
from annlib.errors import InvalidValueError


class Builder:
    """Collects the stages of an index, then :meth:`build` trains it."""

    def __init__(self, data, num_neighbors: int = 10, metric: str = "dot"):
        self._data = data  # validated and copied by the index's constructor
        _validate.database(data)
        self._num_neighbors = _validate.positive_int(num_neighbors, "num_neighbors")
        self._metric = _validate.metric(metric)
        self._tree: TreeConfig | None = None
        self._scorer: str | None = None
        self._ah: AhConfig | None = None
        self._reorder: ReorderConfig | None = None

    def _once(self, name: str, current) -> None:
        if current is not None:
            raise InvalidValueError(f"{name}(...) was already set on this builder")

    def tree(
        self,
        num_leaves: int,
        num_leaves_to_search: int,
        training_sample_size: int = 100_000,
        training_iterations: int = 12,
        min_partition_size: int = 1,
        spherical: bool | None = None,
        seed: int = 0,
        soar_lambda: float | None = None,
        spill: str = "soar",
        overretrieve_factor: float = 1.5,
    ) -> Builder:
        """Partition with k-means into ``num_leaves``; probe ``num_leaves_to_search`` per query.

        ``soar_lambda`` (e.g. 1.0-1.5) spills each point into a second leaf chosen by SOAR;
        ``spill="nearest"`` spills to the second-nearest center instead (for comparison);
        ``overretrieve_factor`` is how many AH candidates per unique point a spilled search keeps.
        """
        self._once("tree", self._tree)
        self._tree = TreeConfig(
            num_leaves=num_leaves,
            num_leaves_to_search=num_leaves_to_search,
            training_sample_size=training_sample_size,
            training_iterations=training_iterations,
            min_partition_size=min_partition_size,
            spherical=spherical,
            seed=seed,
            soar_lambda=soar_lambda,
            spill=spill,
            overretrieve_factor=overretrieve_factor,
        )
        return self

    def score_ah(
        self,
        dims_per_block: int = 2,
        anisotropic_quantization_threshold: float | None = 0.2,
        training_sample_size: int = 100_000,
        training_iterations: int = 10,
    ) -> Builder:
        """Score with 4-bit anisotropic product quantization (LUT16)."""
        self._once("score_ah/score_brute_force", self._scorer)
        self._scorer = "ah"
        self._ah = AhConfig(dims_per_block, anisotropic_quantization_threshold, training_sample_size, training_iterations)
        return self

    def score_brute_force(self) -> Builder:
        """Score every point exactly (no tree, no quantization)."""
        self._once("score_ah/score_brute_force", self._scorer)
        self._scorer = "brute_force"
        return self

    def brute_force(self, backend: str = "cpp", recall_target: float = 1.0) -> Builder:
        """Score every point: ``backend="cpp"`` exact on the C++ core, ``backend="jax"`` with the
        TPU-KNN PartialReduce top-k at ``recall_target`` (CPU, GPU or TPU)."""
        if backend not in ("cpp", "jax"):
            raise InvalidValueError(f"backend must be 'cpp' or 'jax', got {backend!r}")
        self._once("score_ah/score_brute_force", self._scorer)
        self._scorer = "brute_force" if backend == "cpp" else "jax"
        self._recall_target = recall_target
        return self

    def reorder(self, num_neighbors: int, quantize: str = "float32", exact_num_neighbors: int | None = None) -> Builder:
        """Rescore the best ``num_neighbors`` approximate candidates with float32 or int8 vectors.

        ``exact_num_neighbors`` (int8 only): keep the float32 vectors too and rescore the best this
        many of the int8 rescoring with them; they can stay in the index file (:class:`ReorderConfig`).
        """
        self._once("reorder", self._reorder)
        self._reorder = ReorderConfig(num_neighbors, quantize, exact_num_neighbors)
        return self

    def build(self, num_threads: int | None = None, progress: bool = False, copy: bool = True):
        """Train and return the index (it keeps its own copy of the data unless ``copy=False``)."""
        if self._scorer is None:
            raise InvalidValueError("choose a scorer first: .score_ah(...) or .score_brute_force()")
        if self._scorer == "jax":
            if self._tree is not None or self._reorder is not None:
                raise InvalidValueError("brute_force(backend='jax') takes no tree(...) or reorder(...) stage")
            from annlib.index.jax_brute_force import JaxBruteForce

            return JaxBruteForce(self._data, self._metric, self._num_neighbors, self._recall_target, copy=copy)
        if self._scorer == "brute_force":
            if self._tree is not None:
                raise InvalidValueError("score_brute_force() with tree(...) is not supported; use score_ah for a tree")
            from annlib.index import BruteForce

            return BruteForce(self._data, self._metric, self._num_neighbors, copy=copy)
        if self._tree is None:
            raise InvalidValueError("score_ah needs a partitioning stage: call .tree(num_leaves, num_leaves_to_search) first")
        from annlib.index import TreeAhIndex

        config = TreeAhConfig(self._metric, self._num_neighbors, self._tree, self._ah, self._reorder)
        return TreeAhIndex.from_config(self._data, config, num_threads=num_threads, progress=progress, copy=copy)


def builder(data, num_neighbors: int = 10, metric: str = "dot") -> Builder:
    """Start building an index over ``data`` (n, dim) for ``num_neighbors`` results under ``metric``."""
    return Builder(data, num_neighbors, metric)
